"""Tests for the storage layer: directory, database, PINs, lockouts and the audit log."""

from __future__ import annotations

import csv
import io
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from fastagi_spy.domain import (
    AgentEntry,
    Directory,
    Mode,
    SupervisorEntry,
    device_of_channel,
)
from fastagi_spy.store.audit import AuditLog, AuditRecord, EndReason
from fastagi_spy.store.database import Database
from fastagi_spy.store.errors import StoreError
from fastagi_spy.store.lockout import LockoutPolicy, LockoutStore, device_key, supervisor_key
from fastagi_spy.store.pins import PinHasher, PinStore

PEPPER = b"0123456789abcdef-test-pepper"
T0 = 1_700_000_000.0


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A database file path inside a not-yet-existing directory."""
    return tmp_path / "state" / "spy.sqlite3"


@pytest.fixture
def db(any_db: Database) -> Database:
    """A fresh database: the SQLite file, then the real PostgreSQL (tests/conftest.py)."""
    return any_db


@pytest.fixture(scope="module")
def hasher() -> PinHasher:
    """One cheap hasher for the whole module (the dummy hash is computed once)."""
    return PinHasher.cheap(PEPPER)


# --- directory -------------------------------------------------------------------------


def _directory() -> Directory:
    return Directory(
        agents=(
            AgentEntry("10", "Ten", "sales", ("PJSIP/10",)),
            AgentEntry("100", "Hundred", "sales", ("PJSIP/100", "Local/100@agents")),
        ),
        supervisors=(
            SupervisorEntry("9001", "Sue", frozenset({"sales"}), frozenset(Mode), ("PJSIP/2001",)),
        ),
        never_spy=frozenset(),
        customers={"5551234": "ACME"},
    )


@pytest.mark.parametrize(
    ("channel", "device"),
    [
        ("PJSIP/2001-0000000a", "PJSIP/2001"),
        ("Local/2001@phones-0000001b;2", "Local/2001@phones"),
        ("PJSIP/my-phone-0000000c", "PJSIP/my-phone"),
        ("PJSIP/2001", "PJSIP/2001"),
    ],
)
def test_device_of_channel(channel: str, device: str) -> None:
    """Channel names map to device names by cutting ;n and then the last dash."""
    assert device_of_channel(channel) == device


def test_directory_lookups_are_exact() -> None:
    """Agent "10" never matches "100", and devices match only exactly."""
    directory = _directory()
    agent = directory.agent("10")
    assert agent is not None
    assert agent.name == "Ten"
    assert directory.agent("1") is None
    assert directory.agent("1000") is None
    sup = directory.supervisor_for_device(device_of_channel("PJSIP/2001-0000000a"))
    assert sup is not None
    assert sup.number == "9001"
    assert directory.supervisor_for_device("PJSIP/200") is None
    by_device = directory.agent_for_device(device_of_channel("Local/100@agents-00000001;1"))
    assert by_device is not None
    assert by_device.number == "100"
    assert directory.customer_name("5551234") == "ACME"
    assert directory.customer_name("555") is None


def test_directory_rejects_duplicates() -> None:
    """Two agents with one number or one device would be ambiguous, so they are refused."""
    with pytest.raises(ValueError, match="agent number"):
        Directory(
            agents=(AgentEntry("10", "A", "t"), AgentEntry("10", "B", "t")),
            supervisors=(),
            never_spy=frozenset(),
        )
    with pytest.raises(ValueError, match="agent device"):
        Directory(
            agents=(
                AgentEntry("10", "A", "t", ("PJSIP/1",)),
                AgentEntry("11", "B", "t", ("PJSIP/1",)),
            ),
            supervisors=(),
            never_spy=frozenset(),
        )


# --- database --------------------------------------------------------------------------


def test_database_creates_directory_and_wal(db_path: Path) -> None:
    """Opening creates the parent directory, the schema and a WAL journal."""
    database = Database(db_path)
    try:
        assert db_path.exists()
        with database.transaction() as conn:
            (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
        assert mode == "wal"
    finally:
        database.close()
    Database(db_path).close()  # reopening is idempotent


def test_database_unopenable_path_raises_store_error(tmp_path: Path) -> None:
    """A path that cannot be opened raises StoreError naming the path."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    bad = blocker / "spy.sqlite3"
    with pytest.raises(StoreError, match=r"spy\.sqlite3"):
        Database(bad)


