"""Copy a SQLite site into an empty PostgreSQL store: every table, every row, the same ids.

Audit ids are quoted in notes and exports, so rows keep their ids; the tamper-evident chain
(chain.py) is copied as it is (seq, prev_hash, row_hash and its head), so it verifies on the
target and continues there. The copy is one transaction on the target: all or nothing.
Nothing is merged: a target with rows in any table is refused before anything is written.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from fastagi_spy.store import chain, schema
from fastagi_spy.store.database import Database
from fastagi_spy.store.errors import StoreError

_BATCH = 1000  # rows per executemany: bounded memory on a large audit table
# The columns that mark a file as ours: every release has had this audit table.
_SIGNATURE = ("audit", frozenset({"id", "started_at", "via", "end_reason"}))
# A target table that holds only this is still empty: a fresh store writes the chain's
# head at its start (genesis) before any audit row exists.
_FRESH_ROWS = {"audit_chain": [(1, 0, chain.GENESIS)]}
_VERSION_TABLE = "schema_version"  # not data: each side has its own, at the same version


class TransferError(StoreError):
    """The copy was refused or failed; nothing was written. The message says why."""


class Store(Protocol):
    """What both connectors (database.Database, postgres.PostgresDatabase) offer."""

    def transaction(self) -> AbstractContextManager[Any]: ...

    def snapshot(self) -> AbstractContextManager[Any]: ...


@dataclass
class Source:
    """The SQLite site, open (and so at the current schema), and what opening it changed."""

    db: Database
    version_before: int  # 0: made before schema versions existed
    added: list[str]  # tables and table.columns the upgrade at open added


@dataclass
class Copied:
    """What a transfer did, for the operator to read."""

    counts: list[tuple[str, int]] = field(default_factory=list)  # (table, rows), in copy order
    missing: list[str] = field(default_factory=list)  # tables the source never had: 0 rows
    sequences: dict[str, int] = field(default_factory=dict)  # "table.column" -> next id
    chain: chain.Report = field(default_factory=chain.Report)  # the target's, as committed


def inspect_source(path: str | Path) -> dict[str, set[str]]:
    """The tables and columns of a fastagi-spy SQLite file, read without changing it.

    TransferError when the file is missing, not SQLite, or not one of ours. Call this
    before opening the file with database.Database, which would create a schema in any
    file it is given.
    """
    p = Path(path)
    if not p.is_file():
        raise TransferError(f"{p}: no such file (the SQLite database to copy from)")
    try:
        conn = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise TransferError(f"{p}: cannot open: {exc}") from exc
    try:
        names = [str(r[0]) for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]
        tables = {name: {str(r[1]) for r in conn.execute(f'PRAGMA table_info("{name}")')}
                  for name in names}
    except sqlite3.Error as exc:
        raise TransferError(f"{p}: not a SQLite database ({exc})") from exc
    finally:
        conn.close()
    table, columns = _SIGNATURE
    if not columns <= tables.get(table, set()):
        raise TransferError(f"{p}: not a fastagi-spy database (no {table} table with "
                            f"{', '.join(sorted(columns))})")
    return tables


def file_version(path: str | Path) -> int | None:
    """A SQLite file's schema version, read without changing it: None when there is no
    file yet, 0 when it has no version table (empty, or made before versions existed)."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        conn = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True)
        try:
            if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                            "name = 'schema_version'").fetchone() is None:
                return 0
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise TransferError(f"{p}: not a SQLite database ({exc})") from exc
    return int(row[0]) if row and row[0] is not None else 0


def open_source(path: str | Path) -> Source:
    """Open a fastagi-spy SQLite site to copy from, refusing any other file untouched.

    Opening brings a file from an older release up to the current schema in place (as
    ``serve`` would): the copy needs the columns the target has. What it added is returned,
    so the operator is told.
    """
    before = inspect_source(path)
    version = file_version(path) or 0
    db = Database(path)
    return Source(db, version, upgrades(before, inspect_source(path)))


