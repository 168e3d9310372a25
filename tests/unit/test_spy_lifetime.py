"""Shutdown hang-ups and start-up reconciliation, driven by a scripted AMI and task.Clock.

The real-Asterisk tests (tests/integration/test_spy_lifetime.py) run the whole thing with
SIGTERM and SIGKILL; these pin the orderings Asterisk does not let us choose there: the
flow closing before ChanSpyStop, no ChanSpyStop at all, a refused Hangup, a spy starting
while we stop, and servers whose AMI comes up one after the other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer, task

from fastagi_spy.store.audit import AuditLog, AuditRecord, EndReason, Via
from fastagi_spy.store.database import Database
from fastagi_spy.supervise.hangup import hang_up_spy
from fastagi_spy.supervise.reconcile import Reconciler
from fastagi_spy.supervise.running import RunningSpies
from fastagi_spy.supervise.shutdown import SHUTDOWN_WAIT, SpyShutdown
from fastagi_spy.supervise.spywatch import SpyWatch, SpyWatches

T0 = 1_700_000_000.0
SPYER = "Local/2001@fsp-phones-00000001;2"
UID = "1700000000.11"


class Event:
    def __init__(self, name: str, **headers: str) -> None:
        self.event = name
        self._headers = headers

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._headers.get(name, default)


def spy_start(uid: str = UID, channel: str = SPYER, at: float = T0 + 1) -> Event:
    return Event("ChanSpyStart", SpyerUniqueid=uid, SpyerChannel=channel,
                 Timestamp=f"{at:.6f}")


def spy_stop(uid: str = UID, channel: str = SPYER, at: float = T0 + 5) -> Event:
    return Event("ChanSpyStop", SpyerUniqueid=uid, SpyerChannel=channel, Timestamp=f"{at:.6f}")


@dataclass
class Listed:
    events: tuple[Event, ...]


@dataclass
class FakeAMI:
    """One server's AMI: records actions; ``on_hangup`` plays what Asterisk then does."""

    alive: list[tuple[str, str]] = field(default_factory=list)  # (channel, uniqueid)
    on_hangup: Callable[[str], None] | None = None
    refuse: Exception | None = None
    actions: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    async def call(self, action: str, headers: Iterable[tuple[str, str]] = (),
                   timeout: float | None = None) -> Any:
        self.actions.append((action, dict(headers)))
        if self.refuse is not None:
            raise self.refuse
        if action == "Hangup" and self.on_hangup is not None:
            self.on_hangup(dict(headers)["Channel"])
        return Listed(tuple(Event("CoreShowChannel", Channel=c, Uniqueid=u)
                            for c, u in self.alive))

    def hangups(self) -> list[str]:
        return [h["Channel"] for a, h in self.actions if a == "Hangup"]


@pytest.fixture
def audit(tmp_path: Path) -> Iterator[AuditLog]:
    db = Database(tmp_path / "audit.sqlite3")
    yield AuditLog(db)
    db.close()


class Site:
    """The service's parts that matter here: watches, running spies, one AMI per server."""

    def __init__(self, audit: AuditLog, servers: dict[str, FakeAMI]) -> None:
        self.clock = task.Clock()
        self.clock.advance(T0)
        self.audit = audit
        self.amis = servers
        self.watches = SpyWatches(self.clock.seconds)
        self.running = RunningSpies(self.watches.watched, self.clock.seconds)
        self.shutdown = SpyShutdown(self.running, audit, self.amis.get, self.clock,
                                    self.clock.seconds)

    def feed(self, server: str, event: Event) -> None:
        self.running.feed(server, event)  # in the service's order: running spies first
        self.watches.feed(event)

    def spying(self, server: str = "pbx1", uid: str = UID, channel: str = SPYER) -> int:
        """A flow of ours opened its record, watches the spyer, and ChanSpy started."""
        record = self.audit.open(T0, Via.PHONE.value, channel=channel, uniqueid=uid)
        self.watches.watch(SpyWatch(uid, on_start=lambda at, _s: None,
                                    on_stop=lambda at: None, on_mode=lambda m, at: None))
        self.feed(server, spy_start(uid, channel))
        return record