def test_database_not_a_database_raises_store_error(tmp_path: Path) -> None:
    """A file that is not SQLite raises StoreError rather than sqlite3.Error."""
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(StoreError, match=r"junk\.sqlite3"):
        Database(junk)


def test_transaction_rolls_back_on_error(db: Database) -> None:
    """An exception inside transaction() leaves nothing behind."""
    with pytest.raises(RuntimeError), db.transaction() as conn:
        conn.execute("INSERT INTO lockouts (key, until) VALUES ('k', 1.0)")
        raise RuntimeError("boom")
    with db.transaction() as conn:
        assert conn.execute("SELECT COUNT(*) FROM lockouts").fetchone() == (0,)


def test_transaction_wraps_sqlite_errors(db: Database) -> None:
    """SQL errors come out as StoreError."""
    with pytest.raises(StoreError), db.transaction() as conn:
        conn.execute("SELECT nope FROM nowhere")


def test_concurrent_writers_threads_and_connections(db_path: Path) -> None:
    """Threads sharing one Database and a second Database on the same file all commit."""
    first = Database(db_path)
    second = Database(db_path)
    try:
        logs = [AuditLog(first), AuditLog(first), AuditLog(second), AuditLog(second)]

        def work(log: AuditLog) -> list[int]:
            """Open 25 records."""
            return [log.open(T0, "api") for _ in range(25)]

        with ThreadPoolExecutor(max_workers=4) as pool:
            ids = [i for batch in pool.map(work, logs) for i in batch]
        assert len(set(ids)) == 100
        assert len(AuditLog(first).list(limit=1000)) == 100
    finally:
        first.close()
        second.close()


# --- pins ------------------------------------------------------------------------------


def test_pin_right_and_wrong(hasher: PinHasher) -> None:
    """The right PIN verifies and a wrong one does not."""
    stored = hasher.hash_pin("9001", "4711")
    assert hasher.verify("9001", "4711", stored)
    assert not hasher.verify("9001", "4712", stored)


def test_pin_is_bound_to_supervisor(hasher: PinHasher) -> None:
    """A hash copied to another supervisor does not verify for them."""
    stored = hasher.hash_pin("9001", "4711")
    assert not hasher.verify("9002", "4711", stored)


