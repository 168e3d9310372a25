"""Call-centre stories replayed as Asterisk 22 would report them, and the state they leave."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pytest

from fastagi_spy.domain import AgentEntry
from fastagi_spy.model import Change, LiveMap, ModelConfig, ServerState
from tests.unit.model_events import (
    Ev,
    Sim,
    answer_through_local,
    blind_transfer,
    conference,
    config,
    directory,
    incoming_trunk,
    outgoing,
)

T0 = 1_732_156_800.0
SERVER = "10.10.10.16"


def feed(state: ServerState, events: Iterable[Ev], now: float = T0) -> list[Change]:
    changes: list[Change] = []
    for event in events:
        changes.extend(state.apply(event, now))
    assert state.check_invariants() == []
    return changes


def agent(state: ServerState, number: str, now: float = T0) -> dict[str, Any]:
    snap: Any = state.snapshot(now)
    for item in snap["agents"]:
        if item["number"] == number:
            return dict(item)
    raise AssertionError(f"no agent {number}")


def calls(state: ServerState, now: float = T0) -> list[dict[str, Any]]:
    snap: Any = state.snapshot(now)
    return list(snap["calls"])


@pytest.fixture
def state() -> ServerState:
    return ServerState(SERVER, directory(), config())


@pytest.fixture
def sim() -> Sim:
    return Sim()


def test_incoming_call_through_local_channels(state: ServerState, sim: Sim) -> None:
    """Customer Local/c1@customers dials Local/1001@agents/n: the agent's channel is its ;1."""
    c1, c2 = sim.local("c1@customers", seq=1, cid=("5551000", "Customer One"))
    a1, a2 = sim.local("1001@agents", linked=c1, seq=3, cid=("5551000", "Customer One"))
    phone = sim.chan("PJSIP/1001", linked=c1, seq=4, context="agents", exten="1001")
    feed(state, [sim.newchannel(c1), sim.newchannel(c2), sim.newstate(c2, 6)])
    feed(state, [sim.newchannel(a1), sim.newchannel(a2), sim.dial_begin(c2, a1, "1001@agents/n")])
    feed(state, [sim.newchannel(phone), sim.dial_begin(a2, phone, "1001")], T0 + 0.5)
    feed(state, [sim.newstate(phone, 5), sim.newstate(a1, 5)], T0 + 1)

    ringing = agent(state, "1001", T0 + 1)
    assert ringing["status"] == "Ringing"
    assert ringing["channel"] == "Local/1001@agents-00000003;1"
    assert ringing["call"]["direction"] == "incoming"
    assert state.spy_target("1001").reason == "not_on_call"

    inner, outer = sim.new_bridge(), sim.new_bridge()
    feed(state, answer_through_local(sim, c2, a1, a2, phone, inner, outer), T0 + 4)
    talking = agent(state, "1001", T0 + 16.5)
    assert talking["status"] == "Talking"
    assert talking["channel"] == "Local/1001@agents-00000003;1"
    assert talking["uniqueid"] == a1.uniqueid
    assert talking["call"] == {
        "id": c1.uniqueid,
        "customer_number": "5551000",
        "customer_name": "ACME Ltd",  # the directory's name beats the caller id name
        "direction": "incoming",
        "ringing_at": T0,  # DialBegin: the agent's leg was being called from then
        "answered_at": T0 + 4,
        "elapsed_s": 12.5,
        "on_hold": False,
    }
    # PJSIP/1001-... is the same leg seen past the Local pair: one target, not two.
    target = state.spy_target("1001")
    assert (target.reason, target.channel, target.uniqueid) == ("ok", a1.name, a1.uniqueid)
    (call,) = calls(state, T0 + 16.5)
    assert call["agents"] == ["1001"]
    assert call["answered_at"] == T0 + 4


def test_outgoing_call_placed_by_agent(state: ServerState, sim: Sim) -> None:
    """PJSIP/1002 dials 5552000: outgoing, customer is the dialled number."""
    events = outgoing(sim, "1002", "5552000")
    feed(state, events[:4], T0)
    ringing = agent(state, "1002")
    assert ringing["status"] == "Ringing"
    assert ringing["call"]["direction"] == "outgoing"
    feed(state, events[4:11], T0 + 7)
    talking = agent(state, "1002", T0 + 10)
    assert talking["status"] == "Talking"
    assert talking["call"]["customer_number"] == "5552000"
    assert talking["call"]["elapsed_s"] == 3.0
    assert talking["channel"].startswith("PJSIP/1002-")
    (call,) = calls(state)
    assert (call["direction"], call["customer_number"]) == ("outgoing", "5552000")
    feed(state, events[11:], T0 + 20)
    assert agent(state, "1002")["status"] == "Idle"
    assert calls(state) == []


