"""The SQLite connector: opening, PRAGMAs, schema and transactions.

This and postgres.py are the connectors; the schema (both dialects) is in schema.py. Other
store modules use plain SQL with bound parameters through `Database.transaction()`, so
they run on either.
All calls are blocking and quick (WAL, synchronous=NORMAL): the server runs them inline on
the reactor, which costs less than a thread hop.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastagi_spy.store import schema
from fastagi_spy.store.errors import StoreError

_PRAGMAS = (
    # WAL + synchronous=NORMAL: a committed transaction is in the WAL file before COMMIT
    # returns, so it survives kill -9 of this process. Only an OS crash or power loss can
    # lose the last few commits (they are not fsynced until a checkpoint).
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    # Other processes sharing the file (several instances) wait rather than fail at once.
    "PRAGMA busy_timeout=5000",
    "PRAGMA foreign_keys=ON",
)


class Database:
    """One SQLite connection, shared by threads, with one transaction at a time."""

    dialect = "sqlite"  # schema.py's DDL for it (postgres.PostgresDatabase says "postgresql")

    def __init__(self, path: str | Path, *, background_checkpoints: bool = False) -> None:
        """``background_checkpoints``: the caller runs :meth:`checkpoint` off its hot thread
        (the server does); commits then never pay for copying the WAL into the database."""
        self.path = str(path)
        # Reentrant, with a depth count: a transaction() opened inside another one joins it,
        # so a caller can make several store calls commit (or roll back) as one.
        self._lock = threading.RLock()
        self._depth = 0
        self._checkpointer: sqlite3.Connection | None = None
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves in transaction().
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open database {self.path!r}: {exc}") from exc
        try:
            for pragma in _PRAGMAS:
                self._conn.execute(pragma)
            if background_checkpoints:
                self._conn.execute("PRAGMA wal_autocheckpoint=0")
            # An embedded file migrates itself (schema.py): nothing for the admin to run.
            schema.migrate(self)
        except (StoreError, sqlite3.Error) as exc:
            self._conn.close()
            raise StoreError(f"cannot open database {self.path!r}: {exc}") from exc

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run the body as one transaction: commit on success, roll back on any exception.

        sqlite3 errors come out as StoreError; our own exceptions pass through unchanged.
        """
        with self._lock:
            if self._depth:
                # Joined: the outermost transaction commits or rolls back for everyone.
                self._depth += 1
                try:
                    yield self._conn
                finally:
                    self._depth -= 1
                return
            try:
                # IMMEDIATE takes the write lock up front, so two processes cannot both read
                # and then deadlock upgrading to write (busy_timeout cannot resolve that).
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"database {self.path!r}: {exc}") from exc
            self._depth = 1
            try:
                yield self._conn
            except BaseException as exc:
                self._conn.rollback()
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"database {self.path!r}: {exc}") from exc
                raise
            finally:
                self._depth = 0
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._conn.rollback()
                raise StoreError(f"database {self.path!r}: {exc}") from exc

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """Read-only statements that all see one consistent state (a deferred read
        transaction: under WAL it neither waits for writers nor holds them up, so a long
        export or a chain check never stalls the server's audit writes)."""
        with self._lock:
            if self._depth:
                yield self._conn  # inside a transaction already: it is consistent
                return
            try:
                self._conn.execute("BEGIN DEFERRED")
            except sqlite3.Error as exc:
                raise StoreError(f"database {self.path!r}: {exc}") from exc
            self._depth = 1
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise StoreError(f"database {self.path!r}: {exc}") from exc
            finally:
                self._depth = 0
                self._conn.rollback()  # nothing to keep: it only read

    def execute(self, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Cursor:
        """Run one statement: inside :meth:`transaction` it joins that transaction; outside,
        SQLite's autocommit makes the statement its own transaction, committed when this
        returns. One statement then costs one execute, not BEGIN + statement + COMMIT.

        For reads (fetch the rows before the next call) and single writes; a statement with
        RETURNING must not be used here, as it stays open until its rows are read.
        """
        with self._lock:
            try:
                return self._conn.execute(sql, params)
            except sqlite3.Error as exc:
                raise StoreError(f"database {self.path!r}: {exc}") from exc

    def checkpoint(self) -> None:
        """Copy the WAL into the database file, on a connection of its own so that the
        writers' connection (and its lock) is never held meanwhile. PASSIVE: never waits."""
        if self.path == ":memory:":
            return
        if self._checkpointer is None:
            self._checkpointer = sqlite3.connect(self.path, check_same_thread=False,
                                                 isolation_level=None)
            self._checkpointer.execute("PRAGMA busy_timeout=5000")
        try:
            self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            raise StoreError(f"database {self.path!r}: checkpoint: {exc}") from exc

    def close(self) -> None:
        """Close the connection; the object is unusable afterwards."""
        with self._lock:
            if self._checkpointer is not None:
                self._checkpointer.close()
            self._conn.close()
