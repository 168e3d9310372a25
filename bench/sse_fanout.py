"""The Live Monitor's stream under load: 200 pages open while the map changes 1,000 times a second.

Usage: python bench/sse_fanout.py [--agents 5000] [--clients 200] [--rate 1000]

(a) Fan-out delay.  This process runs the product's stream (LiveMap, LiveHub and
    /api/stream's StreamResource on a real twisted.web Site on 127.0.0.1).  A second process
    opens ``--clients`` real HTTP connections to /api/stream (raw asyncio sockets, chunked
    transfer decoding, SSE parsing).  The agents are in 20 teams (bench/ami_ingest.py's
    directory); 95% of the clients see one team each, 5% see everyone, so every kind of
    filtered stream is exercised.  All agents log into a queue; then this process feeds the
    map ``--rate`` QueueMemberPause events a second through LiveMap.ingest (the AMI reader's
    own call), round robin over the agents, so each agent is paused once and unpaused once
    (2 x agents changes in all).  The time each event is handed to ingest is recorded; each
    client records when it first sees that agent in that state.  The delay is the difference
    (one host, one clock), over every (change, client that may see it) pair.  The server's
    CPU is this process's CPU time over the feeding phase.
(b) Ingest with the stream subscribed: bench/ami_ingest.py's busy stream, parsed and ingested
    in 64 KiB reads, with the hub following the map and ``--clients`` in-memory clients of
    the same visibility mix attached; the hub's flush runs every 50 ms of wall time as the
    reactor would run it.  Best of 3.  Beside it, the same stream with nobody subscribed.

Measured in one run on a shared 2-core VM (others' tests running): p50 39 ms, p99 66 ms,
server CPU 17%; ingest 82,500 events/s with the 200 pages subscribed against 160,000 with
nobody (the goal of 100,000 is not met: each 50 ms report works out the map's changes and
the pages' rows for some 1,000 agents at that event rate).

The last line printed is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.ami_ingest import (  # noqa: E402
    CONFIG,
    SERVER,
    busy_stream,
    chunks,
    directory,
)
from bench.synthetic import queue_member_fields  # noqa: E402
from fastagi_spy.model import LiveMap  # noqa: E402
from fastagi_spy.wire.ami import AMIBanner, AMIMessage, AMIParser  # noqa: E402

TEAMS = 20
BOSS_EVERY = 20  # one client in 20 sees everyone


def visibility_of(client: int, agents: list[str]) -> frozenset[str] | None:
    if client % BOSS_EVERY == BOSS_EVERY - 1:
        return None
    team = client % TEAMS
    return frozenset(a for a in agents if int(a) % TEAMS == team)


def member_event(number: str, event: str, paused: bool) -> bytes:
    fields = queue_member_fields("sales", f"Agent {number}", f"PJSIP/{number}",
                                 login_time=1_795_200_000, paused=paused)
    lines = [f"Event: {event}", "Privilege: agent,all"] + [f"{k}: {v}" for k, v in fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse(data: bytes) -> list[AMIMessage]:
    messages = AMIParser().feed(b"Asterisk Call Manager/11.0.0\r\n" + data)
    return [m for m in messages if type(m) is not AMIBanner]  # type: ignore[misc]


# --- (a) the server side ------------------------------------------------------------


def fanout(args: argparse.Namespace, agents: list[str]) -> dict[str, Any]:
    from twisted.internet import protocol, reactor, task
    from twisted.web.resource import Resource
    from twisted.web.server import Request, Site

    from fastagi_spy.domain import SupervisorEntry
    from fastagi_spy.web.live import StreamResource
    from fastagi_spy.web.livestream import LiveHub

    book = directory(agents)
    live = LiveMap(book, {SERVER: CONFIG})
    live.ingest(SERVER, parse(b"".join(member_event(a, "QueueMemberAdded", False)
                                        for a in agents)), time.time())
    hub = LiveHub(live, time.time, reactor)
    people = {str(i): SupervisorEntry(str(i), f"Client {i}", frozenset(), frozenset())
              for i in range(args.clients)}
    views = {str(i): visibility_of(i, agents) for i in range(args.clients)}

    class BenchSessions:
        """The bench's stand-in for the cookie session: a "who" header names the client."""

        def require(self, request: Request, scope: str | None) -> SupervisorEntry | None:
            return people.get(request.getHeader("who") or "")

        def csrf_token(self, request: Request) -> str:
            return ""

    root = Resource()
    root.putChild(b"api", Resource())
    root.children[b"api"].putChild(
        b"stream", StreamResource(hub, BenchSessions(), lambda p: views[p.number]))
    port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")  # type: ignore[arg-type]
    # Each change is one QueueMemberPause: round robin, first a pause then the unpause.
    total = 2 * len(agents)
    feed = [parse(member_event(agents[i % len(agents)], "QueueMemberPause",
                               i < len(agents))) for i in range(total)]
    applied: list[float] = [0.0] * total
    out = Path(tempfile.mkdtemp(prefix="sse-fanout-")) / "seen.json"
    result: dict[str, Any] = {}

    class Clients(protocol.ProcessProtocol):
        def outReceived(self, data: bytes) -> None:
            if b"ready" in data and "started" not in result:
                result["started"] = True
                start_feeding()

        def processEnded(self, reason: Any) -> None:
            reactor.stop()

    sent = 0
    cpu0 = wall0 = 0.0

    def start_feeding() -> None:
        nonlocal cpu0, wall0
        gc.collect()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu0, wall0 = usage.ru_utime + usage.ru_stime, time.time()
        loop.start(0.005)

    def tick() -> None:
        # Catch up to the rate whatever the timer's jitter: changes due by now go in now.
        nonlocal sent
        due = min(total, int((time.time() - wall0) * args.rate) + 1)
        while sent < due:
            applied[sent] = time.time()
            live.ingest(SERVER, feed[sent], applied[sent])
            sent += 1
        if sent == total:
            loop.stop()
            usage = resource.getrusage(resource.RUSAGE_SELF)
            result["cpu"] = usage.ru_utime + usage.ru_stime - cpu0
            result["wall"] = time.time() - wall0
            reactor.callLater(1.0, lambda: process.write(b"stop\n"))

    loop = task.LoopingCall(tick)
    listening = port.getHost().port  # type: ignore[attr-defined]
    process = reactor.spawnProcess(
        Clients(), sys.executable,
        [sys.executable, __file__, "--client", "--port", str(listening),
         "--clients", str(args.clients), "--out", str(out)],
        env=dict(os.environ))
    reactor.run()
    if "cpu" not in result:
        raise SystemExit("the client process ended before the run did")

    seen: list[dict[str, float]] = json.loads(out.read_text())
    delays: list[float] = []
    missing = 0
    for client, got in enumerate(seen):
        view = views[str(client)]
        for i in range(total):
            number = agents[i % len(agents)]
            if view is not None and number not in view:
                continue
            at = got.get(f"{number}|{'Paused' if i < len(agents) else 'Idle'}")
            if at is None:
                missing += 1
            else:
                delays.append((at - applied[i]) * 1000)
    delays.sort()
    return {
        "p50_ms": round(statistics.median(delays), 1),
        "p99_ms": round(delays[int(len(delays) * 0.99) - 1], 1),
        "max_ms": round(delays[-1], 1),
        "server_cpu_percent": round(100 * result["cpu"] / result["wall"], 1),
        "deliveries": len(delays),
        "missing": missing,
        "changes": total,
        "feed_seconds": round(result["wall"], 2),
    }


