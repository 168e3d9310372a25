"""FastAGI load: our whole supervision flow versus a minimal panoramisk FastAGI app.

Usage: python bench/agi_load.py [--sessions 3000] [--store sqlite|postgresql|both] [--quick]

A synthetic Asterisk (asyncio, this process) opens FastAGI sessions over loopback and
answers every command until it sees ``EXEC ChanSpy``; a session's time is connect -> EXEC.
The servers run in their own processes:

- ours: the real SupervisionFlow behind the real FastAGIFactory: env block, PIN typed (real
  argon2id hash, cheap or production cost), target resolved against a live map of 5,000 agents
  on calls, rights check, durable SQLite audit write, up to ``EXEC ChanSpy``;
- panoramisk: its ``Application`` with a route sending the same commands (ANSWER, GET DATA,
  EXEC ChanSpy) with no auth, resolution or audit at all.

The load generator saturates around a few thousand sessions/s on these 2-core machines, so
read the ratio, not the absolutes. The last line printed is a JSON object of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.pg_store import BenchPostgres, per_session  # noqa: E402
from bench.report import report  # noqa: E402

AGENTS = 5000
SUPERVISOR, PIN = "9001", "1234"
# Sessions come from this many supervisors, each on their own phone (PJSIP/2000, 2001, ...):
# 50 calls at once from one phone would be an attack, capped by the PIN lockout.
SUPERVISORS = 100
FLOOD_DEVICE = "PJSIP/2999"  # the phone that floods PIN attempts in the fairness figure


def device_of(n: int) -> str:
    return f"PJSIP/{2000 + n % SUPERVISORS}"


def env_block(target: str, n: int, device: str = "") -> bytes:
    pairs = [
        ("agi_network", "yes"), ("agi_network_script", "spy/listen"),
        ("agi_request", "agi://127.0.0.1/spy/listen"),
        ("agi_channel", f"{device or device_of(n)}-{n:08x}"), ("agi_language", "en"), ("agi_type", "PJSIP"),
        ("agi_uniqueid", f"1700000000.{n}"), ("agi_version", "22.10.1"),
        ("agi_callerid", "2001"), ("agi_calleridname", "Sup"), ("agi_callingpres", "0"),
        ("agi_callingani2", "0"), ("agi_callington", "0"), ("agi_callingtns", "0"),
        ("agi_dnid", "unknown"), ("agi_rdnis", "unknown"), ("agi_context", "fastagi-spy-run"),
        ("agi_extension", "s"), ("agi_priority", "7"), ("agi_enhanced", "0.0"),
        ("agi_accountcode", ""), ("agi_threadid", "140000000000000"), ("agi_arg_1", target),
    ]
    return "".join(f"{k}: {v}\n" for k, v in pairs).encode() + b"\n"


def reply_for(command: bytes, pin: str = PIN) -> bytes:
    if command.startswith(b"GET DATA"):
        return f"200 result={pin}\n".encode()
    if command.startswith(b"STREAM FILE"):
        return b"200 result=0 endpos=8000\n"
    if command.startswith(b"GET VARIABLE"):
        return b"200 result=0\n"
    if command.startswith((b"SET VARIABLE", b"VERBOSE")):
        return b"200 result=1\n"
    return b"200 result=0\n"


async def one_session(port: int, n: int) -> float:
    """connect -> env -> answer commands -> EXEC ChanSpy seen; returns seconds."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    target = str(10000 + n % AGENTS)
    writer.write(env_block(target, n))
    elapsed = -1.0
    while True:
        line = await reader.readline()
        if not line:
            break
        if line.startswith(b"EXEC") and b"ChanSpy" in line:
            elapsed = time.perf_counter() - started
            writer.write(b"200 result=-1\nHANGUP\n")  # the supervisor hung up
            break
        writer.write(reply_for(line))
    writer.close()
    await writer.wait_closed()
    if elapsed < 0:
        raise RuntimeError("session ended before EXEC ChanSpy")
    return elapsed


