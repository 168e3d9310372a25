"""The audit log's tamper-evident chain: rows join it as they close; any edit, deletion or
reordering made with sqlite3 afterwards is caught and the first broken row named."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from fastagi_spy.store import chain
from fastagi_spy.store.audit import AuditLog, EndReason
from fastagi_spy.store.database import Database

T0 = 1_700_000_000.0


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "audit.sqlite3"


def _fill(path: Path, count: int = 5) -> list[int]:
    """``count`` closed rows with every kind of column set, and one open row."""
    db = Database(path)
    log = AuditLog(db)
    ids = []
    for i in range(count):
        rid = log.open(T0 + i, "phone", channel=f"Local/2001@fsp-phones-{i:04x};2",
                       uniqueid=f"{T0 + i}", supervisor="2001", device="Local/2001@fsp-phones")
        log.update(rid, requested_target="1001", agent="1001", server="pbx1",
                   resolved_channel="Local/1001@fsp-agents-0001;1", modes="listen")
        log.mark_spy_started(rid, T0 + i + 0.25)
        log.mark_spy_stopped(rid, T0 + i + 0.75)
        log.close(rid, T0 + i + 1, EndReason.AGENT_HANGUP, "detail é")
        ids.append(rid)
    log.open(T0 + 99, "api")
    db.close()
    return ids


def _verify(path: Path, now: float = T0 + 100, bound: float = 3600) -> chain.Report:
    db = Database(path)
    try:
        with db.snapshot() as conn:
            return chain.verify(conn, now, bound)
    finally:
        db.close()


def _tamper(path: Path, sql: str, *params: object) -> None:
    conn = sqlite3.connect(path)
    conn.execute(sql, params)
    conn.commit()
    conn.close()


def test_closed_rows_chain_in_close_order_and_verify(path: Path) -> None:
    ids = _fill(path)
    report = _verify(path)
    assert report.ok, report.broken
    assert report.checked == report.head_seq == len(ids)
    conn = sqlite3.connect(path)
    seqs = conn.execute("SELECT id, seq FROM audit WHERE seq IS NOT NULL ORDER BY seq").fetchall()
    assert seqs == [(rid, n + 1) for n, rid in enumerate(ids)]
    open_row = conn.execute("SELECT seq, row_hash FROM audit WHERE ended_at IS NULL").fetchone()
    assert open_row == (None, None)  # open rows still change: not chained yet
    conn.close()


EDITS = [
    ("started_at", "started_at + 1"), ("channel", "'Local/9999@x-1;2'"), ("uniqueid", "'x'"),
    ("via", "'web'"), ("supervisor", "'2002'"), ("device", "NULL"), ("auth_result", "'bad_pin'"),
    ("requested_target", "'1002'"), ("agent", "'1002'"), ("resolved_channel", "'Local/x;1'"),
    ("server", "'pbx2'"), ("modes", "'listen,barge'"), ("spy_started_at", "NULL"),
    ("spy_stopped_at", "spy_stopped_at + 0.001"), ("ended_at", "ended_at - 60"),
    ("end_reason", "'completed'"), ("detail", "'nothing to see'"), ("id", "id + 1000"),
    ("row_hash", "CASE substr(row_hash, 1, 1) WHEN 'a' THEN 'b' ELSE 'a' END || substr(row_hash, 2)"),
    ("prev_hash", "CASE substr(prev_hash, 1, 1) WHEN 'a' THEN 'b' ELSE 'a' END || substr(prev_hash, 2)"),
]


@pytest.mark.parametrize("column, value", EDITS)
@pytest.mark.parametrize("which", [0, 2, 4])
def test_editing_any_field_of_any_closed_row_is_caught(path: Path, column: str, value: str,
                                                       which: int) -> None:
    ids = _fill(path)
    _tamper(path, f"UPDATE audit SET {column} = {value} WHERE id = ?", ids[which])
    report = _verify(path)
    assert report.broken is not None
    assert report.broken.seq == which + 1
    assert report.broken.record_id in (ids[which], ids[which] + 1000)
    assert f"row id {report.broken.record_id} (seq {which + 1})" in str(report.broken)


def test_an_edit_with_the_hash_recomputed_breaks_the_next_row(path: Path) -> None:
    """Somebody who also fixes up the edited row's own hash is caught at the next row."""
    ids = _fill(path)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE audit SET supervisor = '2002' WHERE id = ?", (ids[1],))
    cursor = conn.execute("SELECT * FROM audit WHERE id = ?", (ids[1],))
    row = dict(zip([d[0] for d in cursor.description], cursor.fetchone(), strict=True))
    digest = chain.row_hash(row, 2, str(row["prev_hash"]))
    conn.execute("UPDATE audit SET row_hash = ? WHERE id = ?", (digest, ids[1]))
    conn.commit()
    conn.close()
    broken = _verify(path).broken
    assert broken is not None and (broken.record_id, broken.seq) == (ids[2], 3)
    assert "prev_hash" in broken.why


@pytest.mark.parametrize("which", [0, 2])
def test_deleting_a_row_is_caught_at_the_row_after_it(path: Path, which: int) -> None:
    ids = _fill(path)
    _tamper(path, "DELETE FROM audit WHERE id = ?", ids[which])
    broken = _verify(path).broken
    assert broken is not None and (broken.record_id, broken.seq) == (ids[which + 1], which + 2)
    assert "missing" in broken.why


def test_deleting_the_newest_rows_is_caught_by_the_head(path: Path) -> None:
    ids = _fill(path)
    _tamper(path, "DELETE FROM audit WHERE id >= ?", ids[3])
    broken = _verify(path).broken
    assert broken is not None and broken.record_id is None
    assert f"ends at seq 3 (row id {ids[2]}) but its head says seq 5" in str(broken)