def get(audit: AuditLog, record: int) -> AuditRecord:
    found = audit.get(record)
    assert found is not None
    return found


# -- shutdown -------------------------------------------------------------------------------


def test_shutdown_hangs_the_spyer_up_and_closes_server_shutdown_with_chanspystop_time(
        audit: AuditLog) -> None:
    ami = FakeAMI()
    site = Site(audit, {"pbx1": ami})
    record = site.spying()
    ami.on_hangup = lambda channel: site.feed("pbx1", spy_stop(channel=channel, at=T0 + 7.25))
    done = defer.ensureDeferred(site.shutdown.stop_all())
    assert done.called
    assert ami.hangups() == [SPYER]
    row = get(audit, record)
    assert row.end_reason == EndReason.SERVER_SHUTDOWN
    assert row.spy_stopped_at == T0 + 7.25 and row.ended_at == T0 + 7.25
    assert not row.times_uncertain  # Asterisk's own stop time


def test_the_flows_own_close_on_hang_up_cannot_overwrite_server_shutdown(
        audit: AuditLog) -> None:
    """The AGI's HANGUP reaches the flow before AMI's ChanSpyStop: its close keeps our
    reason and detail, and the stop time written while the record was open."""
    ami = FakeAMI()
    site = Site(audit, {"pbx1": ami})
    record = site.spying()

    def asterisk_hangs_up(channel: str) -> None:
        audit.mark_spy_stopped(record, T0 + 6)  # the flow's watch saw ChanSpyStop ...
        audit.close(record, T0 + 6.5, EndReason.SUPERVISOR_HANGUP, "hung up at spy")  # ... closes
        site.feed("pbx1", spy_stop(at=T0 + 6))

    ami.on_hangup = asterisk_hangs_up
    defer.ensureDeferred(site.shutdown.stop_all())
    row = get(audit, record)
    assert row.end_reason == EndReason.SERVER_SHUTDOWN
    assert row.detail == "server stopped: spy hung up"
    assert row.spy_stopped_at == T0 + 6


def test_no_chanspystop_in_time_the_stop_is_when_we_hung_up_and_said_uncertain(
        audit: AuditLog) -> None:
    ami = FakeAMI()
    site = Site(audit, {"pbx1": ami})
    record = site.spying()
    site.clock.advance(30)
    asked = site.clock.seconds()
    done = defer.ensureDeferred(site.shutdown.stop_all())
    assert not done.called  # waiting for ChanSpyStop, bounded
    site.clock.advance(SHUTDOWN_WAIT)
    assert done.called
    row = get(audit, record)
    assert row.end_reason == EndReason.SERVER_SHUTDOWN
    assert row.spy_stopped_at == asked and row.detail is not None and "uncertain" in row.detail
    assert row.times_uncertain


def test_a_refused_hangup_is_logged_and_said_in_the_record(audit: AuditLog) -> None:
    from twisted.logger import globalLogPublisher

    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        ami = FakeAMI(refuse=RuntimeError("Hangup: Permission denied"))
        site = Site(audit, {"pbx1": ami})
        record = site.spying()
        done = defer.ensureDeferred(site.shutdown.stop_all())
    finally:
        globalLogPublisher.removeObserver(seen.append)
    assert done.called
    row = get(audit, record)
    assert row.end_reason == EndReason.SERVER_SHUTDOWN and row.spy_stopped_at is None
    assert row.detail is not None and "NOT hung up" in row.detail and "Permission" in row.detail
    assert any("could not hang up" in str(e.get("log_format")) for e in seen)


def test_a_spy_starting_while_we_stop_is_hung_up_too(audit: AuditLog) -> None:
    ami = FakeAMI()
    site = Site(audit, {"pbx1": ami})
    ami.on_hangup = lambda channel: site.feed("pbx1", spy_stop(uid="late", channel=channel))
    done = defer.ensureDeferred(site.shutdown.stop_all())
    assert done.called and ami.hangups() == []
    record = site.spying(uid="late", channel="PJSIP/2002-00000009")
    assert ami.hangups() == ["PJSIP/2002-00000009"]
    assert get(audit, record).end_reason == EndReason.SERVER_SHUTDOWN


