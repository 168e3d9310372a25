"""Why an agent is paused: app_queue.c's PausedReason, from QueueMemberPause and from
QueueStatus's QueueMember items after a resync, checked as text anyone could have typed."""

from __future__ import annotations

from typing import Any

import pytest

from fastagi_spy.model import ServerState
from fastagi_spy.web.livestream import agent_row
from tests.unit.model_events import Ev, Sim, config, directory

T0 = 1_732_147_200.0


@pytest.fixture
def sim() -> Sim:
    return Sim()


@pytest.fixture
def state() -> ServerState:
    return ServerState("pbx1", directory(), config())


def pause(sim: Sim, queue: str, reason: str, paused: bool = True) -> Ev:
    return sim.queue_member("QueueMemberPause", queue, "1001", "PJSIP/1001",
                            paused=paused).replaced("PausedReason", reason)


def alice(state: ServerState) -> dict[str, Any]:
    snap: Any = state.snapshot(T0)
    agent: dict[str, Any] = next(a for a in snap["agents"] if a["number"] == "1001")
    return agent


def changed_agents(changes: list[Any]) -> list[dict[str, Any]]:
    return [c.value for c in changes if c.kind == "agent" and c.value is not None]


def test_a_pause_with_a_reason_shows_it_and_an_unpause_clears_it(
    state: ServerState, sim: Sim
) -> None:
    state.apply(sim.queue_member("QueueMemberAdded", "sales", "1001", "PJSIP/1001"), T0)
    changes = state.apply(pause(sim, "sales", "Lunch"), T0)
    assert [(a["status"], a["pause_reason"]) for a in changed_agents(changes)] == [
        ("Paused", "Lunch")]
    assert (alice(state)["status"], alice(state)["pause_reason"]) == ("Paused", "Lunch")
    # Unpaused: app_queue.c still sends the old reason; it no longer means anything.
    changes = state.apply(pause(sim, "sales", "Lunch", paused=False), T0)
    assert [(a["status"], a["pause_reason"]) for a in changed_agents(changes)] == [
        ("Idle", None)]
    assert state.malformed == 0
    assert state.check_invariants() == []


def test_a_new_reason_while_still_paused_is_a_change(state: ServerState, sim: Sim) -> None:
    state.apply(pause(sim, "sales", "Lunch"), T0)
    changes = state.apply(pause(sim, "sales", "Training"), T0)
    assert [a["pause_reason"] for a in changed_agents(changes)] == ["Training"]


def test_a_pause_without_a_reason_is_plain_paused(state: ServerState, sim: Sim) -> None:
    state.apply(pause(sim, "sales", ""), T0)
    assert (alice(state)["status"], alice(state)["pause_reason"]) == ("Paused", None)


def test_paused_in_two_queues_shows_one_reason_whichever_order(
    state: ServerState, sim: Sim
) -> None:
    state.apply(pause(sim, "support", "Coaching"), T0)
    state.apply(pause(sim, "sales", "Lunch"), T0)
    assert alice(state)["pause_reason"] == "Lunch"
    state.apply(pause(sim, "sales", "", paused=False), T0)
    assert alice(state)["pause_reason"] == "Coaching"


HOSTILE_REASONS = [
    "Lunch\r\nEvent: Hangup",
    "Lunch\x00",
    "\x1b[2J",
    "x" * 80,
]


@pytest.mark.parametrize("reason", HOSTILE_REASONS)
def test_a_hostile_reason_is_dropped_and_counted_but_the_pause_holds(
    state: ServerState, sim: Sim, reason: str
) -> None:
    state.apply(pause(sim, "sales", reason), T0)
    assert (alice(state)["status"], alice(state)["pause_reason"]) == ("Paused", None)
    assert state.malformed == 1


def test_the_longest_reason_asterisk_keeps_is_shown_whole(state: ServerState, sim: Sim) -> None:
    # app_queue.c's reason_paused is char[80]: 79 characters and the terminator.
    state.apply(pause(sim, "sales", "y" * 79), T0)
    assert alice(state)["pause_reason"] == "y" * 79
    assert state.malformed == 0


def test_a_resync_learns_the_reason_from_queue_status(state: ServerState, sim: Sim) -> None:
    item = sim.queue_status_member("sales", "1001", "PJSIP/1001", paused=True)
    state.resync([], [item.replaced("PausedReason", "Break")], T0)
    assert (alice(state)["status"], alice(state)["pause_reason"]) == ("Paused", "Break")


def test_the_page_row_carries_the_reason(state: ServerState, sim: Sim) -> None:
    state.apply(pause(sim, "sales", "Lunch"), T0)
    row = agent_row("pbx1", alice(state), T0)
    assert (row["status"], row["pause_reason"]) == ("Paused", "Lunch")
