"""The PostgreSQL connector: one database shared by several instances.

Same interface as the SQLite :class:`~fastagi_spy.store.database.Database`, so the store
modules run their plain SQL unchanged: ``?`` placeholders are translated here, rows come
back as tuples, ``rowcount`` works (there is no ``lastrowid``: use RETURNING).

Atomicity matches SQLite's BEGIN IMMEDIATE: every :meth:`transaction` first takes one
transaction-scoped advisory lock, so all writers of all instances sharing the database run
one at a time, exactly as SQLite's writers do. The lockout's count-then-insert, the audit
chain's seq/prev_hash and single-use tokens rely on that. :meth:`snapshot` takes no lock.

Connections are sticky: a thread keeps the connection it first got, so the hot store
thread (store/runner.py runs the supervision flow's calls on one) pays no pool checkout and
no connection check per call: a feature-code attempt saves about six round trips. Two
threads never share one. The pool stays, for making connections (its check vets a new
one), for its cap (at most POOL_MAX connections per instance, however many threads come and
go) and for close(); plain psycopg.connect per thread would need that cap and bookkeeping
rebuilt. A connection goes back to the pool when its thread has ended (reaped at the next
checkout), when it is broken, when another thread needs it at the cap while its owner is
between calls, and at close().

A sticky connection may have died while idle (server restarted, pg_terminate_backend,
network cut). The first statement of a transaction (BEGIN and the lock, one round trip) that
fails on a broken connection is retried ONCE on a new one: nothing of that transaction ran,
and the server rolls back whatever a dead session held. A single autocommit statement is
retried the same way only when it is a SELECT: a write whose reply was lost may have
committed (psycopg cannot tell "never sent" from "sent, reply lost"), so it fails closed
with StoreError and the caller hears the error. A failure after a transaction's statements
ran is a StoreError too; a broken connection is dropped either way, so the next call
reconnects.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from fastagi_spy.store.database import Database
from fastagi_spy.store.errors import StoreError

# The one advisory lock key every write transaction takes (any fixed 64-bit number; this
# one is "fastagi-spy" hashed, so it is unlikely to clash with another application's).
WRITE_LOCK_KEY = 0x5F5A61C0DE
CONNECT_TIMEOUT = 5  # seconds: a dead or unreachable server fails instead of hanging
STATEMENT_TIMEOUT_MS = 5000  # also bounds waiting for the write lock, as SQLite's busy_timeout
IDLE_IN_TRANSACTION_MS = 60_000  # a transaction never waits on anything but this process
POOL_MIN, POOL_MAX = 1, 4
# Statements that change nothing, so running one twice is harmless: safe to retry after a
# broken connection even if the first copy reached the server.
_READ_ONLY = re.compile(r"\s*SELECT\b", re.IGNORECASE)


@functools.lru_cache(maxsize=512)
def translate(sql: str) -> str:
    """SQLite's ``?`` placeholders to psycopg's ``%s``; a literal ``%`` becomes ``%%``.

    Safe because our SQL never has a ``?`` inside a string literal (checked with
    ``grep -n "'[^']*?[^']*'" fastagi_spy/store/*.py``: no hits); values are always bound.
    """
    return sql.replace("%", "%%").replace("?", "%s")


def describe(url: str) -> str:
    """The URL without its password (for messages and logs): user@host:port/dbname."""
    try:
        info = conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return "postgresql://(unparsable URL)"
    user = f"{info['user']}@" if info.get("user") else ""
    port = f":{info['port']}" if info.get("port") else ""
    return f"postgresql://{user}{info.get('host', '')}{port}/{info.get('dbname', '')}"


class _Connection:
    """What the store modules see: sqlite3.Connection's execute/executemany on psycopg."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        return self._conn.execute(translate(sql), tuple(params))

    def executemany(self, sql: str, seq: Any) -> psycopg.Cursor[Any]:
        cursor = self._conn.cursor()
        cursor.executemany(translate(sql), [tuple(p) for p in seq])
        return cursor  # sqlite3 returns the cursor too (rowcount)


class _Result:
    """A statement's rows, read before its connection went back to the pool."""

    def __init__(self, cursor: psycopg.Cursor[Any]) -> None:
        self.description = cursor.description
        self.rowcount = cursor.rowcount
        self._rows = cursor.fetchall() if cursor.description is not None else []
        self._next = 0

    def fetchone(self) -> Any:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchall(self) -> list[Any]:
        rest, self._next = self._rows[self._next:], len(self._rows)
        return rest

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class _ThreadState(threading.local):
    conn: psycopg.Connection[Any] | None = None  # inside a transaction: its connection
    depth = 0


class _Held:
    """A thread's sticky connection; ``busy`` while the thread is in a call with it."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.busy = True


def _usable(conn: psycopg.Connection[Any]) -> bool:
    return not conn.closed and not conn.broken


class PostgresDatabase(Database):
    """A pool of PostgreSQL connections with SQLite's transaction semantics.

    A subclass of :class:`Database` only so that the store modules' type hints accept it;
    it shares none of its state (every method is its own).
    """

    is_remote = True  # calls are network round trips: run them off the reactor
    dialect = "postgresql"  # schema.py's DDL for it

    def __init__(self, url: str) -> None:
        self.url = url  # never printed: it may hold the password
        self.description = describe(url)
        self.path = self.description  # what SQLite's messages call the database
        self._local = _ThreadState()
        # Every thread's sticky connection, so close() and the reaping of ended threads find
        # them; _held_changed wakes a thread waiting at the cap for one to come free.
        self._held: dict[threading.Thread, _Held] = {}
        self._held_changed = threading.Condition()
        self._closed = False
        self._checking_out = 0  # threads between the cap check and the pool's getconn
        kwargs: dict[str, Any] = {
            "autocommit": True, "connect_timeout": CONNECT_TIMEOUT,
            # A hung instance must not hold the write lock for everyone: the server ends a
            # transaction left idle this long (its lock goes with it).
            "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS} "
                       f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS}",
            # A server gone without a word (power, network) is noticed in about a minute.
            "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
            "keepalives_count": 3,
            "application_name": "fastagi-spy"}
        try:
            # One plain connection first: a refused or failed login reports the server's own
            # reason at once (the pool would retry in the background until its timeout).
            psycopg.connect(url, **kwargs).close()
            self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
                url, min_size=POOL_MIN, max_size=POOL_MAX, open=False,
                timeout=CONNECT_TIMEOUT + STATEMENT_TIMEOUT_MS / 1000,
                check=ConnectionPool.check_connection,
                kwargs=kwargs)
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT + 1)
        except (PoolTimeout, psycopg.Error) as exc:
            if hasattr(self, "_pool"):
                self._close_quietly()
            raise StoreError(self._message("cannot connect", exc)) from None

    def _message(self, what: str, exc: BaseException) -> str:
        text = str(exc).strip() or type(exc).__name__
        if isinstance(exc, PoolTimeout):
            text = "no connection within the timeout (server down, unreachable or refusing)"
        password = conninfo.conninfo_to_dict(self.url).get("password")
        if password:
            text = text.replace(str(password), "***")
        return f"database {self.description}: {what}: {text}"

    def _close_quietly(self) -> None:
        # Already failing or closing: the first error is the one to report.
        with contextlib.suppress(Exception):
            self._pool.close()

    def _acquire(self) -> psycopg.Connection[Any]:
        """This thread's connection, marked busy until _release()."""
        me = threading.current_thread()
        with self._held_changed:
            held = self._held.get(me)
            if held is not None and _usable(held.conn):
                held.busy = True
                return held.conn
            if held is not None:  # broken while idle: found before anything was sent
                self._drop(me)
            self._reap()
            deadline = time.monotonic() + CONNECT_TIMEOUT + STATEMENT_TIMEOUT_MS / 1000
            while not self._closed and len(self._held) + self._checking_out >= POOL_MAX:
                # At the cap: take over one whose owner is between calls (it gets a new
                # one on its next call); else wait for one to come free.
                idle = next((t for t, h in self._held.items() if not h.busy), None)
                if idle is not None:
                    taken = self._held.pop(idle)
                    taken.busy = True
                    self._held[me] = taken
                    return taken.conn
                if not self._held_changed.wait(max(0.0, deadline - time.monotonic())):
                    raise StoreError(self._message("cannot connect", PoolTimeout()))
            self._checking_out += 1  # the slot is this thread's while it connects
        try:
            conn = self._pool.getconn()
        except psycopg.Error as exc:  # PoolTimeout, PoolClosed among them
            raise StoreError(self._message("cannot connect", exc)) from None
        else:
            with self._held_changed:
                self._held[me] = _Held(conn)
            return conn
        finally:
            with self._held_changed:
                self._checking_out -= 1
                self._held_changed.notify()

    def _release(self) -> None:
        with self._held_changed:
            held = self._held.get(threading.current_thread())
            if held is not None:
                held.busy = False
            self._held_changed.notify()

    def _discard(self, conn: psycopg.Connection[Any]) -> None:
        """Drop this thread's connection if it is ``conn`` and broken: the next call of
        the thread reconnects."""
        if _usable(conn):
            return
        me = threading.current_thread()
        with self._held_changed:
            held = self._held.get(me)
            if held is not None and held.conn is conn:
                self._drop(me)
                self._held_changed.notify()

    def _drop(self, thread: threading.Thread) -> None:
        # Caller holds _held_changed. The pool replaces a broken or closed connection.
        held = self._held.pop(thread)
        with contextlib.suppress(Exception):
            self._pool.putconn(held.conn)

    def _reap(self) -> None:
        """Give back the connections of threads that have ended (caller holds the lock)."""
        for thread in [t for t in self._held if not t.is_alive()]:
            self._drop(thread)

    @contextmanager
    def _begin(self, begin: str, lock: bool) -> Iterator[_Connection]:
        state = self._local
        if state.depth:
            # Joined: the outermost transaction on this thread commits or rolls back.
            assert state.conn is not None
            state.depth += 1
            try:
                yield _Connection(state.conn)
            finally:
                state.depth -= 1
            return
        # BEGIN and the write lock in one round trip (no parameters: one simple query may
        # hold both statements); a transaction pays ~100 us per trip.
        sql = f"{begin}; SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY:d})" if lock else begin
        try:
            conn = self._start(sql)
            state.conn, state.depth = conn, 1
            try:
                yield _Connection(conn)
            except BaseException as exc:
                self._rollback(conn)
                if isinstance(exc, psycopg.Error):
                    raise StoreError(self._message("statement", exc)) from exc
                raise
            finally:
                state.conn, state.depth = None, 0
            try:
                conn.execute("COMMIT" if lock else "ROLLBACK")
            except psycopg.Error as exc:
                self._rollback(conn)
                raise StoreError(self._message("commit", exc)) from None
        finally:
            self._release()

    def _start(self, sql: str) -> psycopg.Connection[Any]:
        """Run the BEGIN on this thread's connection; once more on a new connection if the
        old one turns out broken (nothing of the transaction ran on it)."""
        for attempt in (1, 2):
            conn = self._acquire()
            try:
                conn.execute(sql)
                return conn
            except psycopg.Error as exc:
                self._rollback(conn)
                if attempt == 1 and conn.broken:
                    continue  # _rollback dropped it: the next _acquire connects anew
                raise StoreError(self._message("begin", exc)) from None
        raise AssertionError("unreachable")

    def _rollback(self, conn: psycopg.Connection[Any]) -> None:
        # A broken connection is dropped; the server rolled back already.
        with contextlib.suppress(psycopg.Error):
            conn.execute("ROLLBACK")
        self._discard(conn)

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """One transaction, writers serialized across instances; commit on success, roll
        back on any exception. psycopg errors come out as StoreError."""
        with self._begin("BEGIN", lock=True) as conn:
            yield conn

    @contextmanager
    def snapshot(self) -> Iterator[Any]:
        """Read-only statements that all see one consistent state; takes no lock, so a
        long export never holds up the writers."""
        with self._begin("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", lock=False) as conn:
            yield conn

    def execute(self, sql: str, params: tuple[object, ...] = ()) -> Any:
        """One statement: inside a transaction on this thread it joins it; outside, it is
        its own transaction (autocommit). Its rows are read before it returns."""
        state = self._local
        if state.depth:
            assert state.conn is not None
            try:
                return _Connection(state.conn).execute(sql, params)
            except psycopg.Error as exc:
                raise StoreError(self._message("statement", exc)) from None
        retry = _READ_ONLY.match(sql) is not None
        try:
            for attempt in (1, 2):
                conn = self._acquire()
                try:
                    return _Result(conn.execute(translate(sql), tuple(params)))
                except psycopg.Error as exc:
                    self._discard(conn)
                    if retry and attempt == 1 and conn.broken:
                        continue  # a read: harmless even if the first copy ran
                    raise StoreError(self._message("statement", exc)) from None
            raise AssertionError("unreachable")
        finally:
            self._release()

    def checkpoint(self) -> None:
        """Nothing to do: the server checkpoints its own write-ahead log."""

    def close(self) -> None:
        """Close every connection, every thread's sticky one included; the object is
        unusable afterwards."""
        with self._held_changed:
            self._closed = True
            for thread in list(self._held):
                self._drop(thread)
            self._held_changed.notify_all()
        self._close_quietly()