async def flood_session(port: int, n: int) -> None:
    """One call from FLOOD_DEVICE typing wrong PINs until the server hangs up on it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(env_block(str(10000 + n % AGENTS), n, FLOOD_DEVICE))
    while line := await reader.readline():
        writer.write(reply_for(line, pin="0000"))
    writer.close()
    await writer.wait_closed()


async def flooded(port: int, sessions: int, concurrency: int,
                  flooders: int) -> list[float]:
    """Latencies of ordinary sessions while `flooders` calls at once keep flooding from
    one phone."""
    stop = asyncio.Event()

    async def flood(k: int) -> None:
        n = 10_000_000 + k
        while not stop.is_set():
            await flood_session(port, n)
            n += flooders

    floods = [asyncio.create_task(flood(k)) for k in range(flooders)]
    await asyncio.sleep(1.0)  # the flooder's queue is full before the others call
    _, latencies = await drive(port, sessions, concurrency)
    stop.set()
    await asyncio.gather(*floods)
    return latencies


async def drive(port: int, sessions: int, concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    counter = iter(range(sessions))

    async def worker() -> None:
        for n in counter:
            latencies.append(await one_session(port, n))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sessions / (time.perf_counter() - started), latencies


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(proc: subprocess.Popen[bytes]) -> None:
    # A line on stdout, not a probe connection: panoramisk's handler spins forever on a
    # connection that closes before its env block (a known bug), which would skew its figures.
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != b"READY":
        raise RuntimeError(f"server did not start: {line!r} {proc.stdout.read()!r}")


# -- the servers (each in its own process) ------------------------------------------------------


def serve_ours(port: int, cost: str, probe: bool, store_url: str | None = None,
               pool_check: bool = True) -> None:
    from twisted.internet import defer, reactor, task, threads
    from twisted.internet.endpoints import TCP4ServerEndpoint

    from bench.synthetic import bridged_call_items
    from fastagi_spy.config import SecurityRules
    from fastagi_spy.domain import AgentEntry, Directory, Mode, SupervisorEntry
    from fastagi_spy.model import LiveMap, ModelConfig
    from fastagi_spy.net.fairness import bound_io_per_iteration
    from fastagi_spy.net.fastagi import FastAGIFactory
    from fastagi_spy.net.hashworker import HashPool
    from fastagi_spy.service import freeze_startup_garbage
    from fastagi_spy.store.audit import AuditLog
    from fastagi_spy.store.database import Database
    from fastagi_spy.store.lockout import LockoutPolicy, LockoutStore
    from fastagi_spy.store.pins import PinHasher, PinStore
    from fastagi_spy.store.runner import ThreadRunner, runner_for
    from fastagi_spy.supervise.flow import FlowDeps, SupervisionFlow
    from fastagi_spy.supervise.pincheck import PinChecker
    from fastagi_spy.supervise.spywatch import SpyWatches

    pepper = b"bench-pepper-0123456789abcdef"
    hasher = PinHasher.cheap(pepper) if cost == "cheap" else PinHasher(pepper)
    agents = tuple(AgentEntry(str(10000 + i), f"Agent {i}", "sales", (f"PJSIP/{10000 + i}",))
                   for i in range(AGENTS))
    supervisors = tuple(
        SupervisorEntry(str(9000 + i), f"Sup {i}", frozenset({"sales"}), frozenset({Mode.LISTEN}),
                        (device_of(i),))
        for i in range(SUPERVISORS))
    directory = Directory(agents, supervisors, frozenset())
    live_map = LiveMap(directory, {"pbx": ModelConfig(trunk_contexts=frozenset({"from-trunk"}))})
    live_map.resync("pbx", bridged_call_items([a.number for a in agents]), [], time.time())
    db: Database
    if store_url:
        from fastagi_spy.store.postgres import PostgresDatabase

        db = PostgresDatabase(store_url)  # migrated by the bench, as an admin would
    else:
        db = Database(os.path.join(tempfile.mkdtemp(), "bench.sqlite3"), background_checkpoints=True)
    task.LoopingCall(threads.deferToThread, db.checkpoint).start(5.0, now=False)
    # As SpyService.store_runner: inline for SQLite, one store thread for PostgreSQL,
    # drained at shutdown before the database closes.
    store_runner = runner_for(db, reactor)
    timer = None
    if isinstance(store_runner, ThreadRunner):
        from bench.pg_store import StoreTimer

        store_runner.start()
        reactor.addSystemEventTrigger("before", "shutdown",
                                      lambda: defer.ensureDeferred(store_runner.stop()))
        reactor.addSystemEventTrigger("after", "shutdown", db.close)
        timer = StoreTimer()
        timer.install(store_runner, db)
        if not pool_check:
            db._pool._check = None  # type: ignore[attr-defined]  # an experiment (--no-pool-check), never the product
    pins = PinStore(db)
    for entry in supervisors:
        pins.set_hash(entry.number, hasher.hash_pin(entry.number, PIN), time.time())
    audit = AuditLog(db)
    hash_worker = HashPool(reactor, pepper, cost, timeout=60.0)
    hash_worker.start()
    reactor.addSystemEventTrigger("before", "shutdown", hash_worker.stop)
    flow = SupervisionFlow(FlowDeps(
        directory=directory, resolver=live_map,
        pin_checker=PinChecker(pins, LockoutStore(db, LockoutPolicy()), audit, db,
                               runner=store_runner),
        audit=audit, verify_pin=hash_worker.verify,
        spies=SpyWatches(time.time), security=SecurityRules(), clock=reactor,
        store_runner=store_runner))
    factory = FastAGIFactory({"spy/listen": lambda s: flow(s, Mode.LISTEN)}, reactor)
    TCP4ServerEndpoint(reactor, port, interface="127.0.0.1").listen(factory).addCallback(
        lambda _: print("READY", flush=True))
    stalls = [0.0]
    worst = [0.0, 0.0]
    if probe:
        last = [time.perf_counter()]

        # The reactor thread's CPU time across the worst gap: near the gap itself, our own
        # work held the reactor; near zero, the OS ran something else (the load generator).
        lastcpu = [time.thread_time()]

        def tick() -> None:
            now = time.perf_counter()
            cpu = time.thread_time()
            gap = (now - last[0]) * 1000 - 1
            if gap > stalls[0]:
                stalls[0] = gap
                worst[:] = [gap, (cpu - lastcpu[0]) * 1000]
            last[0] = now
            lastcpu[0] = cpu

        loop = task.LoopingCall(tick)

        def start_probe() -> None:
            last[0], lastcpu[0] = time.perf_counter(), time.thread_time()
            loop.start(0.001)

    first = [0.0, 0.0]

    def report() -> None:
        print(json.dumps({"max_stall_ms": round(stalls[0], 2),
                          "max_stall_busy_ms": round(worst[1], 2),
                          "warmup_stall_ms": round(first[0], 2),
                          "warmup_stall_busy_ms": round(first[1], 2)}), flush=True)

    def warmed_up() -> None:
        # The first sessions pay one-off costs (lazy imports, first SQLite writes); the
        # steady-state figure starts after them, and the warm-up maximum is reported apart.
        first[:] = [stalls[0], worst[1]]
        stalls[0] = 0.0
        worst[:] = [0.0, 0.0]

    reactor.addSystemEventTrigger("before", "shutdown", report)
    import signal

    signal.signal(signal.SIGTERM, lambda *_: reactor.callFromThread(reactor.stop))
    signal.signal(signal.SIGUSR1, lambda *_: reactor.callFromThread(warmed_up))
    if timer is not None:
        # The bench's phase marks: each SIGUSR2 prints the store's totals since the last one.
        signal.signal(signal.SIGUSR2, lambda *_: reactor.callFromThread(
            lambda: print(timer.dump(), flush=True)))
    bound_io_per_iteration(reactor)  # as SpyService.startService does
    freeze_startup_garbage()
    if probe:
        # Started after the start-up collection, which runs before the service listens.
        reactor.callWhenRunning(start_probe)
    reactor.run()


def serve_floor(port: int) -> None:
    """Our FastAGI server with a handler that only sends panoramisk's three commands: what
    the protocol layer alone costs, to tell it apart from the work the flow does."""
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ServerEndpoint

    from fastagi_spy.net.fastagi import AGISession, FastAGIFactory
    from fastagi_spy.service import freeze_startup_garbage

    async def spy(session: AGISession) -> None:
        await session.answer()
        await session.get_data("agent-pass", 10000, 12)
        await session.exec("ChanSpy", f"PJSIP/{session.env.get('agi_arg_1')}-00000001,quES")

    factory = FastAGIFactory({"spy/listen": spy}, reactor)
    TCP4ServerEndpoint(reactor, port, interface="127.0.0.1").listen(factory).addCallback(
        lambda _: print("READY", flush=True))
    freeze_startup_garbage()
    reactor.run()


def serve_panoramisk(port: int) -> None:
    from panoramisk.fast_agi import Application

    async def spy(request) -> None:  # type: ignore[no-untyped-def]
        await request.send_command("ANSWER")
        await request.send_command("GET DATA agent-pass 10000 12")
        target = request.headers.get("agi_arg_1", "")
        await request.send_command(f'EXEC ChanSpy "PJSIP/{target}-00000001,quES"')

    async def main() -> None:
        app = Application()
        app.add_route("spy/listen", spy)
        server = await asyncio.start_server(app.handler, "127.0.0.1", port)
        print("READY", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# -- the orchestra ----------------------------------------------------------------------------


def run_server(kind: str, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--port", str(port), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_ready(proc)
    return proc, port


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a server process and its children (our hash worker)."""
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            pids += [int(child) for child in children.read().split()]
    except OSError:
        pass
    ticks = 0
    for one in pids:
        try:
            with open(f"/proc/{one}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def timed_load(proc: subprocess.Popen[bytes], port: int, sessions: int) -> tuple[float, float]:
    """Sessions/s at 50 concurrent, and the server's CPU microseconds per session."""
    before = server_cpu_seconds(proc.pid)
    rate, _ = asyncio.run(drive(port, sessions, 50))
    return rate, (server_cpu_seconds(proc.pid) - before) / sessions * 1e6


def stop(proc: subprocess.Popen[bytes]) -> str:
    proc.terminate()
    out, _ = proc.communicate(timeout=30)
    return out.decode()


def cpu_ticks() -> list[int]:
    """The machine's CPU time counters (/proc/stat "cpu" line), or [] where there are none."""
    try:
        with open("/proc/stat") as stat:
            return [int(n) for n in stat.readline().split()[1:]]
    except OSError:
        return []


def steal_percent(before: list[int], after: list[int]) -> float | None:
    """Share of CPU time the hypervisor gave to other guests between two readings: time
    in which no process here could run, which a wall-clock stall probe cannot tell apart."""
    if len(before) < 8 or len(after) < 8:
        return None
    spent = [b - a for a, b in zip(before, after, strict=False)]
    total = sum(spent)
    return round(100 * spent[7] / total, 1) if total else None


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] * 1000


