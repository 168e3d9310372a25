"""Single rules of the model: field parsing, allocation, malformed events, edge moves."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from fastagi_spy.domain import AgentEntry, Directory
from fastagi_spy.model import Change, LiveMap, ServerState
from fastagi_spy.model.events import Malformed as MalformedField
from fastagi_spy.model.events import (
    is_session_id,
    is_target,
    known,
    parse_state,
    session_from_chanvars,
    variable_name,
)
from fastagi_spy.model.sessions import SessionAllocator
from tests.unit.model_events import Chan, Ev, Sim, config, directory, parse

T0 = 1_732_156_800.0
ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "fastagi_spy" / "model"


def feed(state: ServerState, events: Iterable[Ev], now: float = T0) -> list[Change]:
    changes: list[Change] = []
    for event in events:
        changes.extend(state.apply(event, now))
    assert state.check_invariants() == []
    return changes


def agent(state: ServerState, number: str) -> dict[str, Any]:
    snap: Any = state.snapshot(T0)
    for item in snap["agents"]:
        if item["number"] == number:
            return dict(item)
    raise AssertionError(number)


@pytest.fixture
def state() -> ServerState:
    return ServerState("pbx1", directory(), config())


@pytest.fixture
def sim() -> Sim:
    return Sim()


def answered(sim: Sim, caller_device: str, callee_device: str) -> tuple[list[Ev], Chan]:
    caller = sim.chan(caller_device, state=4, cid=("5553000", "Widget Co"), context="from-trunk")
    callee = sim.chan(callee_device, linked=caller)
    bridge = sim.new_bridge()
    return [
        sim.newchannel(caller),
        sim.newchannel(callee),
        sim.newstate(callee, 6),
        sim.bridge_create(bridge),
        sim.bridge_enter(bridge, caller),
        sim.bridge_enter(bridge, callee),
    ], callee


# --- fields -----------------------------------------------------------------------


def test_session_ids_and_targets_are_ascii_digits_only() -> None:
    """Seven ASCII digits make a session id; 1-10 ASCII digits make a target."""
    assert is_session_id("8600051")
    assert not is_session_id("860005")
    assert not is_session_id("86000511")
    assert not is_session_id("860005\u0661")  # Arabic-Indic one: isdigit() says yes
    assert is_target("1") and is_target("1234567890")
    assert not is_target("12345678901") and not is_target("") and not is_target("1001\n")


def test_field_helpers() -> None:
    """Asterisk's "<unknown>" reads as empty; ChannelState must be a plain number."""
    assert known("<unknown>") == "" and known(None) == "" and known("Bob") == "Bob"
    assert parse_state("6", 0) == 6 and parse_state(None, 3) == 3
    for bad in ("", "six", " 6", "-1", "٦"):
        with pytest.raises(MalformedField):
            parse_state(bad, 0)
    assert variable_name("__fastagi_spy_session") == "FASTAGI_SPY_SESSION"
    values = ("OTHER=1", "fastagi_spy_session=8600001", "FASTAGI_SPY_SESSION=8600002")
    assert session_from_chanvars(values) == "8600001"
    assert session_from_chanvars(("NOEQUALS",)) is None


def test_allocator_hands_out_the_lowest_free_id() -> None:
    """Lowest free first, ids claimed by the site skipped; without a quarantine a
    released id is reused first."""
    allocator = SessionAllocator(8600000, 8600004)
    taken = {"8600001"}
    assert [allocator.allocate(taken) for _ in range(3)] == [8600000, 8600002, 8600003]
    taken.clear()
    assert allocator.allocate(taken) == 8600001  # no longer claimed: lowest again
    allocator.release(8600000, T0)
    assert allocator.allocate(taken) == 8600000
    assert allocator.allocate(taken) == 8600004
    assert allocator.allocate(taken) is None
    assert not allocator.claim(8600004) and not allocator.claim(8700000)
    allocator.release(8600003, T0)
    assert allocator.claim(8600003)