def upgrades(before: dict[str, set[str]], after: dict[str, set[str]]) -> list[str]:
    """What opening the source added to it (tables, table.columns): empty if it was current."""
    added = [t for t in after if t not in before]
    added += [f"{t}.{c}" for t in after if t in before for c in sorted(after[t] - before[t])]
    return sorted(added)


def copy_site(source: Store, target: Store, tables: Sequence[str], *,
              now: float | None = None) -> Copied:
    """Copy every row of ``tables`` (in this order: parents first) from ``source`` (SQLite,
    at the current schema) into ``target`` (at the current schema, empty).

    One transaction on the target; the source is read under its write lock. Counted on both
    sides and the chain checked on both before commit. TransferError says what was refused.
    """
    now = time.time() if now is None else now
    # The SQL dialect (as schema.py decides), not is_remote: that says where calls may run.
    postgres = getattr(target, "dialect", "sqlite") == "postgresql"
    result = Copied()
    # The source's write lock, not a mere snapshot, until the target commits: a server still
    # running on the file waits (or fails) instead of writing a row the copy would miss.
    with source.transaction() as src, target.transaction() as dst:
        have = {str(r[0]) for r in src.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if postgres:
            # An admin's one-off copy: no per-statement limit (a large audit table's chain
            # check is one long SELECT); it ends with this transaction.
            dst.execute("SET LOCAL statement_timeout = 0")
        _same_version(src, dst)
        unknown = sorted(t for t in have - set(tables) - {_VERSION_TABLE}
                         if not t.startswith("sqlite_"))
        if unknown:
            # Copying the rest would lose these rows: refuse rather than leave them behind.
            raise TransferError(f"the source has tables this version does not know: "
                                f"{', '.join(unknown)} (is it from a newer fastagi-spy?)")
        _refuse_rows(dst, tables)
        for table in tables:
            if table not in have:
                result.missing.append(table)
                result.counts.append((table, 0))
                continue
            result.counts.append((table, _copy_table(src, dst, table, postgres)))
        _check_counts(src, dst, result, have)
        if postgres:
            result.sequences = _reset_sequences(src, dst, tables, have)
        result.chain = _check_chain(src, dst, now)
    return result


def _version(conn: Any) -> int:
    row = conn.execute(f"SELECT max(version) FROM {_VERSION_TABLE}").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _same_version(src: Any, dst: Any) -> None:
    """Both sides at this code's schema: the same tables and columns, nothing to guess."""
    got = (_version(src), _version(dst))
    if got != (schema.LATEST, schema.LATEST):
        raise TransferError(f"schema versions: source {got[0]}, target {got[1]}; both must be "
                            f"at version {schema.LATEST} (run `fastagi-spy migrate` first)")


def full_tables(conn: Any, tables: Sequence[str]) -> list[str]:
    """The tables that hold rows (a fresh chain head does not count)."""
    full = []
    for table in tables:
        rows = [tuple(r) for r in conn.execute(f'SELECT * FROM "{table}" LIMIT 2').fetchall()]
        if rows and rows != _FRESH_ROWS.get(table):
            full.append(table)
    return full


def refuse_full(conn: Any, tables: Sequence[str]) -> None:
    """TransferError when the target has rows in any table: nothing is merged."""
    full = full_tables(conn, tables)
    if full:
        raise TransferError(f"the target already has rows in {', '.join(full)}: it must be a "
                            "new, empty database (nothing is merged); nothing was copied")


def _refuse_rows(dst: Any, tables: Sequence[str]) -> None:
    """Refuse a target with rows in any table (no merging); clear a fresh chain head."""
    refuse_full(dst, tables)
    for table in _FRESH_ROWS:
        if table in tables:
            dst.execute(f'DELETE FROM "{table}"')  # replaced by the source's own row


def _columns(conn: Any, table: str) -> list[str]:
    cursor = conn.execute(f'SELECT * FROM "{table}" WHERE 1 = 0')
    return [str(d[0]) for d in cursor.description]


def _copy_table(src: Any, dst: Any, table: str, postgres: bool) -> int:
    columns = _columns(src, table)
    extra = sorted(set(columns) - set(_columns(dst, table)))
    if extra:
        raise TransferError(f"the target's {table} table has no column {', '.join(extra)}: "
                            "run `fastagi-spy migrate` with this version on both first")
    names = ", ".join(f'"{c}"' for c in columns)
    # Explicit ids: PostgreSQL takes them into an identity column only when told to.
    override = " OVERRIDING SYSTEM VALUE" if postgres else ""
    insert = (f'INSERT INTO "{table}" ({names}){override} '
              f"VALUES ({', '.join('?' for _ in columns)})")
    copied = 0
    for batch in _batches(src.execute(f'SELECT {names} FROM "{table}" ORDER BY rowid')):
        try:
            if hasattr(dst, "executemany"):
                dst.executemany(insert, batch)
            else:
                for row in batch:
                    dst.execute(insert, row)
        except StoreError:
            raise
        except Exception as exc:  # the driver's own error: say which table
            raise TransferError(f"copying {table}: {exc}") from exc
        copied += len(batch)
    return copied


def _batches(cursor: Any) -> Iterator[list[tuple[Any, ...]]]:
    while rows := cursor.fetchmany(_BATCH):
        yield [tuple(r) for r in rows]


def _count(conn: Any, table: str) -> int:
    return int(conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])