def pin_verify_ms() -> float:
    from fastagi_spy.store.pins import PinHasher

    hasher = PinHasher(b"bench-pepper-0123456789abcdef")
    stored = hasher.hash_pin(SUPERVISOR, PIN)
    times = []
    for _ in range(10):
        t = time.perf_counter()
        assert hasher.verify(SUPERVISOR, PIN, stored)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def store_timer(proc: subprocess.Popen[bytes]) -> dict[str, float]:
    """The PostgreSQL store's totals since the last call (the server prints them on SIGUSR2)."""
    assert proc.stdout is not None
    proc.send_signal(signal.SIGUSR2)
    while line := proc.stdout.readline():
        if line.startswith(b'{"store_timer"'):
            return dict(json.loads(line)["store_timer"])
    raise RuntimeError("server ended before printing its store timer")


def ours_cheap(sessions: int, c1_sessions: int, extra: list[str],
               pg: BenchPostgres | None) -> dict[str, float]:
    """Throughput, CPU per session (c50) and latency (c1), cheap PIN-hash cost."""
    proc, port = run_server("ours", "--cost", "cheap", *extra)
    asyncio.run(drive(port, 200, 50))  # warm-up
    if pg:
        store_timer(proc)  # reset: the phase starts here
        pg_before = pg.cpu_seconds()
    rate, cpu = timed_load(proc, port, sessions)
    figures = {"sessions_per_s_c50": round(rate, 1), "server_cpu_us_per_session_c50": round(cpu)}
    if pg:
        figures["postgres_cpu_us_per_session_c50"] = round(
            (pg.cpu_seconds() - pg_before) / sessions * 1e6)
        figures.update(per_session(store_timer(proc), sessions, "c50_"))
    _, c1 = asyncio.run(drive(port, c1_sessions, 1))
    figures["p99_ms_c1"] = round(p99(c1), 3)
    figures["p50_ms_c1"] = round(statistics.median(c1) * 1000, 3)
    if pg:
        figures.update(per_session(store_timer(proc), c1_sessions, "c1_"))
        figures["postgres_bare_round_trip_us_p50"] = round(pg.round_trip_us())
    stop(proc)
    return figures


