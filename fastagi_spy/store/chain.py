"""The audit log's tamper-evident chain: a row joins it when it is closed, and is final then.

In the transaction that closes a row, the row gets the next sequence number (``seq``), the
hash of the row chained before it (``prev_hash``) and its own hash (``row_hash``): SHA-256
over a canonical JSON encoding of the row as closed, ``seq`` and ``prev_hash`` included.
Editing any field of a chained row, deleting one or reordering them breaks the chain at
that row; :func:`verify` walks it and names the first row that does not fit. A one-row
head table (``audit_chain``) holds the last link, so deleting the newest rows shows too.
Open rows still change, so they are not chained yet; ``verify`` lists old ones.

This makes tampering evident, not impossible: whoever can write the database and recompute
every later hash can forge a chain. Keep the head ``verify`` prints somewhere else too.

The encoding skips NULL columns, so a nullable column added later (no default) leaves the
hashes of older rows as they were; a column added with a non-NULL default would not.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field

GENESIS = "0" * 64  # the prev_hash of the first chained row
CHAIN_COLUMNS = ("seq", "prev_hash", "row_hash")
DDL = (
    """CREATE TABLE IF NOT EXISTS audit_chain (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL,
        row_hash TEXT NOT NULL
    )""",
    f"INSERT OR IGNORE INTO audit_chain (id, seq, row_hash) VALUES (1, 0, '{GENESIS}')",
)


def canonical(row: Mapping[str, object], seq: int, prev_hash: str) -> bytes:
    """The bytes a row's hash covers: every non-NULL column but the hash itself, as JSON
    with sorted keys (floats as Python writes them, which reads back to the same double)."""
    fields = {k: v for k, v in row.items() if v is not None and k not in CHAIN_COLUMNS}
    fields["seq"] = seq
    fields["prev_hash"] = prev_hash
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def row_hash(row: Mapping[str, object], seq: int, prev_hash: str) -> str:
    return hashlib.sha256(canonical(row, seq, prev_hash)).hexdigest()


def _head(conn: sqlite3.Connection) -> tuple[int, str]:
    # A missing head (deleted by hand) reads as the start: verify then names the damage.
    head = conn.execute("SELECT seq, row_hash FROM audit_chain WHERE id = 1").fetchone()
    return (int(head[0]), str(head[1])) if head is not None else (0, GENESIS)


def _row(conn: sqlite3.Connection, record_id: int) -> dict[str, object] | None:
    cursor = conn.execute("SELECT * FROM audit WHERE id = ?", (record_id,))
    values = cursor.fetchone()
    if values is None:
        return None
    return dict(zip((d[0] for d in cursor.description), values, strict=True))


def link(conn: sqlite3.Connection, record_id: int) -> None:
    """Chain one just-closed row. Call inside the transaction that closed it, so the row
    is never closed and unchained, and two closers cannot take the same ``seq``."""
    head_seq, head_hash = _head(conn)
    row = _row(conn, record_id)
    if row is None or row.get("seq") is not None:
        return
    seq = head_seq + 1
    digest = row_hash(row, seq, head_hash)
    conn.execute("UPDATE audit SET seq = ?, prev_hash = ?, row_hash = ? WHERE id = ?",
                 (seq, head_hash, digest, record_id))
    conn.execute("UPDATE audit_chain SET seq = ?, row_hash = ? WHERE id = 1", (seq, digest))


def seal_closed(conn: sqlite3.Connection) -> int:
    """Chain every closed row that is not chained yet, oldest id first (rows closed before
    the chain existed, or by a bulk close); returns how many."""
    ids = [int(r[0]) for r in conn.execute(
        "SELECT id FROM audit WHERE seq IS NULL AND ended_at IS NOT NULL ORDER BY id")]
    for record_id in ids:
        link(conn, record_id)
    return len(ids)


@dataclass(frozen=True)
class Break:
    """The first row where the chain does not hold, and why."""

    record_id: int | None  # None: the damage is after the last row (newest rows deleted)
    seq: int | None
    why: str

    def __str__(self) -> str:
        where = (f"row id {self.record_id}" if self.record_id is not None else "end of chain")
        return f"{where}{f' (seq {self.seq})' if self.seq is not None else ''}: {self.why}"


@dataclass
class Report:
    checked: int = 0  # chained rows whose hashes held
    head_seq: int = 0
    head_hash: str = GENESIS
    broken: Break | None = None
    open_too_long: list[int] = field(default_factory=list)  # ids of old open rows

    @property
    def ok(self) -> bool:
        return self.broken is None


def verify(conn: sqlite3.Connection, now: float, open_bound: float) -> Report:
    """Walk the chain in ``seq`` order and report the first row that breaks it, then rows
    closed but never chained; list open rows started more than ``open_bound`` s ago."""
    report = Report()
    report.head_seq, report.head_hash = _head(conn)
    report.broken = _walk(conn, report)
    if report.broken is None:
        closed = conn.execute("SELECT id FROM audit WHERE seq IS NULL AND ended_at IS NOT NULL "
                              "ORDER BY id LIMIT 1").fetchone()
        if closed is not None:
            report.broken = Break(int(closed[0]), None, "closed but not in the chain")
    report.open_too_long = [int(r[0]) for r in conn.execute(
        "SELECT id FROM audit WHERE ended_at IS NULL AND seq IS NULL AND started_at < ? "
        "ORDER BY id", (now - open_bound,))]
    return report


def _walk(conn: sqlite3.Connection, report: Report) -> Break | None:
    cursor = conn.execute("SELECT * FROM audit WHERE seq IS NOT NULL ORDER BY seq, id")
    names = [d[0] for d in cursor.description]
    expected, prev = 1, GENESIS
    last_id: int | None = None
    for values in cursor:
        row = dict(zip(names, values, strict=True))
        record_id, seq = int(str(row["id"])), row["seq"]
        if not isinstance(seq, int) or seq != expected:
            why = (f"seq {seq} again: a row was copied or renumbered" if seq == expected - 1
                   else f"expected seq {expected}: a row before it is missing or was moved")
            return Break(record_id, seq if isinstance(seq, int) else None, why)
        if row["prev_hash"] != prev:
            return Break(record_id, seq, "prev_hash is not the previous row's hash: the row "
                                         "before it was changed, removed or moved")
        if row["row_hash"] != row_hash(row, seq, prev):
            return Break(record_id, seq, "its contents changed after it was closed")
        prev, expected, last_id = str(row["row_hash"]), expected + 1, record_id
        report.checked += 1
    if report.head_seq != expected - 1 or report.head_hash != prev:
        return Break(None, report.head_seq,
                     f"the chain ends at seq {expected - 1}"
                     f"{f' (row id {last_id})' if last_id is not None else ''} but its head "
                     f"says seq {report.head_seq}: the newest rows were removed or changed")
    return None