def test_blind_transfer_moves_the_customer_to_the_second_agent(
    state: ServerState, sim: Sim
) -> None:
    """1001 blind-transfers a trunk call to 1002: same call, new agent, 1001 is free."""
    events = blind_transfer(sim, "1001", "1002")
    feed(state, events[:10], T0)
    assert agent(state, "1001")["status"] == "Talking"
    feed(state, events[10:23], T0 + 30)
    first, second = agent(state, "1001"), agent(state, "1002")
    assert (first["status"], first["call"], first["channel"]) == ("Idle", None, None)
    assert second["status"] == "Talking"
    assert second["call"]["customer_number"] == "5553000"
    assert second["call"]["direction"] == "incoming"
    assert second["call"]["answered_at"] == T0 + 30
    (call,) = calls(state)
    assert call["agents"] == ["1002"]
    assert call["answered_at"] == T0  # the call was answered first by 1001
    assert state.spy_target("1001").reason == "not_on_call"
    assert state.spy_target("1002").channel == second["channel"]


def test_queue_member_answers_through_local_interface(sim: Sim) -> None:
    """A queue member not in the directory becomes agent 2001 and its Local ;1 is the target."""
    state = ServerState(SERVER, directory(), config())
    member = sim.queue_member(
        "QueueMemberAdded", "sales", "Carol", "Local/2001@agents/n", "PJSIP/2001"
    )
    changes = feed(state, [member])
    carol = agent(state, "2001")
    assert (carol["name"], carol["logged_in"], carol["status"]) == ("Carol", True, "Idle")
    assert carol["devices"] == ["Local/2001@agents", "PJSIP/2001"]
    assert any(c.kind == "session" and c.key == carol["session_id"] for c in changes)

    trunk = sim.chan("PJSIP/trunk", state=4, cid=("5551000", "x"), context="from-trunk")
    l1, l2 = sim.local("2001@agents", linked=trunk)
    phone = sim.chan("PJSIP/2001", linked=trunk, context="agents", exten="2001")
    bridge, inner = sim.new_bridge(), sim.new_bridge()
    feed(
        state,
        [
            sim.newchannel(trunk),
            sim.newstate(trunk, 6),  # Queue() answers the caller first
            sim.newchannel(l1),
            sim.newchannel(l2),
            sim.dial_begin(trunk, l1, "Local/2001@agents/n"),
            sim.newchannel(phone),
            sim.dial_begin(l2, phone, "PJSIP/2001"),
            sim.newstate(phone, 5),
            sim.newstate(l1, 5),
            sim.newstate(phone, 6),
            sim.dial_end(l2, phone, "ANSWER"),
            sim.bridge_create(inner),
            sim.bridge_enter(inner, l2),
            sim.bridge_enter(inner, phone),
            sim.newstate(l1, 6),
            sim.dial_end(trunk, l1, "ANSWER"),
            sim.bridge_create(bridge),
            sim.bridge_enter(bridge, trunk),
            sim.bridge_enter(bridge, l1),
        ],
        T0 + 5,
    )
    carol = agent(state, "2001")
    assert carol["status"] == "Talking"
    assert carol["channel"] == l1.name
    assert carol["call"]["customer_name"] == "ACME Ltd"
    assert state.spy_target("2001").channel == l1.name