def ours_production(sessions: int, extra: list[str]) -> dict[str, float | None]:
    """Reactor stalls and latencies with the production hash cost, 50 concurrent; then
    fairness: 10 supervisors calling at once, alone and while one phone floods 40 calls at
    once typing wrong PINs."""
    proc, port = run_server("ours", "--cost", "production", "--probe", *extra)
    asyncio.run(drive(port, 50, 50))  # warm-up
    proc.send_signal(signal.SIGUSR1)
    time.sleep(0.2)
    ticks = cpu_ticks()
    prod_rate, prod = asyncio.run(drive(port, sessions, 50))
    steal = steal_percent(ticks, cpu_ticks())
    _, alone = asyncio.run(drive(port, 100, 10))
    beside_flood = asyncio.run(flooded(port, 100, 10, 40))
    out = stop(proc)
    stalls = json.loads([line for line in out.splitlines() if line.startswith('{"max_stall')][-1])
    return {
        "max_reactor_stall_ms": stalls["max_stall_ms"],
        "max_reactor_stall_busy_ms": stalls["max_stall_busy_ms"],
        "warmup_reactor_stall_ms": stalls["warmup_stall_ms"],
        "cpu_steal_percent_during_stall_probe": steal,
        "production_cost_sessions_per_s_c50": round(prod_rate, 1),
        "production_cost_p99_ms_c50": round(p99(prod), 2),
        "production_cost_p99_ms_c10": round(p99(alone), 2),
        "production_cost_p99_ms_c10_beside_flood": round(p99(beside_flood), 2),
    }


