"""Spying we did not start: ChanSpyStart/Stop events no authorised attempt of ours explains
become `unexplained` audit rows (and errors in the log); ours never do."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from twisted.internet import task
from twisted.logger import LogLevel, globalLogPublisher

from fastagi_spy.model import LiveMap
from fastagi_spy.store import audit_query
from fastagi_spy.store.audit import AuditLog, AuditRecord, AuthResult, EndReason, Via
from fastagi_spy.store.database import Database
from fastagi_spy.supervise.reconcile import Reconciler
from fastagi_spy.supervise.running import RunningSpies
from fastagi_spy.supervise.unexplained import UnexplainedSpies
from fastagi_spy.wire.ami import AMIMessage
from tests.unit.model_events import Sim, outgoing
from tests.unit.test_model_scenarios import SERVER, config, directory

T0 = 1_733_130_000.0
AGENT_LEG = "Local/1001@fsp-agents-00000010;1"


def chanspy(event: str, spyer: str, spyee: str = AGENT_LEG, at: float = T0, *,
            uniqueid: str = "1733130000.50", cid: str = "2001", name: str = "Rogue",
            spyee_uniqueid: str = "1733130000.10") -> AMIMessage:
    return AMIMessage((
        ("Event", event), ("Timestamp", f"{at:.6f}"),
        ("SpyerChannel", spyer), ("SpyerUniqueid", uniqueid), ("SpyerCallerIDNum", cid),
        ("SpyerCallerIDName", name), ("SpyeeChannel", spyee), ("SpyeeUniqueid", spyee_uniqueid),
    ))


@pytest.fixture
def db(any_db: Database) -> Database:
    """On SQLite, then on the real PostgreSQL (tests/conftest.py)."""
    return any_db


@pytest.fixture
def errors() -> Iterator[list[dict[str, object]]]:
    seen: list[dict[str, object]] = []

    def observe(event: dict[str, object]) -> None:
        if event.get("log_level") == LogLevel.error:
            seen.append(event)

    globalLogPublisher.addObserver(observe)
    yield seen
    globalLogPublisher.removeObserver(observe)


def detector(db: Database, watched: frozenset[str] = frozenset()) -> UnexplainedSpies:
    def explains(server: str, spyer: str, spyee: str, at: float, notice: bool) -> bool:
        return audit_query.explains_spy(db, server, spyer, spyee, at, notice=notice)

    agents = {(SERVER, "1733130000.10"): "1001"}
    return UnexplainedSpies(AuditLog(db), explains, lambda s, u: agents.get((s, u)),
                            lambda: T0 + 999, watched=watched.__contains__)


def rows(db: Database) -> list[AuditRecord]:
    return AuditLog(db).list()


def ours(db: Database, uniqueid: str, spyee: str = AGENT_LEG, *, closed: bool = False,
         auth: AuthResult = AuthResult.OK, server: str = SERVER) -> int:
    """The row a flow of ours writes before EXEC ChanSpy."""
    log = AuditLog(db)
    rid = log.open(T0 - 20, Via.PHONE.value, channel="Local/2001@fsp-phones-0001;2",
                   uniqueid=uniqueid, supervisor="2001", auth_result=auth)
    log.update(rid, agent="1001", resolved_channel=spyee, server=server, modes="listen")
    if closed:
        log.close(rid, T0 + 1, EndReason.DENIED)
    return rid


def test_a_chanspy_nobody_asked_for_is_an_unexplained_row(db: Database,
                                                         errors: list[dict[str, object]]) -> None:
    spies = detector(db)
    spyer = "PJSIP/2001-00000003"
    spies.feed(SERVER, chanspy("ChanSpyStart", spyer, at=T0))
    (row,) = rows(db)
    assert (row.via, row.server, row.channel, row.uniqueid, row.device) == (
        "unexplained", SERVER, spyer, "1733130000.50", "PJSIP/2001")
    assert (row.resolved_channel, row.agent, row.spy_started_at, row.started_at) == (
        AGENT_LEG, "1001", T0, T0)
    assert row.ended_at is None and row.auth_result is None and row.supervisor is None
    assert row.detail == "ChanSpy not started by us; spyer caller id 2001 Rogue"
    assert len(errors) == 1 and "Unexplained ChanSpy" in str(errors[0]["log_format"])
    spies.feed(SERVER, chanspy("ChanSpyStop", spyer, at=T0 + 42.5))
    (row,) = rows(db)
    assert (row.spy_stopped_at, row.ended_at, row.end_reason) == (T0 + 42.5, T0 + 42.5,
                                                                  "completed")
    assert [r["id"] for r in audit_query.rows(db, audit_query.AuditQuery(unexplained=True))] == [
        row.id]


def test_a_watched_spyer_is_ours(db: Database, errors: list[dict[str, object]]) -> None:
    spies = detector(db, watched=frozenset({"1733130000.50"}))
    spies.feed(SERVER, chanspy("ChanSpyStart", "Local/2001@fsp-phones-0001;2"))
    spies.feed(SERVER, chanspy("ChanSpyStop", "Local/2001@fsp-phones-0001;2"))
    assert rows(db) == [] and errors == []


@pytest.mark.parametrize("closed", [False, True])
def test_an_authorised_attempt_on_record_explains_a_late_event(db: Database, closed: bool) -> None:
    """The flow stopped watching (AMI's ChanSpyStart came after EXEC's reply, or the row was
    closed already): the record written before EXEC ChanSpy still makes it ours."""
    rid = ours(db, "1733130000.50", closed=closed)
    spies = detector(db)
    spies.feed(SERVER, chanspy("ChanSpyStart", "Local/2001@fsp-phones-0001;2"))
    assert [r.id for r in rows(db)] == [rid]


@pytest.mark.parametrize("why", ["other spyee", "other server", "not authorised", "other spyer"])
def test_an_attempt_explains_only_its_own_spy(db: Database, why: str) -> None:
    ours(db, "1733130000.99" if why == "other spyer" else "1733130000.50",
         spyee="Local/1002@fsp-agents-00000011;1" if why == "other spyee" else AGENT_LEG,
         server="pbx2" if why == "other server" else SERVER,
         auth=AuthResult.BAD_PIN if why == "not authorised" else AuthResult.OK)
    detector(db).feed(SERVER, chanspy("ChanSpyStart", "Local/2001@fsp-phones-0001;2"))
    assert [r.via for r in rows(db)] == ["unexplained", "phone"]


def test_the_join_notice_is_ours_only_while_an_attempt_spies_on_that_channel(
        db: Database) -> None:
    notice = "Local/notice@fastagi-spy-notice-00000007;1"
    spies = detector(db)
    spies.feed(SERVER, chanspy("ChanSpyStart", notice, uniqueid="fsp-notice-ab-1"))
    assert [r.channel for r in rows(db)] == [notice]  # nobody of ours on that call
    ours(db, "1733130000.50")
    spies.feed(SERVER, chanspy("ChanSpyStart", notice, uniqueid="fsp-notice-cd-1"))
    assert len([r for r in rows(db) if r.via == "unexplained"]) == 1


def test_one_row_per_spyee_as_chanspy_moves_on(db: Database) -> None:
    """A prefix ChanSpy cycling through channels: each spyee its own row; a start with no
    stop seen closes the row before it at the new start."""
    spies = detector(db)
    spyer = "PJSIP/9999-00000001"
    spies.feed(SERVER, chanspy("ChanSpyStart", spyer, at=T0))
    spies.feed(SERVER, chanspy("ChanSpyStart", spyer, "PJSIP/1002-0000000a", at=T0 + 5,
                               spyee_uniqueid="1733130000.11"))
    spies.feed(SERVER, chanspy("ChanSpyStop", spyer, "PJSIP/1002-0000000a", at=T0 + 9))
    second, first = rows(db)
    assert (first.resolved_channel, first.spy_stopped_at) == (AGENT_LEG, T0 + 5)
    assert (second.resolved_channel, second.agent, second.ended_at) == (
        "PJSIP/1002-0000000a", None, T0 + 9)


def test_hostile_caller_id_and_timestamps(db: Database) -> None:
    """Caller id is the caller's text: control characters dropped, length bounded; a
    missing or non-finite Timestamp is our clock's time."""
    spies = detector(db)
    event = AMIMessage((("Event", "ChanSpyStart"), ("Timestamp", "nan"),
                        ("SpyerChannel", "PJSIP/x-1"), ("SpyerUniqueid", "u1"),
                        ("SpyerCallerIDNum", "1\x1b[2J" + "9" * 80),
                        ("SpyeeChannel", AGENT_LEG)))
    spies.feed(SERVER, event)
    (row,) = rows(db)
    assert row.started_at == T0 + 999
    assert row.detail is not None and "\x1b" not in row.detail
    assert len(row.detail) < 100