# --- (a) the client side (a separate process) ----------------------------------------


async def one_client(who: int, port: int, seen: dict[str, float], ready: asyncio.Event,
                     count: list[int], target: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /api/stream HTTP/1.1\r\nHost: bench\r\nwho: {who}\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"client {who}: {head[:40]!r}")
    buffer = b""
    first = True
    while True:
        size = int((await reader.readline()).strip(), 16)  # chunked transfer encoding
        data = await reader.readexactly(size + 2)
        buffer += data[:-2]
        *events, buffer = buffer.split(b"\n\n")
        now = time.time()
        for event in events:
            if not event.startswith(b"event: "):
                continue
            _, _, payload = event.partition(b"\ndata: ")
            body = json.loads(payload)
            for row in body["agents"]:
                seen.setdefault(f"{row['number']}|{row['status']}", now)
            if first:
                first = False
                count[0] += 1
                if count[0] == target:
                    ready.set()


async def clients_main(port: int, clients: int, out: Path) -> None:
    seen: list[dict[str, float]] = [{} for _ in range(clients)]
    ready = asyncio.Event()
    count = [0]
    tasks = [asyncio.create_task(one_client(i, port, seen[i], ready, count, clients))
             for i in range(clients)]
    await ready.wait()
    # Forget the snapshot's states: only what arrives after the feeding starts counts.
    for got in seen:
        got.clear()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for t in tasks:
        t.cancel()
    out.write_text(json.dumps(seen))


# --- (b) ingest with the stream subscribed --------------------------------------------


def ingest_with_subscribers(agents: list[str], clients: int, events: int) -> dict[str, Any]:
    from twisted.internet.task import Clock

    from fastagi_spy.web.livestream import LiveHub, StreamClient

    book = directory(agents)
    data, _ = busy_stream(agents, events)
    pieces = chunks(data)

    def run(subscribed: bool) -> tuple[float, int]:
        live = LiveMap(book, {SERVER: CONFIG})
        hub = LiveHub(live, time.time, Clock())
        if subscribed:
            for i in range(clients):
                hub.attach(StreamClient(lambda b: None, visibility_of(i, agents), lambda: None))
        parser = AMIParser()
        count = 0
        gc.collect()
        started = last_flush = time.perf_counter()
        for piece in pieces:
            messages = [m for m in parser.feed(piece) if type(m) is not AMIBanner]
            live.ingest(SERVER, messages, time.time())  # type: ignore[arg-type]
            count += len(messages)
            if subscribed and time.perf_counter() - last_flush >= 0.05:
                hub.tick()
                last_flush = time.perf_counter()
        if subscribed:
            hub.tick()
        return time.perf_counter() - started, count

    best = {True: float("inf"), False: float("inf")}
    count = 0
    for _ in range(3):
        for subscribed in (True, False):
            seconds, count = run(subscribed)
            best[subscribed] = min(best[subscribed], seconds)
    return {
        "with_subscribers_events_per_s": round(count / best[True]),
        "no_subscribers_events_per_s": round(count / best[False]),
        "ingest_events": count,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        asyncio.run(clients_main(args.port, args.clients, args.out))
        return
    agents = [str(20000 + i) for i in range(args.agents)]
    figures = fanout(args, agents)
    figures.update(ingest_with_subscribers(agents, args.clients, args.events))
    figures.update({"agents": args.agents, "clients": args.clients, "rate_per_s": args.rate,
                    "python": sys.version.split()[0]})
    for key, value in figures.items():
        print(f"{key:32} {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