# Compared side by side (--store both): PostgreSQL's figure over SQLite's.
COMPARED = ("sessions_per_s_c50", "server_cpu_us_per_session_c50", "p99_ms_c1", "p50_ms_c1",
            "max_reactor_stall_ms", "production_cost_p99_ms_c50", "production_cost_p99_ms_c10")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=3000)
    parser.add_argument("--store", choices=("sqlite", "postgresql", "both"), default="sqlite",
                        help="the store behind our flow; both: each in turn, side by side")
    parser.add_argument("--quick", action="store_true",
                        help="fewer sessions (1000 at c50, 300 at c1, 200 in the stall probe)")
    parser.add_argument("--serve")
    parser.add_argument("--port", type=int)
    parser.add_argument("--cost", default="cheap")
    parser.add_argument("--probe", action="store_true")
    parser.add_argument("--store-url", help=argparse.SUPPRESS)  # the bench's own, for --serve
    parser.add_argument("--no-pool-check", action="store_true",
                        help="experiment: PostgreSQL pool checkouts without the product's "
                             "connection check round trip (what it costs)")
    parser.add_argument("--production-only", action="store_true",
                        help="only the production-hash-cost figures (a quicker before/after)")
    args = parser.parse_args()
    if args.serve == "ours":
        serve_ours(args.port, args.cost, args.probe, args.store_url, not args.no_pool_check)
        return
    if args.serve == "floor":
        serve_floor(args.port)
        return
    if args.serve == "panoramisk":
        serve_panoramisk(args.port)
        return
    stores = ("sqlite", "postgresql") if args.store == "both" else (args.store,)
    pg = BenchPostgres() if "postgresql" in stores else None
    if pg:
        pg.start()
    try:
        run(args, stores, pg)
    finally:
        if pg:
            pg.stop()