def _check_counts(src: Any, dst: Any, result: Copied, have: set[str]) -> None:
    """Count every table on both sides: each must hold what was copied, no more, no less."""
    for table, copied in result.counts:
        source = _count(src, table) if table in have else 0
        target = _count(dst, table)
        if not source == copied == target:
            raise TransferError(f"{table}: {source} rows in the source, {copied} copied, "
                                f"{target} in the target; nothing was committed")


def _reset_sequences(src: Any, dst: Any, tables: Sequence[str], have: set[str]
                     ) -> dict[str, int]:
    """Move each identity or serial column's sequence past the copied ids, so the next row
    written on the target does not collide with a copied one. Past SQLite's own high-water
    mark too (AUTOINCREMENT never reuses the id of a deleted newest row; neither do we)."""
    used: dict[str, int] = {}
    if "sqlite_sequence" in have:
        used = {str(n): int(s) for n, s in src.execute("SELECT name, seq FROM sqlite_sequence")}
    # The LIKE pattern is a parameter: a literal percent sign would clash with the driver's
    # own placeholders.
    rows = dst.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND (is_identity = 'YES' OR column_default "
        "LIKE ?)", ("nextval(%",)).fetchall()
    done: dict[str, int] = {}
    for table, column in sorted((str(t), str(c)) for t, c in rows):
        if table not in tables:
            continue
        top = dst.execute(f'SELECT max("{column}") FROM "{table}"').fetchone()[0]
        last = max(int(top or 0), used.get(table, 0))
        # setval(.., n, true): the next value is n + 1; (.., 1, false): the next is 1.
        dst.execute("SELECT setval(pg_get_serial_sequence(?, ?), ?, ?)",
                    (table, column, max(last, 1), last > 0))
        done[f"{table}.{column}"] = last + 1
    return done


def _check_chain(src: Any, dst: Any, now: float) -> chain.Report:
    """The chain must read on the target exactly as on the source: the same rows checked,
    the same head, and a break (if the source had one) at the same row."""
    bound = 86400.0
    before, after = chain.verify(src, now, bound), chain.verify(dst, now, bound)
    if (before.checked, before.head_seq, before.head_hash, str(before.broken)) != (
            after.checked, after.head_seq, after.head_hash, str(after.broken)):
        raise TransferError(
            f"the audit chain does not read the same on the target (source: {before.checked} "
            f"rows, head seq {before.head_seq}, {before.broken or 'intact'}; target: "
            f"{after.checked} rows, head seq {after.head_seq}, {after.broken or 'intact'}); "
            "nothing was committed")
    return after
