"""The PostgreSQL side of bench/agi_load.py: a throwaway real server, and where the time goes.

``BenchPostgres`` (the bench process) starts the tests' throwaway PostgreSQL server
(tests/postgres_harness.py: 127.0.0.1 only, fsync off), hands out a fresh migrated database
per server process (lockout and audit state must not carry over between runs) and reads the
CPU time of its processes from /proc: with PostgreSQL the store's work moves there.

``StoreTimer`` (the server process) wraps, for the bench only, the store's parts to count
and time what one session costs: runner calls and their thread hops, pool checkouts, round
trips (statements, the pool's connection check among them) and the advisory write-lock wait.
Each wrapper adds two perf_counter() calls, well under a microsecond.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class BenchPostgres:
    """A real PostgreSQL server for one bench run."""

    def __init__(self) -> None:
        from tests.postgres_harness import PostgresServer

        self.server = PostgresServer()
        self._count = 0

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def fresh_database(self) -> str:
        """A new database at the current schema (an explicit migrate, as an admin would)."""
        from fastagi_spy.store import schema
        from fastagi_spy.store.postgres import PostgresDatabase

        self._count += 1
        url = self.server.new_database(f"bench{self._count}")
        db = PostgresDatabase(url)
        try:
            schema.migrate(db)
        finally:
            db.close()
        return url

    def cpu_seconds(self) -> float:
        """User + system CPU of the postmaster and every process it forked (the backends
        serving our connections, the WAL writer, the checkpointer...)."""
        pid = int((self.server.data_dir / "postmaster.pid").read_text().split()[0])
        pids = [pid]
        with contextlib.suppress(OSError):  # no /proc: the postmaster's own CPU only
            pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        return sum(_cpu_seconds(p) for p in pids)


    def round_trip_us(self, count: int = 500) -> float:
        """Median wall time of one bare ``SELECT 1`` from this process: what a round trip
        costs on this machine right now, to read the store's figures against."""
        import psycopg

        times = []
        with psycopg.connect(self.server.url, autocommit=True) as conn:
            for _ in range(count):
                started = time.perf_counter()
                conn.execute("SELECT 1")
                times.append(time.perf_counter() - started)
        return sorted(times)[count // 2] * 1e6


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0  # gone meanwhile (a backend whose connection closed)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class StoreTimer:
    """Counts and times the store's work inside the server process (bench only)."""

    FIELDS = ("calls", "statements", "checks", "locks", "checkouts", "wait_s", "run_s",
              "back_s", "statement_s", "check_s", "lock_s", "checkout_s")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.totals = dict.fromkeys(self.FIELDS, 0.0)
            self.waits: list[float] = []  # each call's hop to the worker (means hide outliers)

    def add(self, **amounts: float) -> None:
        with self._lock:
            for key, value in amounts.items():
                self.totals[key] += value

    def dump(self) -> str:
        """One JSON line of the totals since the last reset; resets them."""
        with self._lock:
            waits = sorted(self.waits)
            self.totals["wait_p50_s"] = waits[len(waits) // 2] if waits else 0.0
            self.totals["wait_p99_s"] = waits[len(waits) * 99 // 100] if waits else 0.0
            line = json.dumps({"store_timer": self.totals})
        self.reset()
        return line

    def install(self, runner: Any, db: Any) -> None:
        """Wrap ``runner.run`` (thread hops), ``db``'s pool checkout and every psycopg
        statement (round trips; the pool's check and the write lock counted apart)."""
        import psycopg

        run = runner.run

        def timed_run(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
            handed = time.perf_counter()
            marks = [handed, handed]

            def on_worker() -> Any:
                marks[0] = time.perf_counter()
                try:
                    return fn(*args, **kw)
                finally:
                    marks[1] = time.perf_counter()

            def back(result: Any) -> Any:
                self.add(calls=1, wait_s=marks[0] - handed, run_s=marks[1] - marks[0],
                         back_s=time.perf_counter() - marks[1])
                self.waits.append(marks[0] - handed)
                return result

            return run(on_worker).addBoth(back)

        runner.run = timed_run
        pool = db._pool
        getconn = pool.getconn

        def timed_getconn(*args: Any, **kw: Any) -> Any:
            started = time.perf_counter()
            try:
                return getconn(*args, **kw)
            finally:
                self.add(checkouts=1, checkout_s=time.perf_counter() - started)

        pool.getconn = timed_getconn
        execute = psycopg.Connection.execute

        def timed_execute(conn: Any, query: Any, *args: Any, **kw: Any) -> Any:
            started = time.perf_counter()
            try:
                return execute(conn, query, *args, **kw)
            finally:
                spent = time.perf_counter() - started
                if query == "":
                    self.add(checks=1, check_s=spent)
                elif isinstance(query, str) and "pg_advisory_xact_lock" in query:
                    self.add(locks=1, lock_s=spent)
                self.add(statements=1, statement_s=spent)

        psycopg.Connection.execute = timed_execute  # type: ignore[method-assign,assignment]


def per_session(totals: dict[str, float], sessions: int, prefix: str) -> dict[str, float]:
    """The store timer's totals over ``sessions`` as the report's per-session figures."""
    n = max(sessions, 1)
    calls = max(totals["calls"], 1)
    return {
        f"{prefix}store_calls_per_session": round(totals["calls"] / n, 2),
        f"{prefix}store_round_trips_per_session": round(totals["statements"] / n, 2),
        f"{prefix}store_pool_checks_per_session": round(totals["checks"] / n, 2),
        f"{prefix}store_write_locks_per_session": round(totals["locks"] / n, 2),
        f"{prefix}store_round_trip_us_per_session": round(totals["statement_s"] / n * 1e6),
        f"{prefix}store_pool_check_us_per_session": round(totals["check_s"] / n * 1e6),
        f"{prefix}store_write_lock_us_per_session": round(totals["lock_s"] / n * 1e6),
        f"{prefix}store_pool_checkout_us_per_session": round(totals["checkout_s"] / n * 1e6),
        f"{prefix}store_worker_us_per_session": round(totals["run_s"] / n * 1e6),
        f"{prefix}store_hop_to_worker_us_per_call": round(totals["wait_s"] / calls * 1e6),
        f"{prefix}store_hop_to_worker_us_p50": round(totals["wait_p50_s"] * 1e6),
        f"{prefix}store_hop_to_worker_us_p99": round(totals["wait_p99_s"] * 1e6),
        f"{prefix}store_hop_back_us_per_call": round(totals["back_s"] / calls * 1e6),
    }
