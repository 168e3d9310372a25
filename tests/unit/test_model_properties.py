"""Properties of the model under any interleaving of whole calls, and under broken events."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastagi_spy.model import Change, LiveMap, ServerState
from fastagi_spy.model.sessions import _explicit as explicit_session
from tests.unit.model_events import (
    Ev,
    Sim,
    blind_transfer,
    conference,
    config,
    directory,
    incoming_trunk,
    incoming_via_local,
    outgoing,
)

T0 = 1_732_156_800.0
AGENTS = ("1001", "1002", "10", "100", "2001")

Story = Callable[[Sim, str, str], list[Ev]]
STORIES: dict[str, Story] = {
    "local answered": lambda sim, a, b: incoming_via_local(sim, a),
    "local abandoned": lambda sim, a, b: incoming_via_local(sim, a, answer=False),
    "trunk answered": lambda sim, a, b: incoming_trunk(sim, a),
    "trunk abandoned": lambda sim, a, b: incoming_trunk(sim, a, answer=False),
    "outgoing": lambda sim, a, b: outgoing(sim, a),
    "transfer": blind_transfer,
    "conference": lambda sim, a, b: conference(sim, a, "9600001"),
}


@st.composite
def interleaved_calls(draw: st.DrawFn) -> list[Ev]:
    """Several whole calls, interleaved at random, each call's own order kept."""
    count = draw(st.integers(min_value=1, max_value=5))
    streams: list[list[Ev]] = []
    for index in range(count):
        story = STORIES[draw(st.sampled_from(sorted(STORIES)))]
        first, second = draw(st.sampled_from(AGENTS)), draw(st.sampled_from(AGENTS))
        # Distinct offsets: Asterisk never reuses a uniqueid or a live channel name.
        streams.append(story(Sim(start=index * 0x1000), first, second))
    order = draw(st.permutations([i for i, stream in enumerate(streams) for _ in stream]))
    cursors = [0] * count
    events: list[Ev] = []
    for index in order:
        events.append(streams[index][cursors[index]])
        cursors[index] += 1
    return events


def _mirror_apply(mirror: dict[tuple[str, str], object], changes: list[Change]) -> None:
    for change in changes:
        if change.kind == "server":
            continue
        if change.value is None:
            mirror.pop((change.kind, change.key), None)
        else:
            mirror[(change.kind, change.key)] = change.value


def _snapshot_items(state: ServerState, now: float) -> dict[tuple[str, str], object]:
    snap: Any = state.snapshot(now)
    items: dict[tuple[str, str], object] = {}
    for kind, key, plural in (
        ("agent", "number", "agents"),
        ("call", "id", "calls"),
        ("session", "session_id", "sessions"),
    ):
        for item in snap[plural]:
            items[(kind, item[key])] = item
    return items


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(interleaved_calls())
def test_any_interleaving_leaves_nothing_dangling(events: list[Ev]) -> None:
    """No channel outlives its hangup, no call lacks channels, no bridge lists a missing channel."""
    state = ServerState("pbx1", directory(), config())
    for step, event in enumerate(events):
        state.apply(event, T0 + step)
        assert state.check_invariants() == []
    counts = state.counts()
    assert (counts["channels"], counts["calls"], counts["bridges"]) == (0, 0, 0)
    assert state.malformed == 0
    for number in AGENTS:
        # 2001 has a phone but is nobody's agent: it stays unknown.
        expected = "not_found" if number == "2001" else "not_on_call"
        assert state.spy_target(number).reason == expected


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(interleaved_calls(), st.data())
def test_changes_replayed_equal_the_snapshot(events: list[Ev], data: st.DataObject) -> None:
    """Folding every reported change over the first snapshot gives the current snapshot."""
    state = ServerState("pbx1", directory(), config())
    mirror = _snapshot_items(state, T0)
    stop = data.draw(st.integers(min_value=0, max_value=len(events)))
    for event in events[:stop]:
        # One clock reading for all, so elapsed times agree with the snapshot's.
        _mirror_apply(mirror, state.apply(event, T0))
    assert mirror == _snapshot_items(state, T0)


_DROPPABLE = ("Uniqueid", "Channel", "ChannelState", "Linkedid", "BridgeUniqueid", "DestUniqueid")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(interleaved_calls(), st.data())
def test_broken_fields_never_raise(events: list[Ev], data: st.DataObject) -> None:
    """Missing or garbled fields are ignored and counted, never raised, and keep tables sound."""
    state = ServerState("pbx1", directory(), config())
    broken = 0
    for step, original in enumerate(events):
        damage = data.draw(st.sampled_from(("none", "none", "none", "drop", "garble")))
        event = original
        if damage == "drop":
            event = original.without(data.draw(st.sampled_from(_DROPPABLE)))
            broken += 1
        elif damage == "garble":
            garbage = data.draw(st.sampled_from(("", "six", "\u0666")))
            event = original.replaced("ChannelState", garbage)
        state.apply(event, T0 + step)
        assert state.check_invariants() == []
    assert state.malformed <= len(events)


def _targets() -> list[str]:
    """Every target a supervisor could type here: agents, rooms, allocated ids, extensions."""
    low = config().session_range[0]
    return [*AGENTS, "9600001", "9600002", *(str(low + n) for n in range(8))]


@st.composite
def reads(draw: st.DrawFn) -> list[list[Ev]]:
    """Interleaved calls (rooms changing hands among them), cut into AMI reads at random."""
    events = draw(interleaved_calls())
    cuts = sorted(draw(st.sets(st.integers(min_value=1, max_value=max(1, len(events) - 1)))))
    bounds = [0, *cuts, len(events)]
    return [events[a:b] for a, b in itertools.pairwise(bounds) if a < b]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reads())
def test_resolve_after_ingest_equals_resolve_after_apply_many(batches: list[list[Ev]]) -> None:
    """The server's quiet per-read path answers every target as the reporting path does,
    at every step, whether or not anybody took a snapshot or subscribed."""
    quiet = LiveMap(directory(), {"pbx1": config()})
    loud = LiveMap(directory(), {"pbx1": config()})
    for step, batch in enumerate(batches):
        quiet.ingest("pbx1", batch, T0 + step)
        loud.apply_many("pbx1", batch, T0 + step)
        for target in _targets():
            assert quiet.resolve(target) == loud.resolve(target), (step, target)
        assert _unsettled(quiet.server("pbx1")) == [], step


def _unsettled(state: ServerState) -> list[str]:
    """Agents whose session id is not what their logins, rooms and variable say now: a
    table move that forgot to mark the agent for Tables.settle_sessions."""
    tables = state._tables
    wrong = []
    for number, agent in tables.agents.items():
        if not agent.logins:
            expected = None
        else:
            explicit, _ = explicit_session(agent, tables.channels)
            expected = explicit if explicit is not None else (
                str(agent.allocated) if agent.allocated is not None else None)
        if agent.session_id != expected:
            wrong.append(f"{number}: {agent.session_id} != {expected}")
    return wrong