def run(args: argparse.Namespace, stores: tuple[str, ...], pg: BenchPostgres | None) -> None:
    def extra(store: str) -> list[str]:
        # A fresh database per server process, as SQLite gets a fresh file: no lockout or
        # audit rows carried over from the previous phase.
        if store != "postgresql" or not pg:
            return []
        return ["--store-url", pg.fresh_database(), *(["--no-pool-check"] if args.no_pool_check
                                                       else [])]

    def suffixed(store: str, figures: dict[str, float | None]) -> dict[str, float | None]:
        return figures if len(stores) == 1 else {f"{k}_{store}": v for k, v in figures.items()}

    sessions, c1_sessions, probe_sessions = ((1000, 300, 200) if args.quick
                                             else (args.sessions, 1000, 500))
    if args.production_only:
        for store in stores:
            proc, port = run_server("ours", "--cost", "production", *extra(store))
            asyncio.run(drive(port, 50, 50))  # warm-up
            prod_rate, prod = asyncio.run(drive(port, probe_sessions, 50))
            stop(proc)
            print(json.dumps(suffixed(store, {
                "production_cost_sessions_per_s_c50": round(prod_rate, 1),
                "production_cost_p99_ms_c50": round(p99(prod), 2),
                "pin_verify_ms": round(pin_verify_ms(), 2)})))
        return
    # Throughput at 50 concurrent, cheap PIN hash (said so in the output), same load both sides.
    cheap = {store: ours_cheap(sessions, c1_sessions, extra(store), pg
                               if store == "postgresql" else None) for store in stores}
    proc, port = run_server("panoramisk")
    asyncio.run(drive(port, 200, 50))
    pano_rate, pano_cpu = timed_load(proc, port, sessions)
    _, pano_c1 = asyncio.run(drive(port, c1_sessions, 1))
    stop(proc)
    proc, port = run_server("floor")
    asyncio.run(drive(port, 200, 50))
    floor_rate, floor_cpu = timed_load(proc, port, sessions)
    stop(proc)
    production = {store: ours_production(probe_sessions, extra(store)) for store in stores}

    figures: dict[str, float | None] = {}
    per_store: dict[str, dict[str, float | None]] = {}
    for store in stores:
        ours: dict[str, float | None] = {**cheap[store], **production[store]}
        ours["ratio_vs_panoramisk_c50"] = round(cheap[store]["sessions_per_s_c50"] / pano_rate, 3)
        per_store[store] = ours
        figures.update(suffixed(store, ours))
    figures.update({
        "panoramisk_sessions_per_s_c50": round(pano_rate, 1),
        "panoramisk_server_cpu_us_per_session_c50": round(pano_cpu),
        "protocol_only_server_cpu_us_per_session_c50": round(floor_cpu),
        "protocol_only_sessions_per_s_c50": round(floor_rate, 1),
        "protocol_only_ratio_vs_panoramisk_c50": round(floor_rate / pano_rate, 3),
        "panoramisk_p99_ms_c1": round(p99(pano_c1), 3),
        "pin_verify_ms": round(pin_verify_ms(), 2),
    })
    if len(stores) == 2:
        for key in COMPARED:
            lite, post = per_store["sqlite"].get(key), per_store["postgresql"].get(key)
            figures[f"postgresql_vs_sqlite_{key}"] = (round(post / lite, 3) if lite and post
                                                      is not None else None)
    store_names = " and ".join({"sqlite": "SQLite", "postgresql": "PostgreSQL"}[s] for s in stores)
    report(f"FastAGI load, loopback, sessions = connect -> EXEC ChanSpy ({store_names} store)",
           figures, notes=(
        f"ours: env + PIN (argon2id) + resolve among 5,000 agents + rights + {store_names} audit",
        "panoramisk: ANSWER, GET DATA, EXEC only (no auth, no resolution, no audit)",
        "protocol_only: our FastAGI server sending panoramisk's three commands, no work at all",
        "server_cpu_us_per_session: the server's CPU (all its threads, with its hash worker)",
        "per session at c50",
        "throughput and c1 figures use the CHEAP PIN-hash cost; the stall probe uses production",
        f"max_reactor_stall_ms: 1 ms LoopingCall probe, {probe_sessions} sessions at 50 "
        "concurrent after 50",
        "warm-up sessions; warmup_reactor_stall_ms is the worst gap during the warm-up;",
        "max_reactor_stall_busy_ms: reactor-thread CPU time within that worst gap; a gap",
        "with little of it is the OS or the hypervisor (see cpu_steal_percent) running others",
        f"sessions come from {SUPERVISORS} supervisors on their own phones; PIN hashes run in",
        "one worker per core, queued per calling device, served round-robin",
        "c10_beside_flood: 10 supervisors at once while one phone keeps 40 calls typing wrong",
        "PINs (locked out after 5, but each try is still hashed, in that phone's own queue)",
        *(PG_NOTES if pg else ()),
        *(("--no-pool-check: EXPERIMENT, PostgreSQL pool checkouts skip the product's "
           "connection check",) if args.no_pool_check else ()),
        *((f"--quick: {sessions} sessions at c50, {c1_sessions} at c1, {probe_sessions} in "
           "the stall probe",) if args.quick else ()),
    ))


PG_NOTES = (
    "PostgreSQL: the tests' throwaway server on 127.0.0.1 (fsync off), a fresh migrated",
    "database per server process; the flow's store calls on one store thread (ThreadRunner),",
    "as the service runs them",
    "postgres_cpu_us_per_session_c50: CPU of the postmaster and all its processes per session",
    "c50_/c1_store_*: the store measured inside the server (bench-only wrappers): runner",
    "calls, round trips (statements incl. BEGIN/COMMIT, the pool's connection check and the",
    "advisory write lock), pool checkout time (includes its check round trip), time on the",
    "store thread, and per call the hop to the worker (queueing included) and back",
    "postgres_bare_round_trip_us_p50: one SELECT 1 from the bench process just after the c1",
    "phase: the machine's round-trip cost at that moment (store round trips x this = the",
    "part of a session that is pure waiting on PostgreSQL)",
)


if __name__ == "__main__":
    main()
