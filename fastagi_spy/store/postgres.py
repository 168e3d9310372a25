"""The PostgreSQL connector: one database shared by several instances.

Same interface as the SQLite :class:`~fastagi_spy.store.database.Database`, so the store
modules run their plain SQL unchanged: ``?`` placeholders are translated here, rows come
back as tuples, ``rowcount`` works (there is no ``lastrowid``: use RETURNING).

Atomicity matches SQLite's BEGIN IMMEDIATE: every :meth:`transaction` first takes one
transaction-scoped advisory lock, so all writers of all instances sharing the database run
one at a time, exactly as SQLite's writers do. The lockout's count-then-insert, the audit
chain's seq/prev_hash and single-use tokens rely on that. :meth:`snapshot` takes no lock.

Connections come from a small pool and belong to a thread while it is in a transaction:
a store thread and the reactor thread never share one. Calls block (network round trips),
so the server runs the supervision flow's store calls on a store thread (store/runner.py).
"""

from __future__ import annotations

import contextlib
import functools
import threading
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
    conn: psycopg.Connection[Any] | None = None
    depth = 0


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

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            conn = self._pool.getconn()
        except (PoolTimeout, psycopg.Error) as exc:
            raise StoreError(self._message("cannot connect", exc)) from None
        try:
            yield conn
        finally:
            self._pool.putconn(conn)  # the pool discards a broken one

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
        with self._connection() as conn:
            try:
                # BEGIN and the write lock in one round trip (no parameters: one simple
                # query may hold both statements); a transaction pays ~100 us per trip.
                conn.execute(f"{begin}; SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY:d})"
                             if lock else begin)
            except psycopg.Error as exc:
                self._rollback(conn)
                raise StoreError(self._message("begin", exc)) from None
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

    @staticmethod
    def _rollback(conn: psycopg.Connection[Any]) -> None:
        # A broken connection: the pool drops it; the server rolled back already.
        with contextlib.suppress(psycopg.Error):
            conn.execute("ROLLBACK")

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
        try:
            if state.depth:
                assert state.conn is not None
                return _Connection(state.conn).execute(sql, params)
            with self._connection() as conn:
                return _Result(conn.execute(translate(sql), tuple(params)))
        except psycopg.Error as exc:
            raise StoreError(self._message("statement", exc)) from None

    def checkpoint(self) -> None:
        """Nothing to do: the server checkpoints its own write-ahead log."""

    def close(self) -> None:
        """Close every pooled connection; the object is unusable afterwards."""
        self._close_quietly()