def test_spies_not_ours_or_already_over_are_left_alone(audit: AuditLog) -> None:
    ami = FakeAMI()
    site = Site(audit, {"pbx1": ami})
    site.feed("pbx1", spy_start(uid="cli-started", channel="PJSIP/9999-00000001"))
    site.spying()
    site.feed("pbx1", spy_stop())
    defer.ensureDeferred(site.shutdown.stop_all())
    assert ami.hangups() == []


def test_a_channel_name_asterisk_would_read_as_a_pattern_is_never_sent(audit: AuditLog) -> None:
    ami = FakeAMI()
    site = Site(audit, {"pbx1": ami})
    done = defer.ensureDeferred(hang_up_spy(ami, site.running, site.clock, "pbx1", "/.*/",
                                            UID, 1.0))
    assert done.called and ami.actions == []
    assert done.result.error is not None and not done.result.hung_up


# -- start-up reconciliation ------------------------------------------------------------------


def left_open(audit: AuditLog, uid: str, channel: str, spied: bool = True) -> int:
    """A record a killed run left open (its spy had started)."""
    record = audit.open(T0, Via.PHONE.value, channel=channel, uniqueid=uid)
    if spied:
        audit.mark_spy_started(record, T0 + 1)
    return record


def test_a_spy_still_running_is_hung_up_and_closed_interrupted_with_its_stop_time(
        audit: AuditLog) -> None:
    record = left_open(audit, UID, SPYER)
    ami = FakeAMI(alive=[(SPYER, UID), ("PJSIP/1001-00000002", "1700000000.12")])
    site = Site(audit, {"pbx1": ami})
    reconciler = Reconciler(audit, site.running, ("pbx1",), site.clock, site.clock.seconds)
    assert reconciler.begin() == 1
    ami.on_hangup = lambda channel: site.feed("pbx1", spy_stop(at=T0 + 99))
    mine = audit.open(T0 + 50, Via.PHONE.value, channel="PJSIP/2002-00000003", uniqueid="x")
    reconciler.server_up("pbx1", ami)
    assert ami.hangups() == [SPYER]
    row = get(audit, record)
    assert row.end_reason == EndReason.INTERRUPTED
    assert row.spy_stopped_at == T0 + 99 and row.ended_at == T0 + 99
    assert not row.times_uncertain
    assert get(audit, mine).ended_at is None  # this run's own record is not touched


def test_records_wait_for_every_server_and_then_close_with_an_uncertain_time(
        audit: AuditLog) -> None:
    gone = left_open(audit, "1700000000.20", "PJSIP/2001-00000004")
    never_spied = left_open(audit, "1700000000.21", "PJSIP/2002-00000005", spied=False)
    one, two = FakeAMI(), FakeAMI()
    site = Site(audit, {"pbx1": one, "pbx2": two})
    reconciler = Reconciler(audit, site.running, ("pbx1", "pbx2"), site.clock,
                            site.clock.seconds)
    assert reconciler.begin() == 2
    reconciler.server_up("pbx1", one)
    assert get(audit, gone).ended_at is None  # pbx2's AMI is not up: not closed blind
    site.clock.advance(42)
    reconciler.server_up("pbx2", two)
    row = get(audit, gone)
    assert row.end_reason == EndReason.INTERRUPTED and row.ended_at == T0 + 42
    assert row.spy_stopped_at == T0 + 42 and row.detail is not None and "uncertain" in row.detail
    assert row.times_uncertain
    assert get(audit, never_spied).spy_stopped_at is None
    assert one.hangups() == two.hangups() == []


def test_a_server_that_cannot_list_its_channels_is_tried_again_at_its_next_login(
        audit: AuditLog) -> None:
    record = left_open(audit, UID, SPYER)
    ami = FakeAMI(refuse=RuntimeError("CoreShowChannels: timeout"))
    site = Site(audit, {"pbx1": ami})
    reconciler = Reconciler(audit, site.running, ("pbx1",), site.clock, site.clock.seconds)
    reconciler.begin()
    reconciler.server_up("pbx1", ami)
    assert get(audit, record).ended_at is None
    ami.refuse = None
    reconciler.server_up("pbx1", ami)
    assert get(audit, record).end_reason == EndReason.INTERRUPTED