def test_the_live_map_names_the_agent_a_channel_belongs_to() -> None:
    sim = Sim()
    live = LiveMap(directory(), {SERVER: config()})
    events = outgoing(sim, "1001")[:10]  # the agent's phone bridged with the trunk
    live.apply_many(SERVER, events, T0)
    phone, trunk = events[0].get("Uniqueid") or "", events[1].get("Uniqueid") or ""
    assert live.channel_agent(SERVER, phone) == "1001"
    assert live.channel_agent(SERVER, trunk) == "1001"  # the customer's leg of 1001's call
    assert live.channel_agent(SERVER, "nope") is None
    assert live.channel_agent("unknown-server", phone) is None


def test_a_restart_never_hangs_up_a_spy_it_only_audited(db: Database) -> None:
    """A crashed run left an unexplained row open and that ChanSpy still runs: the start-up
    reconciliation closes the row (interrupted) but hangs up only spies of ours."""
    spies = detector(db)
    spyer = "PJSIP/9999-00000001"
    spies.feed(SERVER, chanspy("ChanSpyStart", spyer, at=T0))
    actions: list[str] = []

    class Listed:
        events = (AMIMessage((("Event", "CoreShowChannel"), ("Channel", spyer),
                              ("Uniqueid", "1733130000.50"))),)

    class AMI:
        async def call(self, action: str, headers: object = (), timeout: object = None) -> Listed:
            actions.append(action)
            return Listed()

    clock = task.Clock()
    reconciler = Reconciler(AuditLog(db), RunningSpies(lambda _u: False, clock.seconds),
                            (SERVER,), clock, lambda: T0 + 60)
    assert reconciler.begin() == 1
    reconciler.server_up(SERVER, AMI())
    assert actions == ["CoreShowChannels"]  # no Hangup
    (row,) = rows(db)
    assert (row.via, row.end_reason, row.ended_at) == ("unexplained", "interrupted", T0 + 60)