def test_reordering_rows_is_caught(path: Path) -> None:
    """Swapping two rows' places in the chain (their seq), or their ids."""
    ids = _fill(path)
    _tamper(path, "UPDATE audit SET seq = CASE id WHEN ? THEN 3 ELSE 2 END WHERE id IN (?, ?)",
            ids[1], ids[1], ids[2])
    broken = _verify(path).broken
    assert broken is not None and (broken.record_id, broken.seq) == (ids[2], 2)

    ids = _fill(path.with_name("b.sqlite3"))
    _tamper(path.with_name("b.sqlite3"),
            "UPDATE audit SET id = CASE id WHEN ? THEN -1 ELSE id END", ids[3])
    _tamper(path.with_name("b.sqlite3"), "UPDATE audit SET id = ? WHERE id = ?", ids[3], ids[4])
    _tamper(path.with_name("b.sqlite3"), "UPDATE audit SET id = ? WHERE id = -1", ids[4])
    broken = _verify(path.with_name("b.sqlite3")).broken
    assert broken is not None and broken.seq == 4


def test_a_row_written_by_hand_or_reopened_is_caught(path: Path) -> None:
    ids = _fill(path)
    _tamper(path, "INSERT INTO audit (started_at, via, ended_at, end_reason) "
                  "VALUES (?, 'phone', ?, 'completed')", T0 + 50, T0 + 51)
    broken = _verify(path).broken
    assert broken is not None and broken.why == "closed but not in the chain"

    _fill(path.with_name("b.sqlite3"))
    _tamper(path.with_name("b.sqlite3"),
            "UPDATE audit SET ended_at = NULL, end_reason = NULL WHERE id = ?", ids[0])
    broken = _verify(path.with_name("b.sqlite3")).broken
    assert broken is not None and (broken.record_id, broken.seq) == (ids[0], 1)


def test_old_open_rows_are_listed_as_not_chained(path: Path) -> None:
    _fill(path)
    report = _verify(path, now=T0 + 99 + 7200, bound=3600)
    assert report.ok and len(report.open_too_long) == 1
    assert _verify(path, now=T0 + 99 + 60, bound=3600).open_too_long == []


def test_a_closed_row_is_final(path: Path) -> None:
    """Writes after the close would break the chain: update refuses, late AMI marks are
    dropped, and a second close changes nothing."""
    db = Database(path)
    log = AuditLog(db)
    rid = log.open(T0, "phone")
    log.close(rid, T0 + 1, EndReason.DENIED, "team")
    with pytest.raises(KeyError, match="no open audit record"):
        log.update(rid, agent="1001")
    log.mark_spy_started(rid, T0 + 2)
    log.mark_spy_stopped(rid, T0 + 3)
    log.add_mode(rid, "barge")
    assert not log.close(rid, T0 + 4, EndReason.ERROR)
    db.close()
    assert _verify(path).ok


def test_close_interrupted_chains_what_it_closes(path: Path) -> None:
    db = Database(path)
    log = AuditLog(db)
    for i in range(3):
        log.open(T0 + i, "phone")
    assert log.close_interrupted(T0 + 10) == 3
    db.close()
    report = _verify(path)
    assert report.ok and report.checked == 3


def test_an_older_database_gains_the_chain_and_keeps_its_rows(path: Path) -> None:
    """A database made before the chain (no seq/prev_hash/row_hash columns, no head) opens:
    its closed rows are chained once, in id order; its open rows stay open."""
    conn = sqlite3.connect(path)
    conn.execute("""CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT,
        started_at REAL NOT NULL, channel TEXT, uniqueid TEXT, via TEXT NOT NULL,
        supervisor TEXT, device TEXT, auth_result TEXT, requested_target TEXT, agent TEXT,
        resolved_channel TEXT, server TEXT, modes TEXT, spy_started_at REAL,
        spy_stopped_at REAL, ended_at REAL, end_reason TEXT, detail TEXT)""")
    for i in range(3):
        conn.execute("INSERT INTO audit (started_at, via, supervisor, ended_at, end_reason) "
                     "VALUES (?, 'phone', '2001', ?, 'completed')", (T0 + i, T0 + i + 1))
    conn.execute("INSERT INTO audit (started_at, via) VALUES (?, 'phone')", (T0 + 5,))
    conn.commit()
    conn.close()
    report = _verify(path)
    assert report.ok and report.checked == 3
    db = Database(path)
    log = AuditLog(db)
    assert log.close(4, T0 + 6, EndReason.ABANDONED)
    assert [r.id for r in log.list()] == [4, 3, 2, 1]
    db.close()
    assert _verify(path).checked == 4


@pytest.fixture
def rows_path(path: Path) -> Iterator[Path]:
    _fill(path, 2)
    yield path


def test_the_hash_covers_a_canonical_encoding(rows_path: Path) -> None:
    """Column order and NULL columns do not change a row's hash; any value does."""
    row = {"id": 1, "started_at": T0, "via": "phone", "detail": None}
    same = {"detail": None, "via": "phone", "started_at": T0, "id": 1, "agent": None}
    assert chain.row_hash(row, 1, chain.GENESIS) == chain.row_hash(same, 1, chain.GENESIS)
    assert chain.row_hash(row, 1, chain.GENESIS) != chain.row_hash({**row, "id": 2}, 1,
                                                                   chain.GENESIS)
    assert chain.row_hash(row, 1, chain.GENESIS) != chain.row_hash(row, 2, chain.GENESIS)
    assert _verify(rows_path).ok
