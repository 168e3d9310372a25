"""Joined transactions: store calls inside an outer transaction commit or roll back together."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastagi_spy.store.audit import AuditLog, EndReason
from fastagi_spy.store.database import Database


def test_inner_calls_join_the_outer_transaction_and_roll_back_with_it(tmp_path: Path) -> None:
    """An error after two store calls undoes both: nothing half-written survives."""
    db = Database(tmp_path / "a.sqlite3")
    audit = AuditLog(db)
    record = audit.open(1.0, "phone")
    with pytest.raises(RuntimeError), db.transaction():
        audit.update(record, agent="1001")
        audit.close(record, 2.0, EndReason.COMPLETED)
        raise RuntimeError("boom")
    row = AuditLog(Database(tmp_path / "a.sqlite3")).get(record)
    assert row is not None and row.agent is None and row.ended_at is None


def test_close_sets_fields_and_closes_in_one_go(tmp_path: Path) -> None:
    """close(**fields) writes the fields and the end together, visible to a new connection."""
    db = Database(tmp_path / "b.sqlite3")
    audit = AuditLog(db)
    record = audit.open(1.0, "phone")
    assert audit.close(record, 2.0, EndReason.NOT_FOUND, "not_found", requested_target="4242")
    row = AuditLog(Database(tmp_path / "b.sqlite3")).get(record)
    assert row is not None and row.requested_target == "4242" and row.end_reason == "not_found"
    with pytest.raises(ValueError):
        audit.close(record, 3.0, EndReason.COMPLETED, None, via="api")  # not updatable
