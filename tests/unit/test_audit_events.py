"""An attempt's events (audit_events) and the times_uncertain column: an older database
keeps working, and `fastagi-spy audit --id N` shows one record with its events."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from fastagi_spy.config import load
from fastagi_spy.service import open_stores
from fastagi_spy.store.audit import AuditLog, AuthResult, EndReason, EventKind, Via
from fastagi_spy.store.database import Database
from tests.unit.test_cli_admin import CONFIG

T0 = 1_732_156_800.0

# The audit table as the first release created it: no times_uncertain, no audit_events.
OLD_AUDIT = """CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, started_at REAL NOT NULL, channel TEXT,
    uniqueid TEXT, via TEXT NOT NULL, supervisor TEXT, device TEXT, auth_result TEXT,
    requested_target TEXT, agent TEXT, resolved_channel TEXT, server TEXT, modes TEXT,
    spy_started_at REAL, spy_stopped_at REAL, ended_at REAL, end_reason TEXT, detail TEXT)"""


def test_an_older_database_opens_keeps_its_rows_and_takes_events(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute(OLD_AUDIT)
        conn.execute("INSERT INTO audit (started_at, via, supervisor, ended_at, end_reason) "
                     "VALUES (?, 'phone', '2001', ?, 'bad_pin')", (T0, T0 + 5))
    audit = AuditLog(Database(path))
    (old,) = audit.list()
    assert (old.supervisor, old.end_reason, old.times_uncertain) == ("2001", "bad_pin", None)
    audit.add_event(old.id, T0 + 1, EventKind.PIN, "2001 bad_pin")
    assert [(e.at, e.kind, e.detail) for e in audit.events(old.id)] == [
        (T0 + 1, "pin", "2001 bad_pin")]
    Database(path).close()  # opening again changes nothing
    assert AuditLog(Database(path)).get(old.id) == old


def test_an_unknown_event_kind_is_refused(tmp_path: Path) -> None:
    audit = AuditLog(Database(tmp_path / "a.sqlite3"))
    record = audit.open(T0, Via.PHONE.value)
    with pytest.raises(ValueError, match="is not a valid EventKind"):
        audit.add_event(record, T0, "sql'; --", "x")  # type: ignore[arg-type]
    assert audit.events(record) == []


def test_audit_id_shows_one_record_in_full_with_its_events(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(CONFIG)
    audit = open_stores(load(path)).audit
    record = audit.open(T0, Via.PHONE.value, device="PJSIP/2001")
    audit.add_event(record, T0 + 1, EventKind.PIN, "9001 bad_pin")
    audit.add_event(record, T0 + 2, EventKind.PIN, "9001 ok")
    audit.update(record, supervisor="9001", auth_result=AuthResult.OK.value)
    audit.close(record, T0 + 3, EndReason.SUPERVISOR_HANGUP, None, times_uncertain=1)
    done = subprocess.run([sys.executable, "-m", "fastagi_spy.cli", "audit", "--config",
                           str(path), "--id", str(record)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "9001 bad_pin" in out and "9001 ok" in out and "supervisor_hangup" in out
    assert out.index("9001 bad_pin") < out.index("9001 ok")
    assert "times_uncertain" in out
    missing = subprocess.run([sys.executable, "-m", "fastagi_spy.cli", "audit", "--config",
                              str(path), "--id", "999"],
                             capture_output=True, text=True, timeout=60, check=False)
    assert missing.returncode == 1 and "no audit record 999" in missing.stderr