def test_unknown_supervisor_still_runs_a_verify(
    hasher: PinHasher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown supervisor is false and costs one Argon2 verify, like a wrong PIN."""
    calls: list[str] = []
    original = PasswordHasher.verify

    def counting(self: PasswordHasher, hash: str, password: str) -> bool:
        """Count and delegate."""
        calls.append(hash)
        return original(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)
    assert not hasher.verify("9999", "4711", None)
    assert len(calls) == 1
    stored = hasher.hash_pin("9001", "4711")
    assert not hasher.verify("9001", "0000", stored)
    assert len(calls) == 2


def test_malformed_pin_verify_false_but_still_hashes(
    hasher: PinHasher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A malformed PIN is false without raising and still runs one verify."""
    calls: list[int] = []
    original = PasswordHasher.verify

    def counting(self: PasswordHasher, hash: str, password: str) -> bool:
        """Count and delegate."""
        calls.append(1)
        return original(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)
    stored = hasher.hash_pin("9001", "4711")
    assert not hasher.verify("9001", "47", stored)
    assert not hasher.verify("9001", "4711\n", stored)
    assert len(calls) == 2


def test_pepper_change_invalidates(hasher: PinHasher) -> None:
    """A hash made under one pepper does not verify under another."""
    stored = hasher.hash_pin("9001", "4711")
    other = PinHasher.cheap(b"another-pepper-of-16-bytes")
    assert not other.verify("9001", "4711", stored)


def test_garbage_hash_is_false(hasher: PinHasher) -> None:
    """A corrupted stored hash verifies false instead of raising."""
    assert not hasher.verify("9001", "4711", "not-an-argon2-hash")


@pytest.mark.parametrize(
    "pin", ["", "123", "1234567890123", "12a4", "\uff11\uff12\uff13\uff14", "1234\n", " 1234"]
)
def test_hash_pin_rejects_bad_pins(hasher: PinHasher, pin: str) -> None:
    """Only 4 to 12 ASCII digits can be set as a PIN."""
    with pytest.raises(ValueError, match="PIN"):
        hasher.hash_pin("9001", pin)


def test_short_pepper_rejected() -> None:
    """A pepper shorter than 16 bytes is refused."""
    with pytest.raises(ValueError, match="pepper"):
        PinHasher.cheap(b"short")


def test_pin_store_roundtrip(db: Database, hasher: PinHasher) -> None:
    """PinStore sets, replaces, reads and deletes hashes."""
    store = PinStore(db)
    assert store.get_hash("9001") is None
    store.set_hash("9001", "h1", T0)
    store.set_hash("9001", "h2", T0 + 1)
    assert store.get_hash("9001") == "h2"
    assert store.delete("9001")
    assert not store.delete("9001")
    assert store.get_hash("9001") is None


# --- lockout ---------------------------------------------------------------------------

# The supervisor key has a threshold of its own (much higher by default); the same here.
POLICY = LockoutPolicy(max_failures=3, window_s=60.0, lock_s=300.0, supervisor_max_failures=3)
KEYS = (supervisor_key("9001"), device_key("PJSIP/2001"))


def test_failures_in_window_lock_both_keys(db: Database) -> None:
    """N failures within the window lock the supervisor and the device keys."""
    store = LockoutStore(db, POLICY)
    assert not store.record_failure(KEYS, T0)
    assert not store.record_failure(KEYS, T0 + 10)
    assert store.record_failure(KEYS, T0 + 20)
    assert store.is_locked([KEYS[0]], T0 + 21) == T0 + 320
    assert store.is_locked([KEYS[1]], T0 + 21) == T0 + 320
    assert store.list_locked(T0 + 21) == sorted((k, T0 + 320) for k in KEYS)


def test_device_key_locks_across_supervisors(db: Database) -> None:
    """Spraying supervisor numbers from one device locks the device."""
    store = LockoutStore(db, POLICY)
    device = device_key("PJSIP/2001")
    for i, number in enumerate(["9001", "9002", "9003"]):
        locked = store.record_failure([supervisor_key(number), device], T0 + i)
    assert locked
    assert store.is_locked([device], T0 + 5) is not None
    assert store.is_locked([supervisor_key("9001")], T0 + 5) is None


def test_failures_outside_window_do_not_count(db: Database) -> None:
    """Failures older than the window are forgotten."""
    store = LockoutStore(db, POLICY)
    store.record_failure(KEYS, T0)
    store.record_failure(KEYS, T0 + 30)
    assert not store.record_failure(KEYS, T0 + 61)
    assert store.is_locked(KEYS, T0 + 62) is None


def test_lock_survives_reopen(db_path: Path) -> None:
    """A lockout written by one Database object is seen by a new one on the same file."""
    first = Database(db_path)
    store = LockoutStore(first, POLICY)
    for i in range(3):
        store.record_failure(KEYS, T0 + i)
    first.close()
    second = Database(db_path)
    try:
        assert LockoutStore(second, POLICY).is_locked(KEYS, T0 + 10) == T0 + 302
    finally:
        second.close()


def test_failure_counts_survive_reopen(db_path: Path) -> None:
    """Failure counters are in the DB, so a restart does not reset them."""
    first = Database(db_path)
    LockoutStore(first, POLICY).record_failure(KEYS, T0)
    LockoutStore(first, POLICY).record_failure(KEYS, T0 + 1)
    first.close()
    second = Database(db_path)
    try:
        assert LockoutStore(second, POLICY).record_failure(KEYS, T0 + 2)
    finally:
        second.close()


def test_lock_expires(db: Database) -> None:
    """A lock ends at its until time."""
    store = LockoutStore(db, POLICY)
    for i in range(3):
        store.record_failure(KEYS, T0 + i)
    until = store.is_locked(KEYS, T0 + 2)
    assert until == T0 + 302
    assert store.is_locked(KEYS, until - 0.001) == until
    assert store.is_locked(KEYS, until) is None
    assert store.list_locked(until) == []


def test_success_clears_failures_not_lock(db: Database) -> None:
    """A success resets the counter but leaves an existing lock in force."""
    store = LockoutStore(db, POLICY)
    store.record_failure(KEYS, T0)
    store.record_failure(KEYS, T0 + 1)
    store.record_success(KEYS, T0 + 2)
    assert not store.record_failure(KEYS, T0 + 3)
    other = ("supervisor:9002",)
    for i in range(3):
        store.record_failure(other, T0 + i)
    store.record_success(other, T0 + 5)
    assert store.is_locked(other, T0 + 6) is not None


def test_unlock(db: Database) -> None:
    """Admin unlock removes the lock and the failures, and reports whether it did."""
    store = LockoutStore(db, POLICY)
    for i in range(3):
        store.record_failure(KEYS, T0 + i)
    assert store.unlock(KEYS[0])
    assert store.is_locked([KEYS[0]], T0 + 3) is None
    assert store.is_locked([KEYS[1]], T0 + 3) is not None
    assert not store.record_failure([KEYS[0]], T0 + 4)
    assert not store.unlock("supervisor:nobody")


def test_relock_never_shortens(db: Database) -> None:
    """A further failure while locked keeps the later until."""
    store = LockoutStore(db, LockoutPolicy(max_failures=1, window_s=60.0, lock_s=300.0))
    store.record_failure(KEYS, T0 + 10)
    with db.transaction() as conn:
        conn.execute("UPDATE lockouts SET until = ?", (T0 + 1000,))
    assert store.record_failure(KEYS, T0 + 20)
    assert store.is_locked(KEYS, T0 + 21) == T0 + 1000


def test_duplicate_keys_count_once(db: Database) -> None:
    """Passing a key twice in one call counts one failure."""
    store = LockoutStore(db, POLICY)
    assert not store.record_failure(["k", "k"], T0)
    assert not store.record_failure(["k", "k"], T0 + 1)
    assert store.record_failure(["k"], T0 + 2)


def test_lockout_argument_checks(db: Database) -> None:
    """Empty key lists and bad policies are refused."""
    store = LockoutStore(db, POLICY)
    with pytest.raises(ValueError, match="key"):
        store.record_failure([], T0)
    with pytest.raises(ValueError, match="non-empty"):
        store.record_failure([""], T0)
    assert store.is_locked([], T0) is None
    with pytest.raises(ValueError, match="positive"):
        LockoutPolicy(max_failures=0)


# --- audit -----------------------------------------------------------------------------


def test_audit_open_update_close(db: Database) -> None:
    """A record goes from open through updates to closed with every field kept."""
    log = AuditLog(db)
    rid = log.open(
        T0,
        "phone",
        channel="PJSIP/2001-0000000a",
        uniqueid="1700.1",
        supervisor="9001",
        device="PJSIP/2001",
    )
    opened = log.get(rid)
    assert opened is not None and opened.ended_at is None
    log.update(
        rid,
        auth_result="ok",
        requested_target="1001",
        agent="1001",
        resolved_channel="PJSIP/1001-0000002a",
        server="pbx1",
    )
    log.add_mode(rid, "listen")
    log.add_mode(rid, "listen")
    log.add_mode(rid, Mode.BARGE.value)
    log.mark_spy_started(rid, T0 + 5)
    log.mark_spy_started(rid, T0 + 6)
    log.mark_spy_stopped(rid, T0 + 50)
    assert log.close(rid, T0 + 51, EndReason.SUPERVISOR_HANGUP)
    (record,) = log.list()
    assert record == AuditRecord(
        id=rid,
        started_at=T0,
        channel="PJSIP/2001-0000000a",
        uniqueid="1700.1",
        via="phone",
        supervisor="9001",
        device="PJSIP/2001",
        auth_result="ok",
        requested_target="1001",
        agent="1001",
        resolved_channel="PJSIP/1001-0000002a",
        server="pbx1",
        modes="listen,barge",
        spy_started_at=T0 + 5,
        spy_stopped_at=T0 + 50,
        ended_at=T0 + 51,
        end_reason="supervisor_hangup",
        detail=None,
    )


def test_audit_open_is_pending_and_committed(db_path: Path) -> None:
    """open() is committed at once: another connection sees it as pending."""
    database = Database(db_path)
    try:
        rid = AuditLog(database).open(T0, "api", supervisor="9001")
        with sqlite3.connect(db_path) as other:
            row = other.execute("SELECT auth_result FROM audit WHERE id = ?", (rid,)).fetchone()
        assert row == ("pending",)
    finally:
        database.close()


def test_audit_rejects_bad_columns_and_values(db: Database) -> None:
    """update() allows only listed columns and known values; unknown ids raise."""
    log = AuditLog(db)
    rid = log.open(T0, "web")
    for bad in ({"id": 5}, {"ended_at": 1.0}, {"end_reason": "x"}, {"via; DROP": "x"}):
        with pytest.raises(ValueError, match="not updatable"):
            log.update(rid, **bad)
    with pytest.raises(ValueError, match="auth_result"):
        log.update(rid, auth_result="maybe")
    with pytest.raises(ValueError):
        log.open(T0, "fax")
    with pytest.raises(ValueError):
        log.add_mode(rid, "shout")
    with pytest.raises(KeyError):
        log.update(rid + 100, agent="1")
    with pytest.raises(KeyError):
        log.add_mode(rid + 100, "listen")


def test_audit_close_idempotent(db: Database) -> None:
    """Closing twice keeps the first ending."""
    log = AuditLog(db)
    rid = log.open(T0, "phone")
    assert log.close(rid, T0 + 1, EndReason.BAD_PIN, "3 tries")
    assert not log.close(rid, T0 + 2, EndReason.ERROR, "late")
    record = log.get(rid)
    assert record is not None
    assert (record.ended_at, record.end_reason, record.detail) == (T0 + 1, "bad_pin", "3 tries")


def test_audit_close_interrupted_after_crash(db_path: Path) -> None:
    """Records left open by a crashed process are closed as interrupted on the next start."""
    first = Database(db_path)
    log = AuditLog(first)
    open_id = log.open(T0, "phone", uniqueid="u1")
    done_id = log.open(T0, "phone", uniqueid="u2")
    log.close(done_id, T0 + 1, EndReason.COMPLETED)
    del first  # no close(): as if the process had been killed

    second = Database(db_path)
    try:
        log2 = AuditLog(second)
        assert log2.close_interrupted(T0 + 100) == 1
        assert log2.close_interrupted(T0 + 200) == 0
        record = log2.get(open_id)
        assert record is not None
        assert (record.ended_at, record.end_reason) == (T0 + 100, "interrupted")
        done = log2.get(done_id)
        assert done is not None
        assert done.end_reason == "completed"
    finally:
        second.close()


def test_audit_list_filters(db: Database) -> None:
    """list() is newest first and filters by time and supervisor."""
    log = AuditLog(db)
    ids = [log.open(T0 + i, "phone", supervisor="9001" if i % 2 else "9002") for i in range(6)]
    assert [r.id for r in log.list()] == ids[::-1]
    assert [r.id for r in log.list(limit=2)] == ids[:3:-1]
    assert [r.id for r in log.list(since=T0 + 3)] == ids[:2:-1]
    assert [r.id for r in log.list(supervisor="9001")] == [ids[5], ids[3], ids[1]]
    assert [r.id for r in log.list(since=T0 + 2, supervisor="9002")] == [ids[4], ids[2]]
    with pytest.raises(ValueError, match="limit"):
        log.list(limit=0)


def test_audit_csv_export(db: Database) -> None:
    """CSV has a header, ISO-8601 UTC times, empty cells for NULL and neutralised formulas."""
    log = AuditLog(db)
    rid = log.open(0.0, "web", supervisor='=HYPERLINK("http://x")', device="@SUM(A1)")
    log.update(rid, detail="-2+3", requested_target="+44", agent="1001")
    log.close(rid, 1.5, EndReason.DENIED)
    out = io.StringIO(newline="")
    AuditLog.export_csv(log.list(), out)
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    header, row = rows
    assert header[:3] == ["id", "started_at", "channel"]
    assert len(header) == 19
    cell = dict(zip(header, row, strict=True))
    assert cell["started_at"] == "1970-01-01T00:00:00.000+00:00"
    assert cell["ended_at"] == "1970-01-01T00:00:01.500+00:00"
    assert cell["spy_started_at"] == ""
    assert cell["supervisor"] == '\'=HYPERLINK("http://x")'
    assert cell["device"] == "'@SUM(A1)"
    assert cell["detail"] == "'-2+3"
    assert cell["requested_target"] == "'+44"
    assert cell["agent"] == "1001"
    assert cell["end_reason"] == "denied"
