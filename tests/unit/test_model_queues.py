"""The queue strip's model: callers waiting and since when, members per place, the day's
answered and abandoned counts; from app_queue.c's events and QueueStatus after a resync."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pytest

from fastagi_spy.model import Change, LiveMap, ServerState
from tests.unit.model_events import Chan, Ev, Sim, config, directory

T0 = 1_732_147_200.0  # a UTC midnight
DAY = 86400.0


def feed(state: ServerState, events: Iterable[Ev], now: float = T0) -> list[Change]:
    changes: list[Change] = []
    for event in events:
        changes.extend(state.apply(event, now))
    assert state.check_invariants() == []
    return changes


def queues(state: ServerState, now: float = T0) -> dict[str, dict[str, Any]]:
    snap: Any = state.snapshot(now)
    return {item["queue"]: item for item in snap["queues"]}


def caller(sim: Sim) -> Chan:
    return sim.chan("PJSIP/trunk", state=6, cid=("5553000", "Widget Co"), context="from-trunk")


def qevent(sim: Sim, name: str, chan: Chan, queue: str = "sales", **extra: str) -> Ev:
    """A QueueCaller*/AgentConnect event as app_queue.c sends it: the caller's snapshot,
    then the queue's fields."""
    fields = [("Queue", queue), *extra.items()]
    return sim.event(name, chan, fields, privilege="agent,all")


def join(sim: Sim, chan: Chan, queue: str = "sales") -> Ev:
    return qevent(sim, "QueueCallerJoin", chan, queue, Position="1", Count="1")


def leave(sim: Sim, chan: Chan, queue: str = "sales") -> Ev:
    return qevent(sim, "QueueCallerLeave", chan, queue, Position="1", Count="0")


def abandon(sim: Sim, chan: Chan, queue: str = "sales") -> Ev:
    return qevent(sim, "QueueCallerAbandon", chan, queue, Position="1",
                  OriginalPosition="1", HoldTime="12")


def entry(queue: str, chan: Chan, wait: str) -> Ev:
    """QueueStatus's QueueEntry item (app_queue.c manager_queues_status)."""
    return Ev([("Event", "QueueEntry"), ("ActionID", "resync-1"), ("Queue", queue),
               ("Position", "1"), ("Channel", chan.name), ("Uniqueid", chan.uniqueid),
               ("CallerIDNum", chan.cid_num), ("CallerIDName", chan.cid_name),
               ("ConnectedLineNum", "<unknown>"), ("ConnectedLineName", "<unknown>"),
               ("Wait", wait), ("Priority", "0")])


def params(queue: str) -> Ev:
    return Ev([("Event", "QueueParams"), ("ActionID", "resync-1"), ("Queue", queue),
               ("Max", "0"), ("Strategy", "ringall"), ("Calls", "0"), ("Holdtime", "0"),
               ("TalkTime", "0"), ("Completed", "40"), ("Abandoned", "7")])


@pytest.fixture
def sim() -> Sim:
    return Sim()


@pytest.fixture
def state() -> ServerState:
    return ServerState("pbx1", directory(), config())


def test_waiting_callers_and_the_longest_wait(state: ServerState, sim: Sim) -> None:
    first, second = caller(sim), caller(sim)
    feed(state, [sim.newchannel(first), join(sim, first)], T0 + 100)
    feed(state, [sim.newchannel(second), join(sim, second)], T0 + 130)
    sales = queues(state, T0 + 160)["sales"]
    assert (sales["waiting"], sales["longest_since"], sales["longest_wait_s"]) == (2, T0 + 100, 60)
    # Measured again later: the same caller, a longer wait (the page ticks it on).
    assert queues(state, T0 + 175)["sales"]["longest_wait_s"] == 75
    feed(state, [leave(sim, first)], T0 + 170)
    sales = queues(state, T0 + 170)["sales"]
    assert (sales["waiting"], sales["longest_since"]) == (1, T0 + 130)


def test_an_abandon_counts_once_whichever_event_comes_first(
    state: ServerState, sim: Sim
) -> None:
    one, two = caller(sim), caller(sim)
    feed(state, [sim.newchannel(one), join(sim, one), abandon(sim, one), leave(sim, one)])
    feed(state, [sim.newchannel(two), join(sim, two), leave(sim, two), abandon(sim, two)])
    sales = queues(state)["sales"]
    assert (sales["waiting"], sales["abandoned"], sales["answered"]) == (0, 2, 0)