def test_agent_paused_mid_call_shows_paused_and_keeps_the_call(sim: Sim) -> None:
    """Paused mid-call reads Paused at once, still with its call and spy target."""
    state = ServerState(SERVER, directory(), config())
    feed(state, [sim.queue_member("QueueMemberAdded", "sales", "Alice", "PJSIP/1001")])
    trunk = sim.chan("PJSIP/trunk", state=4, cid=("5553000", "Widget Co"), context="from-trunk")
    phone = sim.chan("PJSIP/1001", linked=trunk)
    bridge = sim.new_bridge()
    feed(
        state,
        [
            sim.newchannel(trunk),
            sim.newchannel(phone),
            sim.dial_begin(trunk, phone, "PJSIP/1001"),
            sim.newstate(phone, 6),
            sim.dial_end(trunk, phone, "ANSWER"),
            sim.bridge_create(bridge),
            sim.bridge_enter(bridge, trunk),
            sim.bridge_enter(bridge, phone),
        ],
    )
    pause = sim.queue_member(
        "QueueMemberPause", "sales", "Alice", "PJSIP/1001", paused=True, in_call=True
    )
    changes = feed(state, [pause], T0 + 3)
    (change,) = [c for c in changes if c.kind == "agent"]
    assert change.value is not None
    assert (change.value["status"], change.value["paused"]) == ("Paused", True)
    assert change.value["call"]["customer_number"] == "5553000"
    assert change.value["channel"] == phone.name
    assert state.spy_target("1001").reason == "ok"
    feed(
        state,
        [sim.bridge_leave(bridge, phone), sim.hangup(phone), sim.hangup(trunk)],
        T0 + 9,
    )
    assert (agent(state, "1001")["status"], agent(state, "1001")["call"]) == ("Paused", None)
    feed(state, [sim.queue_member("QueueMemberPause", "sales", "Alice", "PJSIP/1001")])
    assert agent(state, "1001")["status"] == "Idle"


def test_confbridge_room_is_the_session(state: ServerState, sim: Sim) -> None:
    """An agent in ConfBridge 9600001 has session 9600001; the room counts as on a call."""
    phone = sim.chan("PJSIP/1001", state=4, cid=("1001", "Alice"), context="agents")
    phone.exten = "9600001"
    bridge = sim.new_bridge()
    changes = feed(
        state,
        [
            sim.newchannel(phone),
            sim.newstate(phone, 6),
            sim.bridge_create(bridge, "confbridge"),
            sim.bridge_enter(bridge, phone, kind="confbridge"),
            sim.confbridge(True, phone, "9600001", bridge),
        ],
    )
    alice = agent(state, "1001")
    assert (alice["session_id"], alice["status"], alice["call"]) == ("9600001", "Idle", None)
    session = [c for c in changes if c.kind == "session" and c.key == "9600001"][-1]
    assert session.value == {
        "session_id": "9600001",
        "agent_number": "1001",
        "channel": phone.name,
        "uniqueid": phone.uniqueid,
        "source": "conference",
        "shared": False,
    }
    live = LiveMap(directory(), {SERVER: config()})
    for event in [
        sim.newchannel(phone),
        sim.bridge_enter(bridge, phone, kind="confbridge"),
        sim.confbridge(True, phone, "9600001", bridge),
    ]:
        live.apply(SERVER, event, T0)
    resolution = live.resolve("9600001")
    assert (resolution.ok, resolution.agent_number, resolution.channel) == (
        True,
        "1001",
        phone.name,
    )

    guest = sim.chan("PJSIP/trunk", state=4, cid=("5554000", "Room Guest"), context="from-trunk")
    feed(
        state,
        [
            sim.newchannel(guest),
            sim.newstate(guest, 6),
            sim.bridge_enter(bridge, guest, kind="confbridge"),
            sim.confbridge(True, guest, "9600001", bridge),
        ],
        T0 + 60,
    )
    alice = agent(state, "1001", T0 + 90)
    assert alice["status"] == "Talking"
    assert alice["call"]["customer_number"] == "5554000"
    assert alice["call"]["elapsed_s"] == 30.0
    feed(
        state,
        [
            sim.confbridge(False, guest, "9600001", bridge),
            sim.bridge_leave(bridge, guest, kind="confbridge"),
            sim.hangup(guest),
            sim.confbridge(False, phone, "9600001", bridge),
            sim.bridge_leave(bridge, phone, kind="confbridge"),
            sim.hangup(phone),
        ],
        T0 + 120,
    )
    alice = agent(state, "1001")
    # Out of the room, the directory agent is back on an allocated session.
    assert alice["session_id"] == "8600000"
    assert state.lookup("9600001") is None