def test_a_released_id_rests_before_another_agent_gets_it() -> None:
    """Quarantine: not to the next agent at once; back to the same agent at once; to
    anyone after the quarantine; early only when the range would run dry, oldest first."""
    allocator = SessionAllocator(8600000, 8600003, quarantine=600)
    assert [allocator.allocate((), T0, a) for a in "abc"] == [8600000, 8600001, 8600002]
    allocator.release(8600000, T0, "a")
    allocator.release(8600001, T0 + 1, "b")
    assert allocator.allocate((), T0 + 2, "d") == 8600003  # not a's or b's old id
    assert allocator.allocate((), T0 + 3, "b") == 8600001  # b's own id comes back
    assert allocator.allocate((), T0 + 4, "e") == 8600000  # dry: the longest rested
    assert allocator.allocate((), T0 + 5, "f") is None
    allocator.release(8600002, T0 + 10, "c")
    assert allocator.allocate((), T0 + 11, "g") == 8600002  # dry again
    allocator.release(8600003, T0 + 20, "d")
    allocator.release(8600002, T0 + 21, "g")
    # After the quarantine the lowest free id is simply the lowest again.
    assert allocator.allocate((), T0 + 700, "h") == 8600002


# --- cheap ignoring and malformed events --------------------------------------------


def test_unknown_and_nameless_events_are_ignored(state: ServerState) -> None:
    """FullyBooted, Shutdown, unknown events and responses change nothing."""
    for text in (
        "Event: FullyBooted\nPrivilege: system,all\nUptime: 5\nLastReload: 5\nStatus: Fully Booted",
        "Event: Shutdown\nShutdown: Cleanly\nRestart: False",
        "Event: SomethingNew\nUniqueid: 1.1",
        "Response: Success\nMessage: Authentication accepted",
    ):
        assert state.apply(parse(text), T0) == []
    assert state.malformed == 0


@pytest.mark.parametrize(
    "text",
    [
        "Event: Newchannel\nChannel: PJSIP/1001-00000001\nChannelState: 4",
        "Event: Newstate\nChannel: PJSIP/1001-00000001\nChannelState: Up\nUniqueid: 1.1",
        "Event: Newstate\nChannel: PJSIP/1001-00000001\nUniqueid: 1.1",
        "Event: Newchannel\nChannelState: 4\nUniqueid: 1.1",
        "Event: Hangup\nChannel: PJSIP/1001-00000001\nCause: 16",
        "Event: BridgeEnter\nChannel: PJSIP/1001-00000001\nUniqueid: 1.1",
        "Event: DialBegin\nChannel: PJSIP/1001-00000001\nUniqueid: 1.1",
        "Event: ConfbridgeJoin\nChannel: PJSIP/1001-00000001\nUniqueid: 1.1",
        "Event: Rename\nChannel: PJSIP/1001-00000001\nUniqueid: 1.1",
        "Event: QueueMemberAdded\nMemberName: 1001\nInterface: PJSIP/1001",
        "Event: QueueMemberAdded\nQueue: q\nMemberName: Nobody\nInterface: PJSIP/nobody",
        "Event: AgentLogin\nChannel: PJSIP/1001-00000001\nUniqueid: 1.1",
    ],
)
def test_malformed_events_are_counted_not_raised(state: ServerState, text: str) -> None:
    """A missing Uniqueid, a non-numeric state or a nameless member: ignored and counted."""
    state.apply(parse(text), T0)
    assert state.malformed == 1
    assert state.check_invariants() == []


def test_events_for_unknown_channels_create_them(state: ServerState) -> None:
    """A BridgeEnter for a uniqueid never seen (before a resync) builds the channel."""
    sim = Sim()
    events, callee = answered(sim, "PJSIP/trunk", "PJSIP/1001")
    feed(state, events[3:])  # no Newchannel, no Newstate
    assert agent(state, "1001")["status"] == "Talking"
    assert state.spy_target("1001").channel == callee.name


def test_late_events_do_not_resurrect_a_hung_up_channel(state: ServerState, sim: Sim) -> None:
    """After Hangup, a straggling Newstate or VarSet for the same uniqueid is dropped."""
    phone = sim.chan("PJSIP/1001", state=4)
    feed(state, [sim.newchannel(phone), sim.hangup(phone)])
    feed(state, [sim.newstate(phone, 6), sim.varset(phone, "FASTAGI_SPY_SESSION", "8600077")])
    assert state.counts()["channels"] == 0
    assert agent(state, "1001")["session_id"] == "8600000"