def test_an_answered_caller_stops_waiting_and_counts(state: ServerState, sim: Sim) -> None:
    chan = caller(sim)
    feed(state, [sim.newchannel(chan), join(sim, chan)])
    feed(state, [qevent(sim, "AgentConnect", chan, MemberName="1001",
                        Interface="PJSIP/1001", HoldTime="5", RingTime="2")])
    sales = queues(state)["sales"]
    assert (sales["waiting"], sales["answered"], sales["abandoned"]) == (0, 1, 0)


def test_a_hangup_without_a_leave_ends_the_wait(state: ServerState, sim: Sim) -> None:
    chan = caller(sim)
    feed(state, [sim.newchannel(chan), join(sim, chan), sim.hangup(chan)])
    assert queues(state)["sales"]["waiting"] == 0
    # A straggling join for the hung-up channel does not make it wait again.
    feed(state, [join(sim, chan)])
    assert queues(state)["sales"]["waiting"] == 0


def bridged(sim: Sim, agent_device: str) -> tuple[list[Ev], list[Ev]]:
    """An answered call to ``agent_device``: the events, and the hangups ending it."""
    customer = caller(sim)
    leg = sim.chan(agent_device, linked=customer)
    bridge = sim.new_bridge()
    up = [sim.newchannel(customer), sim.newchannel(leg), sim.newstate(leg, 6),
          sim.bridge_create(bridge), sim.bridge_enter(bridge, customer),
          sim.bridge_enter(bridge, leg)]
    return up, [sim.hangup(leg), sim.hangup(customer)]


def places(state: ServerState, queue: str) -> tuple[int, int, int]:
    item = queues(state)[queue]
    return item["available"], item["on_calls"], item["paused"]


def test_members_are_counted_available_on_a_call_or_paused_per_queue(
    state: ServerState, sim: Sim
) -> None:
    feed(state, [
        sim.queue_member("QueueMemberAdded", "sales", "1001", "PJSIP/1001"),
        sim.queue_member("QueueMemberAdded", "support", "1001", "PJSIP/1001"),
        sim.queue_member("QueueMemberAdded", "sales", "1002", "PJSIP/1002"),
    ])
    assert places(state, "sales") == (2, 0, 0)
    up, down = bridged(sim, "PJSIP/1001")
    feed(state, up)
    assert places(state, "sales") == (1, 1, 0)
    assert places(state, "support") == (0, 1, 0)
    # Paused in sales only: still on a call as far as support is concerned.
    feed(state, [sim.queue_member("QueueMemberPause", "sales", "1001", "PJSIP/1001",
                                  paused=True, in_call=True)])
    assert places(state, "sales") == (1, 0, 1)
    assert places(state, "support") == (0, 1, 0)
    feed(state, down)
    assert places(state, "support") == (1, 0, 0)
    feed(state, [sim.queue_member("QueueMemberRemoved", "sales", "1001", "PJSIP/1001")])
    assert places(state, "sales") == (1, 0, 0)


def test_the_day_counts_start_again_at_the_injected_midnight(sim: Sim) -> None:
    # A site four hours east of UTC: its day starts at 20:00 UTC.
    def local_midnight(now: float) -> float:
        return now - (now + 4 * 3600) % DAY

    state = ServerState("pbx1", directory(), config(day_start=local_midnight))
    late = T0 + 19.5 * 3600  # 23:30 there
    one = caller(sim)
    feed(state, [sim.newchannel(one), join(sim, one), abandon(sim, one)], late)
    sales = queues(state, late)["sales"]
    assert (sales["abandoned"], sales["day_start"], sales["day_end"]) == (
        1, T0 - 4 * 3600, T0 + 20 * 3600)
    # Past that midnight with nothing new: the count shown is the new day's, 0.
    assert queues(state, T0 + 20.5 * 3600)["sales"]["abandoned"] == 0
    two = caller(sim)
    feed(state, [sim.newchannel(two), join(sim, two), abandon(sim, two)], T0 + 21 * 3600)
    assert queues(state, T0 + 21 * 3600)["sales"]["abandoned"] == 1


HOSTILE_QUEUES = [
    "sales\r\nEvent: Hangup",
    "sales\x00",
    "<script>\x1b[2J",
    "x" * 200,
    "",
]