def test_varset_session_sticks_between_calls(state: ServerState, sim: Sim) -> None:
    """FASTAGI_SPY_SESSION set by the dialplan names the session, and outlives the channel."""
    phone = sim.chan("PJSIP/1002", state=4, cid=("1002", "Bob"), context="agents-out")
    trunk = sim.chan("PJSIP/trunk", linked=phone, context="from-trunk", exten="5552000")
    bridge = sim.new_bridge()
    feed(
        state,
        [
            sim.newchannel(phone),
            # Inherited form: pbx_builtin_setvar_helper publishes the name as written.
            sim.varset(phone, "__FASTAGI_SPY_SESSION", "8600051"),
            sim.newchannel(trunk),
            sim.dial_begin(phone, trunk, "trunk/5552000"),
            sim.newstate(trunk, 6),
            sim.dial_end(phone, trunk, "ANSWER"),
            sim.bridge_create(bridge),
            sim.bridge_enter(bridge, phone),
            sim.bridge_enter(bridge, trunk),
        ],
    )
    bob = agent(state, "1002")
    assert (bob["session_id"], bob["status"]) == ("8600051", "Talking")
    target = state.spy_target("1002")
    assert (target.reason, target.session_id, target.channel) == ("ok", "8600051", phone.name)
    assert state.lookup("8600051") == (0, frozenset({"1002"}))
    feed(state, [sim.varset(phone, "FASTAGI_SPY_SESSION", "86000")])
    assert state.malformed == 1  # not 7 digits: ignored and counted
    feed(state, [sim.bridge_leave(bridge, phone), sim.hangup(trunk), sim.hangup(phone)])
    after = agent(state, "1002")
    assert (after["session_id"], after["status"]) == ("8600051", "Idle")
    assert state.spy_target("1002").reason == "not_on_call"


def test_chanvariable_header_names_the_session(state: ServerState, sim: Sim) -> None:
    """manager.conf channelvars: "ChanVariable: FASTAGI_SPY_SESSION=8600052" on any event."""
    phone = sim.chan("PJSIP/1001", state=4, context="agents")
    feed(state, [sim.newchannel(phone)])
    assert agent(state, "1001")["session_id"] == "8600000"
    phone.chanvars = ["FASTAGI_SPY_SESSION=8600052", "OTHER=x"]
    changes = feed(state, [sim.newstate(phone, 6)])
    assert agent(state, "1001")["session_id"] == "8600052"
    keys = {(c.kind, c.key, c.value is None) for c in changes}
    assert ("session", "8600000", True) in keys
    assert ("session", "8600052", False) in keys


def test_allocated_session_is_stable_and_released_at_logout(sim: Sim) -> None:
    """Lowest free id at login, the same id across calls, freed at logout for the next agent."""
    state = ServerState(SERVER, directory(), config(logged_in_by="login"))
    assert agent(state, "1001")["logged_in"] is False
    feed(state, [sim.queue_member("QueueMemberAdded", "sales", "Alice", "PJSIP/1001")])
    feed(state, [sim.queue_member("QueueMemberAdded", "sales", "Bob", "PJSIP/1002")])
    assert agent(state, "1001")["session_id"] == "8600000"
    assert agent(state, "1002")["session_id"] == "8600001"
    for _ in range(2):
        feed(state, blind_transfer(sim, "1001", "1002"))
        assert agent(state, "1001")["session_id"] == "8600000"
    removed = sim.queue_member("QueueMemberRemoved", "sales", "Alice", "PJSIP/1001")
    changes = feed(state, [removed])
    alice = agent(state, "1001")
    assert (alice["logged_in"], alice["session_id"]) == (False, None)
    assert Change(SERVER, "session", "8600000", None) in changes
    assert state.spy_target("1001").reason == "not_logged_in"
    # 8600000 rests in quarantine: the next agent to log in gets another id...
    feed(state, [sim.queue_member("QueueMemberAdded", "sales", "Ten", "PJSIP/10")])
    assert agent(state, "10")["session_id"] == "8600002"
    assert agent(state, "1002")["session_id"] == "8600001"
    # ...Alice, back within the quarantine, gets her own again; after it, anyone may.
    feed(state, [sim.queue_member("QueueMemberAdded", "sales", "Alice", "PJSIP/1001")], T0 + 5)
    assert agent(state, "1001")["session_id"] == "8600000"
    feed(state, [removed], T0 + 10)
    feed(state, [sim.queue_member("QueueMemberAdded", "sales", "X", "PJSIP/100")], T0 + 611)
    assert agent(state, "100")["session_id"] == "8600000"


