"""HTTP load: VICIdial agent_status through our endpoint versus a bare twisted.web resource.

Usage: python bench/api_load.py [--requests 20000]

Two servers, each in its own process, loaded in turn by 50 concurrent keep-alive HTTP/1.1
clients (asyncio, this process) over loopback:

- ours: ``non_agent_api.php?function=agent_status`` on the product's HTTP site (make_site:
  connection cap, timeouts), VICIdial's parameter reading and checks, over a live map of
  5,000 agents on calls fed with synthetic AMI events (no Asterisk); each request asks for
  another agent. The login is a stub that admits at once: a password hash per request is
  the login's cost (see the password checker's own figures), not the endpoint's;
- bare: a twisted.web Site whose one leaf resource returns a fixed line.

The last line printed is a JSON object of the figures; read the ratio more than the
absolutes (the load generator shares the 2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.report import report  # noqa: E402

AGENTS = 5000
CLIENTS = 50
FIXED_LINE = b"INCALL|1700000000.1||||Agent 1|sales||||5550000001||8600051\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the servers (run with --serve) -----------------------------------------------------------

def serve_ours(port: int) -> None:
    from dataclasses import dataclass
    from typing import Any

    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ServerEndpoint
    from twisted.web.resource import Resource

    from bench.synthetic import bridged_call_items
    from fastagi_spy.config import HttpLimits
    from fastagi_spy.domain import AgentEntry, Directory, Mode, SupervisorEntry
    from fastagi_spy.model import LiveMap, ModelConfig
    from fastagi_spy.service import freeze_startup_garbage
    from fastagi_spy.web.guard import make_site
    from fastagi_spy.web.vicidial import NonAgentApi, NonAgentApiResource, VicidialDeps, mount
    from fastagi_spy.web.vicidial_agents import LiveAgents

    agents = tuple(AgentEntry(str(10000 + i), f"Agent {i}", "sales", (f"PJSIP/{10000 + i}",))
                   for i in range(AGENTS))
    person = SupervisorEntry("6666", "API user", frozenset({"sales"}), frozenset({Mode.LISTEN}))
    directory = Directory(agents, (person,), frozenset())
    live_map = LiveMap(directory, {"pbx": ModelConfig(trunk_contexts=frozenset({"from-trunk"}))})
    live_map.resync("pbx", bridged_call_items([a.number for a in agents]), [], time.time())

    @dataclass(frozen=True)
    class Admitted:
        verdict: Any
        person: Any
        auth_message: str = ""

    class Ok:
        name = "OK"

    @dataclass(frozen=True)
    class Api:  # the person as the API sees them once logged in
        number: str = "6666"
        teams: frozenset[str] = frozenset({"sales"})
        user_level: int = 8
        api: bool = True
        active: bool = True
        view_reports: bool = True
        functions: frozenset[str] | None = None

    admitted = Admitted(Ok(), Api())

    class StubChecker:
        async def login(self, user: str, password: str, client: str) -> Admitted:
            return admitted

    api = NonAgentApi(VicidialDeps(checker=StubChecker(), agents=LiveAgents(live_map, directory)))
    root = Resource()
    mount(root, NonAgentApiResource(api))
    site = make_site(root, HttpLimits(max_connections=200), reactor)
    freeze_startup_garbage()
    TCP4ServerEndpoint(reactor, port, interface="127.0.0.1").listen(site)
    print("ready", flush=True)
    reactor.run()


def serve_bare(port: int) -> None:
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ServerEndpoint
    from twisted.web.resource import Resource
    from twisted.web.server import Request, Site

    class Fixed(Resource):
        isLeaf = True

        def render_GET(self, request: Request) -> bytes:
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return FIXED_LINE

    TCP4ServerEndpoint(reactor, port, interface="127.0.0.1").listen(Site(Fixed()))  # type: ignore[no-untyped-call]
    print("ready", flush=True)
    reactor.run()


# -- the load ---------------------------------------------------------------------------------

def path_for(n: int) -> bytes:
    agent = 10000 + (n * 7919) % AGENTS  # spread over the map, not one agent over and over
    return (f"/vicidial/non_agent_api.php?source=test&user=6666&pass=1234&function=agent_status"
            f"&agent_user={agent}&stage=pipe").encode()


async def client(port: int, jobs: list[int], first: list[bytes]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for n in jobs:
            writer.write(b"GET " + path_for(n) + b" HTTP/1.1\r\nHost: bench\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200") or not body:
                raise RuntimeError(f"bad answer: {head!r} {body!r}")
            if not first:
                first.append(body)
    finally:
        writer.close()


async def drive(port: int, requests: int) -> tuple[float, bytes]:
    first: list[bytes] = []
    shares = [list(range(c, requests, CLIENTS)) for c in range(CLIENTS)]
    started = time.perf_counter()
    await asyncio.gather(*(client(port, share, first) for share in shares))
    return requests / (time.perf_counter() - started), first[0]


def server_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(kind: str, requests: int) -> tuple[float, float, bytes]:
    """Requests/s, the server's CPU microseconds per request, and one answer."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"{kind} server did not start: {line!r}")
        asyncio.run(drive(port, min(2000, requests)))  # warm-up: connections, caches
        before = server_cpu_seconds(proc.pid)
        rate, sample = asyncio.run(drive(port, requests))
        cpu_us = (server_cpu_seconds(proc.pid) - before) / requests * 1e6
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return rate, cpu_us, sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--serve", choices=["ours", "bare"])
    parser.add_argument("--port", type=int)
    args = parser.parse_args()
    if args.serve == "ours":
        serve_ours(args.port)
        return
    if args.serve == "bare":
        serve_bare(args.port)
        return
    ours_rps, ours_cpu, sample = measure("ours", args.requests)
    bare_rps, bare_cpu, _ = measure("bare", args.requests)
    report(
        f"agent_status over HTTP: {CLIENTS} keep-alive clients, {AGENTS} agents on calls, "
        f"{args.requests} requests each",
        {
            "agent_status_rps": round(ours_rps),
            "bare_twisted_web_rps": round(bare_rps),
            "ratio_vs_bare_twisted_web": round(ours_rps / bare_rps, 3),
            "agent_status_cpu_us_per_request": round(ours_cpu, 1),
            "bare_cpu_us_per_request": round(bare_cpu, 1),
            "goal_ratio": 0.7,
        },
        notes=[f"a sample answer: {sample.decode().strip()}",
               "login: a stub that admits at once (the password hash is the login's cost)"],
    )


if __name__ == "__main__":
    main()