@pytest.mark.parametrize("name", HOSTILE_QUEUES)
def test_hostile_queue_names_are_counted_as_malformed_never_shown(
    state: ServerState, sim: Sim, name: str
) -> None:
    chan = caller(sim)
    before = state.malformed
    feed(state, [sim.newchannel(chan), join(sim, chan, name), abandon(sim, chan, name),
                 sim.queue_member("QueueMemberAdded", name, "1001", "PJSIP/1001")])
    assert state.malformed == before + 3
    assert queues(state) == {}
    # The hostile membership was refused whole: the agent is not a member of anything.
    snap: Any = state.snapshot(T0)
    alice = next(a for a in snap["agents"] if a["number"] == "1001")
    assert alice["paused"] is False


def test_a_join_without_uniqueid_is_malformed(state: ServerState, sim: Sim) -> None:
    chan = caller(sim)
    feed(state, [join(sim, chan).without("Uniqueid")])
    assert state.malformed == 1
    assert "sales" not in queues(state) or queues(state)["sales"]["waiting"] == 0


@pytest.mark.parametrize("wait", ["-5", "1e3", "٣", "12 ", "9999999999", ""])
def test_a_resync_entry_with_a_bad_wait_is_skipped(state: ServerState, sim: Sim, wait: str) -> None:
    chan = caller(sim)
    state.resync([sim.core_show_channel(chan)], [params("sales"), entry("sales", chan, wait)],
                 T0 + 60)
    assert state.malformed == 1
    assert queues(state, T0 + 60)["sales"]["waiting"] == 0


def test_resync_rebuilds_callers_and_keeps_the_day_counts(state: ServerState, sim: Sim) -> None:
    gone, waiting = caller(sim), caller(sim)
    feed(state, [sim.newchannel(gone), join(sim, gone), abandon(sim, gone),
                 join(sim, gone, "retired")], T0 + 10)
    state.mark_stale(T0 + 20)
    # While the link was down a caller joined 40 s before the resync; "retired" is gone.
    changes = state.resync(
        [sim.core_show_channel(waiting)],
        [params("sales"), entry("sales", waiting, "40"), params("empty")],
        T0 + 100,
    )
    found = queues(state, T0 + 100)
    assert sorted(found) == ["empty", "sales"]
    sales = found["sales"]
    assert (sales["waiting"], sales["longest_since"], sales["abandoned"]) == (1, T0 + 60, 1)
    assert found["empty"]["waiting"] == 0
    # The page hears the retired queue go and the others change.
    kinds = {(c.kind, c.key, c.value is None) for c in changes if c.kind == "queue"}
    assert kinds == {("queue", "retired", True), ("queue", "sales", False),
                     ("queue", "empty", False)}


def test_subscribers_hear_a_queue_once_per_change(sim: Sim) -> None:
    live = LiveMap(directory(), {"pbx1": config()})
    heard: list[Change] = []

    def listen(changes: Sequence[Change]) -> None:
        heard.extend(c for c in changes if c.kind == "queue")

    live.subscribe(listen)
    chan = caller(sim)
    live.apply_many("pbx1", [sim.newchannel(chan), join(sim, chan)], T0 + 5)
    assert [(c.key, c.value and c.value["waiting"]) for c in heard] == [("sales", 1)]
    payload = heard[0].value
    assert payload is not None and payload["as_of"] == T0 + 5
    heard.clear()
    # A repeated join and a member status that changes nothing: no queue change.
    live.apply_many("pbx1", [join(sim, chan)], T0 + 6)
    assert heard == []
    snap: Any = live.snapshot(T0 + 9)
    assert snap["servers"]["pbx1"]["queues"][0]["longest_wait_s"] == 4


def test_the_service_counts_from_local_midnight_across_a_dst_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """config.local_day_start is the local midnight; the strip's day_end is the next one,
    even on New York's 23-hour day (8 March 2026)."""
    import time

    from fastagi_spy.config import local_day_start
    from fastagi_spy.model.queues import QueueBook

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        noon = 1_772_985_600.0  # 2026-03-08 12:00 EDT
        book = QueueBook(local_day_start)
        book.known("sales")
        view = book.view("sales", noon)
        assert view.day_start == 1_772_946_000.0  # 2026-03-08 00:00 EST
        assert view.day_end == 1_773_028_800.0  # 2026-03-09 00:00 EDT: 23 hours later
    finally:
        monkeypatch.undo()
        time.tzset()