def test_hangup_while_ringing_leaves_agent_idle(state: ServerState, sim: Sim) -> None:
    """The caller gives up while 1001 rings: Idle again, and no call is left behind."""
    trunk = sim.chan("PJSIP/trunk", state=4, cid=("5553000", "Widget Co"), context="from-trunk")
    phone = sim.chan("PJSIP/1001", linked=trunk)
    feed(
        state,
        [
            sim.newchannel(trunk),
            sim.newchannel(phone),
            sim.dial_begin(trunk, phone, "PJSIP/1001"),
            sim.newstate(phone, 5),
        ],
    )
    assert agent(state, "1001")["status"] == "Ringing"
    changes = feed(
        state,
        [sim.dial_end(trunk, phone, "CANCEL"), sim.hangup(phone, 19), sim.hangup(trunk)],
        T0 + 8,
    )
    alice = agent(state, "1001")
    assert (alice["status"], alice["call"], alice["channel"]) == ("Idle", None, None)
    assert calls(state) == []
    assert Change(SERVER, "call", trunk.linkedid, None) in changes


def test_agents_10_and_100_resolve_to_their_own_channels(sim: Sim) -> None:
    """Prefix twins: "10" is never "100" and PJSIP/100 is never PJSIP/1001."""
    live = LiveMap(directory(), {SERVER: config()})
    for number in ("10", "100", "1001"):
        for event in outgoing(sim, number)[:10]:
            live.apply(SERVER, event, T0)
    ten, hundred = live.resolve("10"), live.resolve("100")
    assert ten.ok and hundred.ok
    assert ten.channel is not None and ten.channel.startswith("PJSIP/10-")
    assert hundred.channel is not None and hundred.channel.startswith("PJSIP/100-")
    assert ten.uniqueid != hundred.uniqueid
    by_extension = live.resolve("301")
    assert (by_extension.ok, by_extension.reason, by_extension.agent_number) == (
        False,
        "not_on_call",
        "7001",
    )
    for target in ("1", "30", "1000", "10010", "+100", "10 ", "", "12345678901"):
        assert live.resolve(target).reason == "not_found", target


def test_resync_drops_vanished_channels_and_clears_stale(sim: Sim) -> None:
    """A resync after an AMI outage rebuilds from the lists and reports what vanished."""
    live = LiveMap(directory(), {SERVER: config()})
    seen: list[Change] = []
    live.subscribe(seen.extend)
    gone = outgoing(sim, "1001")
    for event in gone[:10]:
        live.apply(SERVER, event, T0)
    old_call = gone[0].get("Linkedid")
    assert live.resolve("1001").ok
    assert live.mark_stale(SERVER, T0 + 1) == [
        Change(SERVER, "server", SERVER, {"stale": True, "stale_since": T0 + 1})
    ]
    assert live.resolve("1001").reason == "stale"
    assert live.resolve("1001", SERVER).reason == "stale"
    assert live.resolve("8600000").reason == "stale"

    trunk = sim.chan("PJSIP/trunk", state=6, cid=("5553000", "Widget Co"), context="from-trunk")
    phone = sim.chan("PJSIP/1002", linked=trunk, state=6)
    bridge = sim.new_bridge()
    seen.clear()
    changes = live.resync(
        SERVER,
        [
            sim.core_show_channel(trunk, bridge, "AppDial", "(Outgoing Line)", "00:01:05"),
            sim.core_show_channel(phone, bridge, "Dial", "PJSIP/1002", "00:01:00"),
        ],
        [],
        T0 + 100,
    )
    assert seen == changes
    assert Change(SERVER, "call", old_call or "", None) in changes
    assert changes[-1] == Change(SERVER, "server", SERVER, {"stale": False, "stale_since": None})
    state = live.server(SERVER)
    assert state.stale is False
    assert agent(state, "1001")["status"] == "Idle"
    bob = agent(state, "1002", T0 + 100)
    assert bob["status"] == "Talking"
    # The bridge cannot be older than its younger member (created 60 s ago).
    assert bob["call"]["answered_at"] == T0 + 40
    assert bob["session_id"] == "8600001"  # allocations survive a resync
    assert live.resolve("1001").reason == "not_on_call"
    assert live.resolve("1002").channel == phone.name
    assert state.check_invariants() == []
    again = live.resync(
        SERVER,
        [
            sim.core_show_channel(trunk, bridge, "AppDial", "(Outgoing Line)", "00:01:05"),
            sim.core_show_channel(phone, bridge, "Dial", "PJSIP/1002", "00:01:00"),
        ],
        [],
        T0 + 100,
    )
    assert again == []  # nothing changed, nothing reported