# --- channel moves ------------------------------------------------------------------


def test_rename_moves_a_channel_to_the_agent_of_its_new_name(state: ServerState, sim: Sim) -> None:
    """A masquerade renames a channel: ownership follows the new device name."""
    events, callee = answered(sim, "PJSIP/trunk", "PJSIP/9999")
    feed(state, events)
    assert agent(state, "1001")["status"] == "Idle"
    rename = parse(
        f"Event: Rename\nPrivilege: call,all\nChannel: {callee.name}\n"
        f"Newname: PJSIP/1001-000000aa\nUniqueid: {callee.uniqueid}"
    )
    feed(state, [rename])
    assert agent(state, "1001")["channel"] == "PJSIP/1001-000000aa"
    assert state.spy_target("1001").reason == "ok"


def test_local_optimisation_swap_keeps_one_target(state: ServerState, sim: Sim) -> None:
    """BridgeEnter with SwapUniqueid: the swapped-out Local half stops counting at once."""
    trunk = sim.chan("PJSIP/trunk", state=6, cid=("5553000", "W"), context="from-trunk")
    l1, l2 = sim.local("1001@agents", linked=trunk)
    phone = sim.chan("PJSIP/1001", linked=trunk, state=6)
    outer, inner = sim.new_bridge(), sim.new_bridge()
    feed(
        state,
        [
            sim.newchannel(trunk),
            sim.newchannel(l1),
            sim.newchannel(l2),
            sim.newchannel(phone),
            sim.bridge_enter(outer, trunk),
            sim.bridge_enter(outer, l1),
            sim.bridge_enter(inner, l2),
            sim.bridge_enter(inner, phone),
        ],
    )
    assert state.spy_target("1001").channel == l1.name
    # core_unreal optimises the pair away: PJSIP/1001 takes l1's place in the outer bridge.
    feed(state, [sim.bridge_leave(inner, phone), sim.bridge_enter(outer, phone, swap=l1)])
    assert state.spy_target("1001").channel == phone.name
    feed(state, [sim.bridge_leave(outer, l1), sim.hangup(l1), sim.hangup(l2)])
    assert state.spy_target("1001").channel == phone.name


def test_linkedid_change_moves_a_channel_between_calls(state: ServerState, sim: Sim) -> None:
    """bridge_channel.c hands the oldest linkedid to everyone bridged: the call follows."""
    events, _ = answered(sim, "PJSIP/trunk", "PJSIP/1001")
    feed(state, events)
    other = sim.chan("PJSIP/trunk", state=6, context="from-trunk")
    feed(state, [sim.newchannel(other)])
    assert state.counts()["calls"] == 2
    other.linkedid = events[0].get("Linkedid") or ""
    changes = feed(state, [sim.newstate(other, 5)])
    assert state.counts()["calls"] == 1
    assert Change("pbx1", "call", other.uniqueid, None) in changes


def test_caller_id_update_on_the_customer_leg_updates_agent_and_call(
    state: ServerState, sim: Sim
) -> None:
    """NewCallerid on the leg that started the call renames the customer everywhere."""
    trunk = sim.chan("PJSIP/trunk", state=4, cid=("<unknown>", "<unknown>"), context="from-trunk")
    phone = sim.chan("PJSIP/1001", linked=trunk)
    bridge = sim.new_bridge()
    feed(
        state,
        [
            sim.newchannel(trunk),
            sim.newchannel(phone),
            sim.bridge_enter(bridge, trunk),
            sim.bridge_enter(bridge, phone),
        ],
    )
    assert agent(state, "1001")["call"]["customer_number"] == ""
    changes = feed(state, [sim.newcallerid(trunk, "5551000", "Someone")])
    kinds = {c.kind for c in changes}
    assert kinds == {"agent", "call"}
    call = agent(state, "1001")["call"]
    assert call["customer_number"] == "5551000"
    assert call["customer_name"] == "ACME Ltd"


def test_hold_is_shown_on_the_agents_call(state: ServerState, sim: Sim) -> None:
    """Hold/Unhold on the agent's channel flips on_hold."""
    events, callee = answered(sim, "PJSIP/trunk", "PJSIP/1001")
    feed(state, events)
    feed(state, [sim.hold(callee, True)])
    assert agent(state, "1001")["call"]["on_hold"] is True
    feed(state, [sim.hold(callee, False)])
    assert agent(state, "1001")["call"]["on_hold"] is False


