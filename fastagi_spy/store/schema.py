"""The store's schema, versioned: numbered migrations for SQLite and PostgreSQL.

A one-row ``schema_version`` table says which migrations a database has. Each migration
has SQLite and PostgreSQL DDL (they differ in identity columns and float types). SQLite
migrates itself at open (an embedded file: nothing for the admin to run); PostgreSQL is
shared by several instances, so migrating it is an admin step (``fastagi-spy migrate``) and
a server refuses to start on an older one (store/open.py).

Version 1 is the schema as it was before versions existed. A SQLite file made then (tables,
no ``schema_version``) is brought up to it with nothing lost and marked version 1.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from fastagi_spy.store import chain
from fastagi_spy.store.errors import StoreError


class Connector(Protocol):
    """What both connectors (database.Database, postgres.PostgresDatabase) offer."""

    def transaction(self) -> AbstractContextManager[Any]: ...


# Every table, parents before children (audit before audit_events): the order to insert
# rows in with foreign keys on. schema_version is not listed: it is not data to copy.
TABLES: tuple[str, ...] = (
    "pins", "auth_failures", "lockouts", "audit", "audit_events", "audit_chain",
    "cross_tokens", "passwords", "login_failures", "settings", "settings_changes",
)

# --- Version 1, SQLite: the schema before versions, as created and upgraded at the time. ---
# CREATE ... IF NOT EXISTS and the added columns below make it safe on a file made by any
# earlier release: what is missing is added, nothing is dropped.
_V1_SQLITE = (
    """CREATE TABLE IF NOT EXISTS pins (
        supervisor TEXT PRIMARY KEY,
        hash TEXT NOT NULL,
        updated_at REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS auth_failures (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL,
        at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS auth_failures_key_at ON auth_failures (key, at)",
    """CREATE TABLE IF NOT EXISTS lockouts (
        key TEXT PRIMARY KEY,
        until REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        started_at REAL NOT NULL,
        channel TEXT,
        uniqueid TEXT,
        via TEXT NOT NULL,
        supervisor TEXT,
        device TEXT,
        auth_result TEXT,
        requested_target TEXT,
        agent TEXT,
        resolved_channel TEXT,
        server TEXT,
        modes TEXT,
        spy_started_at REAL,
        spy_stopped_at REAL,
        ended_at REAL,
        end_reason TEXT,
        detail TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS audit_started_at ON audit (started_at)",
    # What happened within one attempt, in order: each PIN try, mode change, refusal.
    """CREATE TABLE IF NOT EXISTS audit_events (
        id INTEGER PRIMARY KEY,
        audit_id INTEGER NOT NULL REFERENCES audit (id),
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        detail TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS audit_events_audit_id ON audit_events (audit_id)",
    # One-time cross-server tokens (tokens.py): only a token's SHA-256 is kept.
    """CREATE TABLE IF NOT EXISTS cross_tokens (
        digest TEXT PRIMARY KEY,
        origin TEXT NOT NULL,
        destination TEXT NOT NULL,
        supervisor TEXT NOT NULL,
        mode TEXT NOT NULL,
        target TEXT NOT NULL,
        device TEXT,
        issued_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        used_at REAL
    )""",
    # People's passwords for the HTTP API (passwords.py): one peppered Argon2id hash each.
    """CREATE TABLE IF NOT EXISTS passwords (
        "user" TEXT PRIMARY KEY,
        hash TEXT NOT NULL,
        updated_at REAL NOT NULL
    )""",
    # VICIdial's login lockout per user (logins.py): failures in a row, and the lock.
    """CREATE TABLE IF NOT EXISTS login_failures (
        "user" TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        last_at REAL NOT NULL,
        locked_until REAL
    )""",
    # Settings changed from the web page (settings.py) and the record of each change.
    """CREATE TABLE IF NOT EXISTS settings (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (scope, key))""",
    """CREATE TABLE IF NOT EXISTS settings_changes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        person TEXT NOT NULL,
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        shown TEXT NOT NULL)""",
    # Every index costs each commit a page write, and the audit row is written four times per
    # attempt on the reactor; lookups by uniqueid and open rows (once, at start-up) scan.
    "DROP INDEX IF EXISTS audit_uniqueid",
    "DROP INDEX IF EXISTS audit_open",
)

# Columns added after a table's first release: (table, column, type). Added to older
# SQLite files; a new column must be nullable without a default (see chain.py).
_V1_ADDED_COLUMNS = (
    ("audit", "seq", "INTEGER"),  # the tamper-evident chain (chain.py)
    ("audit", "prev_hash", "TEXT"),
    ("audit", "row_hash", "TEXT"),
    # 1: the spy's start/stop times are our best guess (AMI was lost meanwhile); else NULL
    ("audit", "times_uncertain", "INTEGER"),
    # blind_monitor's tokens (tokens.py): NULL purpose is a cross-server token
    ("cross_tokens", "purpose", "TEXT"),
    ("cross_tokens", "stage", "TEXT"),
    ("cross_tokens", "spy_server", "TEXT"),
    ("cross_tokens", "note", "TEXT"),
)


def _v1_sqlite(conn: Any) -> None:
    for statement in _V1_SQLITE:
        conn.execute(statement)
    added = set()
    for table, column, kind in _V1_ADDED_COLUMNS:
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            added.add((table, column))
    for statement in chain.DDL:
        conn.execute(statement)
    if ("audit", "seq") in added:
        # Rows closed before the chain existed join it once, in id order. Never again:
        # a closed row outside the chain later is one somebody wrote by hand.
        chain.seal_closed(conn)


# --- Version 1, PostgreSQL: the same tables, columns and (64-bit) types, created whole. ---
# SQLite's INTEGER is 64-bit: BIGINT. REAL is a double there: DOUBLE PRECISION. Its rowid
# ids: identity columns (BY DEFAULT, so a copy from SQLite keeps its ids).
_ID = "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
_V1_POSTGRES = (
    """CREATE TABLE pins (
        supervisor TEXT PRIMARY KEY,
        hash TEXT NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    )""",
    f"""CREATE TABLE auth_failures (
        id {_ID},
        key TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX auth_failures_key_at ON auth_failures (key, at)",
    """CREATE TABLE lockouts (
        key TEXT PRIMARY KEY,
        until DOUBLE PRECISION NOT NULL
    )""",
    f"""CREATE TABLE audit (
        id {_ID},
        started_at DOUBLE PRECISION NOT NULL,
        channel TEXT,
        uniqueid TEXT,
        via TEXT NOT NULL,
        supervisor TEXT,
        device TEXT,
        auth_result TEXT,
        requested_target TEXT,
        agent TEXT,
        resolved_channel TEXT,
        server TEXT,
        modes TEXT,
        spy_started_at DOUBLE PRECISION,
        spy_stopped_at DOUBLE PRECISION,
        ended_at DOUBLE PRECISION,
        end_reason TEXT,
        detail TEXT,
        seq BIGINT,
        prev_hash TEXT,
        row_hash TEXT,
        times_uncertain BIGINT
    )""",
    "CREATE INDEX audit_started_at ON audit (started_at)",
    f"""CREATE TABLE audit_events (
        id {_ID},
        audit_id BIGINT NOT NULL REFERENCES audit (id),
        at DOUBLE PRECISION NOT NULL,
        kind TEXT NOT NULL,
        detail TEXT
    )""",
    "CREATE INDEX audit_events_audit_id ON audit_events (audit_id)",
    """CREATE TABLE audit_chain (
        id BIGINT PRIMARY KEY CHECK (id = 1),
        seq BIGINT NOT NULL,
        row_hash TEXT NOT NULL
    )""",
    f"INSERT INTO audit_chain (id, seq, row_hash) VALUES (1, 0, '{chain.GENESIS}')",
    """CREATE TABLE cross_tokens (
        digest TEXT PRIMARY KEY,
        origin TEXT NOT NULL,
        destination TEXT NOT NULL,
        supervisor TEXT NOT NULL,
        mode TEXT NOT NULL,
        target TEXT NOT NULL,
        device TEXT,
        issued_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        used_at DOUBLE PRECISION,
        purpose TEXT,
        stage TEXT,
        spy_server TEXT,
        note TEXT
    )""",
    """CREATE TABLE passwords (
        "user" TEXT PRIMARY KEY,
        hash TEXT NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE login_failures (
        "user" TEXT PRIMARY KEY,
        failures BIGINT NOT NULL,
        last_at DOUBLE PRECISION NOT NULL,
        locked_until DOUBLE PRECISION
    )""",
    """CREATE TABLE settings (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (scope, key))""",
    f"""CREATE TABLE settings_changes (
        id {_ID},
        at DOUBLE PRECISION NOT NULL,
        person TEXT NOT NULL,
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        shown TEXT NOT NULL)""",
)


def _statements(statements: tuple[str, ...]) -> Callable[[Any], None]:
    def run(conn: Any) -> None:
        for statement in statements:
            conn.execute(statement)
    return run


# --- Version 2: which instance opened an audit row. Several instances share one database;
# a restarted instance reconciles only the rows its own earlier run left open (and rows
# from before this column, NULL), never another live instance's (supervise/reconcile.py).
_V2 = ("ALTER TABLE audit ADD COLUMN instance TEXT",)


@dataclass(frozen=True)
class Migration:
    version: int
    sqlite: Callable[[Any], None]  # each runs inside the migration's transaction
    postgres: Callable[[Any], None]


# In order; append only. A released migration is never edited: a new one changes things.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, _v1_sqlite, _statements(_V1_POSTGRES)),
    Migration(2, _statements(_V2), _statements(_V2)),
)
LATEST: int = MIGRATIONS[-1].version


def _is_postgres(db: object) -> bool:
    # The SQL dialect, not is_remote (which says where calls may run, and tests change it).
    return getattr(db, "dialect", "sqlite") == "postgresql"


def _has_version_table(conn: Any, postgres: bool) -> bool:
    if postgres:
        row = conn.execute("SELECT to_regclass('schema_version')").fetchone()
        return row is not None and row[0] is not None
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                       "AND name = 'schema_version'").fetchone()
    return row is not None


def _version(conn: Any, postgres: bool) -> int:
    if not _has_version_table(conn, postgres):
        return 0
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


def current_version(db: Connector) -> int:
    """The database's schema version: 0 for an empty database (or a SQLite file made
    before versions existed, which :func:`migrate` marks version 1 without losing a row)."""
    with db.transaction() as conn:
        return _version(conn, _is_postgres(db))


def migrate(db: Connector) -> tuple[int, int]:
    """Apply every migration the database lacks, all in one transaction; returns (from, to).

    Idempotent: at the latest version it changes nothing. On PostgreSQL the transaction
    holds the store's advisory write lock (postgres.py), so two instances migrating at once
    run one after the other and the second finds nothing left to do. A database newer than
    this code is refused (StoreError): running old code on it could lose data.
    """
    postgres = _is_postgres(db)
    with db.transaction() as conn:
        before = _version(conn, postgres)
        if before > LATEST:
            raise StoreError(
                f"the database's schema is version {before}, newer than this fastagi-spy "
                f"knows (version {LATEST}): upgrade fastagi-spy instead")
        if before == LATEST:
            return before, before
        if not _has_version_table(conn, postgres):
            conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            conn.execute("INSERT INTO schema_version (version) VALUES (0)")
        for migration in MIGRATIONS:
            if migration.version > before:
                (migration.postgres if postgres else migration.sqlite)(conn)
                conn.execute("UPDATE schema_version SET version = ?", (migration.version,))
        return before, LATEST