def test_resync_takes_conference_rooms_and_queue_members(sim: Sim) -> None:
    """CoreShowChannel "ConfBridge" + "9600001,..." puts the channel in its room."""
    state = ServerState(SERVER, directory(), config(logged_in_by="login"))
    phone = sim.chan("PJSIP/1001", state=6)
    carol = sim.chan("PJSIP/2001", state=6)
    changes = state.resync(
        [
            sim.core_show_channel(phone, "", "ConfBridge", "9600001,vici_agent_bridge", "01:00:00"),
            sim.core_show_channel(carol, "", "Wait", "100", "00:00:05"),
        ],
        [
            sim.queue_status_member("sales", "Carol", "PJSIP/2001", paused=True),
            Ev([("Event", "QueueMember"), ("Queue", "sales")]),  # no name, no location
        ],
        T0,
    )
    assert state.malformed == 1
    assert agent(state, "1001")["session_id"] == "9600001"
    assert agent(state, "1001")["logged_in"] is True
    assert agent(state, "2001")["status"] == "Paused"
    assert agent(state, "2001")["channel"] == carol.name
    assert {c.key for c in changes if c.kind == "session"} == {"9600001", "8600000"}


def test_two_servers_keep_separate_sessions() -> None:
    """The same room number on two servers is two sessions; a bare id is ambiguous."""
    first, second = "10.10.10.16", "10.10.10.17"
    live = LiveMap(directory(), {first: config(), second: config(session_range=(8700000, 8799999))})
    sim_a, sim_b = Sim(tag="a"), Sim(tag="b")
    for sim, server, number in ((sim_a, first, "1001"), (sim_b, second, "1002")):
        phone = sim.chan(f"PJSIP/{number}", state=6)
        bridge = sim.new_bridge()
        for event in [
            sim.newchannel(phone),
            sim.bridge_enter(bridge, phone, kind="confbridge"),
            sim.confbridge(True, phone, "9600001", bridge),
        ]:
            live.apply(server, event, T0)
    on_first = live.resolve("9600001", first)
    on_second = live.resolve("9600001", second)
    assert (on_first.agent_number, on_first.server) == ("1001", first)
    assert (on_second.agent_number, on_second.server) == ("1002", second)
    assert on_first.channel != on_second.channel
    assert live.resolve("9600001").reason == "ambiguous"
    snapshot = live.snapshot(T0)
    servers = snapshot["servers"]
    assert isinstance(servers, dict)
    on = {
        server: {s["session_id"]: s["agent_number"] for s in servers[server]["sessions"]}
        for server in (first, second)
    }
    # In its room an agent's allocated id is given back; each server has its own range.
    assert (on[first]["9600001"], on[first]["8600001"]) == ("1001", "1002")
    assert (on[second]["9600001"], on[second]["8700000"]) == ("1002", "1001")
    assert "8600000" not in on[first]
    json.dumps(snapshot)  # JSON-ready all the way down
    # Agent 1001 on the first server is one person even though both servers know it.
    assert live.resolve("1001").server == first
    live.mark_stale(second, T0)
    assert live.resolve("1001").reason == "stale"
    assert live.resolve("1001", first).ok


def test_agent_pool_login_and_logoff(sim: Sim) -> None:
    """app_agent_pool AgentLogin logs agent 1001 in on the channel that ran it."""
    state = ServerState(SERVER, directory(), config(logged_in_by="login"))
    phone = sim.chan("PJSIP/9999", state=6, context="agents")
    feed(state, [sim.newchannel(phone), sim.agent_login(phone, "1001")])
    alice = agent(state, "1001")
    assert (alice["logged_in"], alice["channel"]) == (True, phone.name)
    assert "PJSIP/9999" in alice["devices"]
    feed(state, [sim.agent_logoff(phone, "1001")])
    assert agent(state, "1001")["logged_in"] is False
    stranger = sim.chan("PJSIP/5005", state=6)
    feed(state, [sim.newchannel(stranger), sim.agent_login(stranger, "5005")])
    assert agent(state, "5005")["logged_in"] is True


def test_directory_customer_name_and_config_checks() -> None:
    """ModelConfig rejects ranges that are not 7 digits and empty prefixes."""
    with pytest.raises(ValueError, match="7-digit"):
        ModelConfig(session_range=(100, 200))
    with pytest.raises(ValueError, match="empty prefix"):
        ModelConfig(trunk_prefixes=("",))
    extra = AgentEntry("3001", "Eve", "green", ())
    state = ServerState(SERVER, directory(extra), config())
    assert agent(state, "3001")["devices"] == []


