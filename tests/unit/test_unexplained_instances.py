"""Two instances watching one Asterisk on one database see every ChanSpy twice: a spy nobody
explains is one audit row between them (one error logged), and either closes it."""

from __future__ import annotations

import pytest

from fastagi_spy.store.audit import EndReason
from fastagi_spy.store.database import Database
from tests.unit.test_model_scenarios import SERVER
from tests.unit.test_unexplained import T0, chanspy, detector, rows

ROGUE = "Local/rogue-spy@fsp-tests-00000001;2"


@pytest.fixture
def db(any_db: Database) -> Database:
    """On SQLite, then on the real PostgreSQL (tests/conftest.py)."""
    return any_db


def test_one_row_between_two_instances_and_the_survivor_closes_it(db: Database) -> None:
    a, b = detector(db), detector(db)
    a.feed(SERVER, chanspy("ChanSpyStart", ROGUE, at=T0))
    b.feed(SERVER, chanspy("ChanSpyStart", ROGUE, at=T0))
    [row] = rows(db)
    assert (row.via, row.channel, row.ended_at) == ("unexplained", ROGUE, None)
    b.feed(SERVER, chanspy("ChanSpyStop", ROGUE, at=T0 + 7))  # A has stopped meanwhile
    [row] = rows(db)
    assert (row.end_reason, row.spy_stopped_at) == (EndReason.COMPLETED, T0 + 7)


def test_a_new_spy_on_the_same_channel_after_the_stop_is_a_new_row(db: Database) -> None:
    a, b = detector(db), detector(db)
    for det in (a, b):
        det.feed(SERVER, chanspy("ChanSpyStart", ROGUE, at=T0))
    for det in (a, b):
        det.feed(SERVER, chanspy("ChanSpyStop", ROGUE, at=T0 + 5))
    a.feed(SERVER, chanspy("ChanSpyStart", ROGUE, at=T0 + 9, uniqueid="1733130000.77"))
    assert len(rows(db)) == 2