def test_forked_dial_and_originate_without_caller(state: ServerState, sim: Sim) -> None:
    """Dial(A&B) rings both agents; DialBegin with no caller (Originate) still rings."""
    trunk = sim.chan("PJSIP/trunk", state=4, context="from-trunk")
    one = sim.chan("PJSIP/1001", linked=trunk)
    two = sim.chan("PJSIP/1002", linked=trunk)
    feed(
        state,
        [
            sim.newchannel(trunk),
            sim.dial_begin(trunk, one, "PJSIP/1001"),
            sim.dial_begin(trunk, two, "PJSIP/1002"),
        ],
    )
    assert agent(state, "1001")["status"] == agent(state, "1002")["status"] == "Ringing"
    feed(state, [sim.dial_end(trunk, two, "CANCEL"), sim.hangup(two)])
    assert agent(state, "1002")["status"] == "Idle"
    lone = sim.chan("PJSIP/10")
    feed(state, [sim.dial_begin(None, lone, "PJSIP/10")])
    assert agent(state, "10")["status"] == "Ringing"


# --- queue members ------------------------------------------------------------------


def test_queue_member_mapping_rules(state: ServerState, sim: Sim) -> None:
    """By device, else by MemberName == number, else its own digits, never a merge."""
    feed(state, [sim.queue_member("QueueMemberAdded", "q", "whoever", "PJSIP/1001")])
    assert agent(state, "1001")["logged_in"] is True
    feed(state, [sim.queue_member("QueueMemberAdded", "q", "1002", "SIP/bob-desk")])
    assert "SIP/bob-desk" in agent(state, "1002")["devices"]
    feed(state, [sim.queue_member("QueueMemberAdded", "q", "Agent 4004", "PJSIP/eve")])
    assert agent(state, "4004")["name"] == "Agent 4004"
    # "Mallory 1001" has digits 1001, which are Alice's: refused, not merged.
    feed(state, [sim.queue_member("QueueMemberAdded", "q", "Mallory 1001", "PJSIP/mal")])
    assert state.malformed == 1
    assert "PJSIP/mal" not in agent(state, "1001")["devices"]


# --- resolution ---------------------------------------------------------------------


def test_two_live_calls_are_ambiguous(state: ServerState, sim: Sim) -> None:
    """An agent bridged on two separate calls has no single target."""
    first, _ = answered(sim, "PJSIP/trunk", "PJSIP/1001")
    second, _ = answered(sim, "PJSIP/trunk", "PJSIP/1001")
    feed(state, first + second)
    assert state.spy_target("1001").reason == "ambiguous"
    live = LiveMap(directory(), {"pbx1": config()})
    for event in first + second:
        live.apply("pbx1", event, T0)
    resolution = live.resolve("1001")
    assert (resolution.ok, resolution.reason, resolution.channel) == (False, "ambiguous", None)


def test_shared_extension_is_ambiguous(sim: Sim) -> None:
    """PJSIP/555 and SIP/555 belong to two agents: extension 555 names nobody."""
    book = directory(
        AgentEntry("5001", "A", "x", ("PJSIP/555",)),
        AgentEntry("5002", "B", "x", ("SIP/555",)),
    )
    live = LiveMap(book, {"pbx1": config()})
    assert live.resolve("555").reason == "ambiguous"
    assert live.resolve("5001").reason == "not_on_call"


def test_resolution_reasons(sim: Sim) -> None:
    """not_found, not_logged_in, unknown server and stale, each for its own reason."""
    live = LiveMap(directory(), {"pbx1": config(logged_in_by="login")})
    assert live.resolve("1001").reason == "not_logged_in"
    assert live.resolve("9999").reason == "not_found"
    assert live.resolve("1001", "nope").reason == "not_found"
    assert live.resolve("abc").reason == "not_found"
    live.mark_stale("pbx1", T0)
    assert live.mark_stale("pbx1", T0 + 1) == []
    assert live.resolve("9999").reason == "not_found"  # nothing stale could hold it
    assert live.resolve("9999999").reason == "stale"  # a session could appear anywhere