def test_a_burst_is_reported_once_as_its_net_change(sim: Sim) -> None:
    """apply_many (one AMI read) gives the same state as event by event, and each thing's
    newest view once: the agent is Talking, not Ringing then Talking."""
    # Up to both legs entering the bridge: rung, answered, talking.
    events = incoming_trunk(sim, "1001")[:10]
    one_by_one = ServerState(SERVER, directory(), config())
    singly = feed(one_by_one, events)
    burst = ServerState(SERVER, directory(), config())
    batched = burst.apply_many(events, T0)
    assert burst.check_invariants() == []
    assert burst.snapshot(T0) == one_by_one.snapshot(T0)
    agent_changes = [c for c in batched if c.kind == "agent" and c.key == "1001"]
    assert len(agent_changes) == 1
    assert agent_changes[0].value is not None
    assert agent_changes[0].value["status"] == "Talking"
    assert len([c for c in singly if c.kind == "agent" and c.key == "1001"]) > 1
    # Nothing happened twice: every key appears once per kind in the batch.
    keys = [(c.kind, c.key) for c in batched]
    assert len(keys) == len(set(keys))


def test_a_dialler_call_rebuilt_by_resync_is_still_outgoing_to_the_number_dialled(sim: Sim) -> None:
    """After a reconnect CoreShowChannels shows the dialler's leg where it is now (the agent's
    room, with the campaign's caller id): its Local name still says which number it dialled."""
    state = ServerState(SERVER, directory(), config(dialer_contexts=frozenset({"dialer"})))
    phone = sim.chan("PJSIP/1001", state=6, context="vicidial", exten="9600001")
    dialer, _ = sim.local("5551000@dialer", cid=("3125550000", "V1121135220000012345"))
    dialer.state, dialer.context, dialer.exten = 6, "vicidial", "9600001"
    dialer.conn_num = "3125550000"
    state.resync([
        sim.core_show_channel(phone, "", "ConfBridge", "9600001,vici_agent_bridge", "01:00:00"),
        sim.core_show_channel(dialer, "", "ConfBridge", "9600001,vici_agent_bridge", "00:00:30"),
    ], [], T0)
    call = agent(state, "1001")["call"]
    assert call["id"] == dialer.linkedid
    assert (call["direction"], call["customer_number"], call["customer_name"]) == (
        "outgoing", "5551000", "ACME Ltd")


@pytest.mark.parametrize(
    ("dialled", "shown"),
    [
        ("95551000", "5551000"),  # the campaign's "9" taken off
        ("9145551000", "45551000"),  # the longest prefix that fits: "91"
        ("5551000", "5551000"),  # a number without the prefix stays whole
        ("91", "91"),  # nothing would be left: keep it
    ],
)
def test_a_dialler_s_dial_prefix_is_not_part_of_the_customer_number(
    sim: Sim, dialled: str, shown: str
) -> None:
    """VICIdial dials Local/<dial prefix><number>@<context>: the customer is the number."""
    rules = config(dialer_contexts=frozenset({"dialer"}), dialer_dial_prefixes=("9", "91"))
    state = ServerState(SERVER, directory(), rules)
    dialer, _ = sim.local(f"{dialled}@dialer", cid=("3125550000", "V1121135220000012345"))
    phone = sim.chan("PJSIP/1001", state=6, context="vicidial", exten="9600001")
    dialer.state, dialer.context, dialer.exten = 6, "vicidial", "9600001"
    state.resync([
        sim.core_show_channel(phone, "", "ConfBridge", "9600001,vici_agent_bridge", "01:00:00"),
        sim.core_show_channel(dialer, "", "ConfBridge", "9600001,vici_agent_bridge", "00:00:30"),
    ], [], T0)
    call = agent(state, "1001")["call"]
    assert (call["direction"], call["customer_number"]) == ("outgoing", shown)


def test_dial_prefixes_are_digits() -> None:
    with pytest.raises(ValueError, match="dialer_dial_prefixes"):
        ModelConfig(dialer_dial_prefixes=("9", "*9"))


def test_a_dialler_leg_on_a_trunk_takes_its_customer_from_the_far_end(sim: Sim) -> None:
    """A dialler originating on a trunk endpoint (PJSIP/dialer-...): no number in the name or
    the extension, so the customer is the connected line once the far end reports it, never
    the caller id the dialler put on its own leg."""
    state = ServerState(SERVER, directory(), config(dialer_prefixes=("PJSIP/dialer-",)))
    leg = sim.chan("PJSIP/dialer", cid=("3125550000", "Campaign"), context="from-trunk")
    leg.conn_num, leg.conn_name = "3125550000", "Campaign"
    feed(state, [sim.newchannel(leg)])
    (call,) = calls(state)
    assert (call["direction"], call["customer_number"]) == ("outgoing", "")
    feed(state, [sim.newconnectedline(leg, "5551000", "")])
    (call,) = calls(state)
    assert (call["direction"], call["customer_number"], call["customer_name"]) == (
        "outgoing", "5551000", "ACME Ltd")


