"""Start-up reconciliation when several instances share one database and one Asterisk.

A left-open record whose call is still up is hung up only when its channel carries this
instance's name (its own crashed run) or no name / the bare "1" (one instance, or calls
from before names); another instance's live call is left alone, record open.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastagi_spy.net.fastagi import REACHED_VARIABLE
from fastagi_spy.store.audit import AuditLog, EndReason, Via
from fastagi_spy.store.database import Database
from fastagi_spy.supervise.reconcile import OWNER_VARIABLE, Reconciler, instance_name
from tests.unit.test_spy_lifetime import T0, Event, FakeAMI, Site, audit, get, left_open

__all__ = ["audit"]  # the fixture

ME, OTHER = "pbx-a/tcp:4573", "pbx-b/tcp:4573"
MINE, THEIRS, OLD = "Local/2001@p-1;2", "Local/2002@p-2;2", "Local/2009@p-3;2"


@dataclass
class Response:
    headers: dict[str, str]

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)


@dataclass
class Result:
    response: Response
    events: tuple[Event, ...] = ()


@dataclass
class OwnersAMI(FakeAMI):
    """FakeAMI that also answers Getvar with each channel's owner mark."""

    owners: dict[str, str] = field(default_factory=dict)

    async def call(self, action: str, headers: Iterable[tuple[str, str]] = (),
                   timeout: float | None = None) -> Any:
        if action != "Getvar":
            return await super().call(action, headers, timeout)
        asked = dict(headers)
        self.actions.append((action, asked))
        assert asked["Variable"] == OWNER_VARIABLE
        if asked["Channel"] not in self.owners:
            raise RuntimeError("Channel not found")
        return Result(Response({"Response": "Success", "Value": self.owners[asked["Channel"]]}))


def test_only_this_instances_own_or_unnamed_live_calls_are_hung_up(audit: AuditLog) -> None:
    mine = left_open(audit, "1.1", MINE)
    theirs = left_open(audit, "1.2", THEIRS)
    old = left_open(audit, "1.3", OLD)
    ami = OwnersAMI(alive=[(MINE, "1.1"), (THEIRS, "1.2"), (OLD, "1.3")],
                    owners={MINE: ME, THEIRS: OTHER, OLD: "1"})
    site = Site(audit, {"pbx1": ami})
    reconciler = Reconciler(audit, site.running, ("pbx1",), site.clock, site.clock.seconds,
                            instance=ME)
    assert reconciler.begin() == 3
    reconciler.server_up("pbx1", ami)
    site.clock.advance(30)  # no ChanSpyStop comes: the hang-ups' waits run out
    assert sorted(ami.hangups()) == sorted([MINE, OLD])
    assert get(audit, mine).end_reason == EndReason.INTERRUPTED
    assert get(audit, old).end_reason == EndReason.INTERRUPTED
    row = get(audit, theirs)
    assert row.ended_at is None  # the other instance's live attempt: its own to close
    assert reconciler.pending == 0


def test_an_unreadable_owner_is_never_hung_up(audit: AuditLog) -> None:
    """Getvar fails (the channel just went, or AMI trouble): not cut on a guess."""
    record = left_open(audit, "1.1", MINE)
    ami = OwnersAMI(alive=[(MINE, "1.1")], owners={})
    site = Site(audit, {"pbx1": ami})
    reconciler = Reconciler(audit, site.running, ("pbx1",), site.clock, site.clock.seconds,
                            instance=ME)
    reconciler.begin()
    reconciler.server_up("pbx1", ami)
    assert ami.hangups() == []
    assert get(audit, record).ended_at is None


def test_without_a_name_every_live_left_open_call_is_hung_up_as_before(
        audit: AuditLog) -> None:
    left_open(audit, "1.2", THEIRS)
    ami = OwnersAMI(alive=[(THEIRS, "1.2")], owners={THEIRS: OTHER})
    site = Site(audit, {"pbx1": ami})
    reconciler = Reconciler(audit, site.running, ("pbx1",), site.clock, site.clock.seconds)
    reconciler.begin()
    reconciler.server_up("pbx1", ami)
    assert ami.hangups() == [THEIRS]
    assert not [a for a, _ in ami.actions if a == "Getvar"]


def test_the_name_is_stable_per_endpoint_and_differs_between_instances() -> None:
    assert instance_name("tcp:4573", host="pbx-a") == instance_name("tcp:4573", host="pbx-a")
    assert instance_name("tcp:4573", host="pbx-a") != instance_name("tcp:4574", host="pbx-a")
    assert instance_name("tcp:4573", host="pbx-a") != instance_name("tcp:4573", host="pbx-b")
    assert instance_name("tcp:4573\n", host="a\x00") == "a/tcp:4573"
    assert OWNER_VARIABLE == REACHED_VARIABLE  # one mark: fail-over and reconciliation



def test_a_restart_takes_only_its_own_and_unnamed_left_open_rows(tmp_path: Path) -> None:
    """Two instances on one database: B's start-up finds A's open rows not its own (A's
    attempts in progress, whose calls may be gone already: a launch ringing a phone, a call
    just hung up that A is about to close); rows from before names are everyone's."""
    db = Database(tmp_path / "shared.sqlite3")
    try:
        before_names = AuditLog(db).open(T0, Via.PHONE.value, channel=OLD, uniqueid="1.3")
        on_a = AuditLog(db, instance=OTHER).open(T0, Via.API.value)  # A's launch, no channel
        mine = AuditLog(db, instance=ME).open(T0, Via.PHONE.value, channel=MINE, uniqueid="1.1")
        b = AuditLog(db, instance=ME)
        assert [r.id for r in b.open_records()] == [before_names, mine]
        ami = OwnersAMI()  # none of their calls is up any more
        site = Site(b, {"pbx1": ami})
        reconciler = Reconciler(b, site.running, ("pbx1",), site.clock, site.clock.seconds,
                                instance=ME)
        assert reconciler.begin() == 2
        reconciler.server_up("pbx1", ami)
        assert get(b, on_a).ended_at is None  # A closes its own
        assert get(b, mine).end_reason == EndReason.INTERRUPTED
        assert get(b, before_names).end_reason == EndReason.INTERRUPTED
        assert [r.id for r in AuditLog(db, instance=OTHER).open_records()] == [on_a]
    finally:
        db.close()