# --- observation --------------------------------------------------------------------


def test_subscribers_hear_changes_and_can_leave(sim: Sim) -> None:
    """Every subscriber is called; a failing one does not stop the rest; unsubscribe works."""
    live = LiveMap(directory(), {"pbx1": config()})
    heard: list[Sequence[Change]] = []

    def broken(changes: Sequence[Change]) -> None:
        raise RuntimeError("subscriber bug")

    live.subscribe(broken)
    unsubscribe = live.subscribe(heard.append)
    phone = sim.chan("PJSIP/1001", state=5)
    with pytest.raises(RuntimeError, match="subscriber bug"):
        live.apply("pbx1", sim.newchannel(phone), T0)
    assert len(heard) == 1
    unsubscribe()
    unsubscribe()
    with pytest.raises(RuntimeError):
        live.apply("pbx1", sim.hangup(phone), T0)
    assert len(heard) == 1


def test_snapshot_shape_is_json_ready(state: ServerState, sim: Sim) -> None:
    """Every agent dict has the documented keys and the whole snapshot dumps as JSON."""
    events, _ = answered(sim, "PJSIP/trunk", "PJSIP/1001")
    feed(state, events)
    snap = state.snapshot(T0 + 5)
    json.dumps(snap)
    alice = agent(state, "1001")
    for key in ("number", "name", "team", "status", "logged_in", "session_id", "channel", "call"):
        assert key in alice
    assert set(alice["call"]) >= {
        "customer_number",
        "customer_name",
        "direction",
        "ringing_at",
        "answered_at",
        "elapsed_s",
    }
    assert snap["stale"] is False


def test_no_change_is_reported_twice(state: ServerState, sim: Sim) -> None:
    """Events that alter nothing public (a second Newstate Up, an unrelated VarSet) are silent."""
    events, callee = answered(sim, "PJSIP/trunk", "PJSIP/1001")
    feed(state, events)
    assert feed(state, [sim.newstate(callee, 6)]) == []
    assert feed(state, [sim.varset(callee, "DIALSTATUS", "ANSWER")]) == []


# --- layering -----------------------------------------------------------------------

FORBIDDEN = {"time", "datetime", "socket", "asyncio", "threading", "os", "io", "twisted"}


def test_model_sources_import_no_clock_io_or_wire() -> None:
    """No model module imports a clock, I/O, Twisted or fastagi_spy.wire, or calls open()."""
    for path in sorted(MODEL.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, (path.name, name)
                assert not name.startswith("fastagi_spy.wire"), (path.name, name)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id != "open", path.name


def test_model_does_not_load_wire_at_runtime() -> None:
    """Importing every model module in a fresh interpreter loads no fastagi_spy.wire."""
    code = textwrap.dedent(
        """
        import importlib, pkgutil, sys
        import fastagi_spy.model
        for info in pkgutil.walk_packages(fastagi_spy.model.__path__, "fastagi_spy.model."):
            importlib.import_module(info.name)
        leaked = sorted(m for m in sys.modules if m.startswith(("fastagi_spy.wire", "twisted")))
        assert not leaked, leaked
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_directory_type_is_the_store_one() -> None:
    """LiveMap takes the store's Directory (a smoke check of the shared API)."""
    book = Directory(agents=(), supervisors=(), never_spy=frozenset())
    live = LiveMap(book, {"pbx1": config()})
    assert live.snapshot(T0) == {
        "servers": {"pbx1": {
            "stale": False, "agents": [], "sessions": [], "calls": [], "queues": []}}
    }
    with pytest.raises(ValueError, match="at least one server"):
        LiveMap(book, {})


def test_channel_names_list_every_live_channel(sim: Sim) -> None:
    """channel_names(server) is what CoreShowChannels would list, hangups removed."""
    live = LiveMap(directory(), {"pbx1": config()})
    events, callee = answered(sim, "PJSIP/trunk", "PJSIP/1001")
    for event in events:
        live.apply("pbx1", event, T0)
    assert callee.name in live.channel_names("pbx1")
    assert len(live.channel_names("pbx1")) == 2
    live.apply("pbx1", sim.hangup(callee), T0)
    assert callee.name not in live.channel_names("pbx1")