def test_an_agent_leg_in_a_dialler_context_is_the_agents_own_call(sim: Sim) -> None:
    """A site may call its agents' phones from the dialler's context (VICIdial calls an agent
    into its room from "default"): a call started by an agent's own leg is the agent's,
    never a dialled customer's, so the agent's own number is not shown as the customer."""
    state = ServerState(SERVER, directory(), config(dialer_contexts=frozenset({"agents"})))
    one, _ = sim.local("1001@agents", cid=("1001", "Alice"))
    feed(state, [sim.newchannel(one)])
    (call,) = calls(state)
    assert (call["direction"], call["customer_number"], call["agents"]) == (
        "outgoing", "", ["1001"])


def test_without_subscribers_changes_wait_for_whoever_asks(sim: Sim) -> None:
    """The server's path (ingest) works out no changes while nobody follows them: a
    snapshot, or a subscriber, then sees exactly what apply_many would have shown."""
    events = incoming_trunk(sim, "1001")
    talking, ended = events[:10], events[10:]
    quiet = LiveMap(directory(), {SERVER: config()})
    loud = LiveMap(directory(), {SERVER: config()})
    quiet.ingest(SERVER, talking, T0)
    loud.apply_many(SERVER, talking, T0)
    assert quiet.snapshot(T0 + 5) == loud.snapshot(T0 + 5)
    agents = quiet.snapshot(T0 + 5)["servers"][SERVER]["agents"]
    assert [a["status"] for a in agents if a["number"] == "1001"] == ["Talking"]

    # A subscriber hears what changes from when it subscribed, as apply_many reports it.
    quiet.ingest(SERVER, ended[:1], T0 + 6)
    heard: list[Change] = []
    quiet.subscribe(heard.extend)
    loud.apply_many(SERVER, ended[:1], T0 + 6)
    assert heard == []
    quiet.ingest(SERVER, ended[1:], T0 + 9)
    expected = loud.apply_many(SERVER, ended[1:], T0 + 9)
    assert [c.kind for c in expected] == [c.kind for c in heard]
    assert expected == heard
    assert quiet.snapshot(T0 + 10) == loud.snapshot(T0 + 10)


def test_waiting_changes_stay_bounded_by_what_is_live(sim: Sim) -> None:
    """Ingesting for hours with nobody asking keeps nothing for calls that came and went."""
    state = ServerState(SERVER, directory(), config())
    for _ in range(50):
        state.apply_quietly(incoming_trunk(sim, "1001"), T0)
        state.apply_quietly(conference(sim, "1002", "9600123"), T0)
    tables = state._tables
    assert tables.ended == {}
    assert tables.dirty_calls == set()
    assert len(tables.dirty_agents) <= len(tables.agents)
    assert len(tables.touched_sessions) <= len(tables.sessions) + 2
    # The net change since the start is nil; then one call that is still up.
    assert state.report_changes(T0) == []
    state.apply_quietly(incoming_trunk(sim, "1001")[:10], T0)
    (change,) = [c for c in state.report_changes(T0) if c.kind == "agent"]
    assert change.key == "1001" and change.value is not None
    assert change.value["status"] == "Talking"
    assert state.report_changes(T0) == []


def test_a_resting_session_id_stays_resting_across_a_resync(sim: Sim) -> None:
    """An AMI reconnect rebuilds the tables: the quarantine survives it."""
    state = ServerState(SERVER, directory(), config(logged_in_by="login"))
    alice = sim.queue_member("QueueMemberAdded", "sales", "Alice", "PJSIP/1001")
    feed(state, [alice])
    assert agent(state, "1001")["session_id"] == "8600000"
    feed(state, [sim.queue_member("QueueMemberRemoved", "sales", "Alice", "PJSIP/1001")], T0 + 1)
    state.mark_stale(T0 + 2)
    state.resync([], [sim.queue_status_member("sales", "Ten", "PJSIP/10")], T0 + 3)
    assert agent(state, "10")["session_id"] == "8600001"
