"""Raw AMI recordings from the Asterisk 22 sandbox, parsed by the wire layer, fed to the model.

Each tests/fixtures/ami/<name>.ami is the byte stream one AMI session received
while the sandbox (fastagi_spy/data/asterisk/extensions.conf) played the story its
name tells.  The sandbox has no SIP: customers are Local/<agent>@fsp-customers,
agents Local/<agent>@fsp-agents, so an agent's channel is a Local half.  Every
replay checks the tables after each event and that nothing is left at the end;
each test then checks the moments its story is about.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fastagi_spy.domain import AgentEntry, Directory
from fastagi_spy.model import LiveMap, ModelConfig, Resolution
from fastagi_spy.wire.ami import AMIMessage, AMIParser

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ami"
SERVER = "sandbox"
RECORDINGS = sorted(p.stem for p in FIXTURES.glob("*.ami"))


def sandbox_directory() -> Directory:
    agents = tuple(
        AgentEntry(
            n, f"Agent {n}", "red", (f"Local/{n}@fsp-agents", f"Local/{n}@fsp-agents-ringing")
        )
        for n in ("1001", "1002", "1003", "10", "100")
    )
    return Directory(agents=agents, supervisors=(), never_spy=frozenset())


# Every target the stories are about, resolved after each event.
TARGETS = ("1001", "1002", "1003", "10", "100", "8600000", "8600051", "9600001")


@dataclass
class Moment:
    """The state right after one event."""

    event: str
    agents: dict[str, dict[str, Any]]
    calls: list[dict[str, Any]]
    resolutions: dict[str, Resolution]

    def resolve(self, target: str) -> Resolution:
        return self.resolutions[target]


def replay(name: str, **settings: Any) -> tuple[LiveMap, list[Moment]]:
    """Feed the recording through AMIParser in 4 KiB reads; one Moment per event."""
    cfg = ModelConfig(trunk_contexts=frozenset({"fsp-customers"}), **settings)
    live = LiveMap(sandbox_directory(), {SERVER: cfg})
    state = live.server(SERVER)
    parser = AMIParser()
    data = (FIXTURES / f"{name}.ami").read_bytes()
    moments: list[Moment] = []
    now = 0.0
    for offset in range(0, len(data), 4096):
        for message in parser.feed(data[offset : offset + 4096]):
            if not isinstance(message, AMIMessage) or not message.is_event:
                continue
            # timestampevents=yes in the sandbox: the event's own clock, as the net layer would.
            now = float(message.get("Timestamp") or now)
            live.apply(SERVER, message, now)
            assert state.check_invariants() == [], message.event
            snap: Any = state.snapshot(now)
            moments.append(
                Moment(
                    message.event or "",
                    {a["number"]: a for a in snap["agents"]},
                    snap["calls"],
                    {target: live.resolve(target) for target in TARGETS},
                )
            )
    counts = state.counts()
    assert (counts["channels"], counts["calls"], counts["bridges"], counts["malformed"]) == (
        0,
        0,
        0,
        0,
    )
    return live, moments


def first(moments: list[Moment], test: Callable[[Moment], bool]) -> Moment:
    for moment in moments:
        if test(moment):
            return moment
    raise AssertionError("the recording never reached that state")


def test_every_recording_has_a_test() -> None:
    """New recordings dropped into tests/fixtures/ami must get a test here."""
    assert set(RECORDINGS) <= set(CHECKS), sorted(set(RECORDINGS) - set(CHECKS))


def check_incoming_call_answered() -> None:
    _, moments = replay("incoming_call_answered")
    talking = first(moments, lambda m: m.agents["1001"]["status"] == "Talking")
    alice = talking.agents["1001"]
    assert alice["channel"] == "Local/1001@fsp-agents-00000001;1"
    assert (alice["call"]["direction"], alice["call"]["customer_number"]) == (
        "incoming",
        "5551234",
    )
    target = talking.resolve("1001")
    assert (target.ok, target.channel) == (True, "Local/1001@fsp-agents-00000001;1")
    assert moments[-1].agents["1001"]["status"] == "Idle"


def check_outgoing_call() -> None:
    # The sandbox's far end is ConfBridge room 5559876 (fsp-conf): the agent's ;1 half
    # dials it, alone there as far as AMI shows (the announcer has no snapshot), and
    # a 7-digit room reads as the agent's session while it sits in it.
    _, moments = replay("outgoing_call")
    dialled = first(moments, lambda m: m.resolve("1002").ok)
    (call,) = dialled.calls
    assert (call["direction"], call["customer_number"]) == ("outgoing", "5559876")
    assert call["agents"] == ["1002"]
    assert dialled.resolve("1002").channel == "Local/1002@fsp-agents-00000002;1"
    assert dialled.agents["1002"]["channel"] == "Local/1002@fsp-agents-00000002;1"
    assert moments[-1].agents["1002"]["session_id"] == "8600001"


def check_blind_transfer() -> None:
    _, moments = replay("blind_transfer")
    before = first(moments, lambda m: m.agents["1001"]["status"] == "Talking")
    assert before.agents["1001"]["channel"] == "Local/1001@fsp-agents-0000000e;1"
    after = first(moments, lambda m: m.agents["1002"]["status"] == "Talking")
    assert after.agents["1001"]["status"] == "Idle"
    bob = after.agents["1002"]
    assert bob["channel"] == "Local/1002@fsp-agents-0000000f;1"
    assert bob["call"]["id"] == before.agents["1001"]["call"]["id"] == "1795237500.26"
    assert after.resolve("1001").reason == "not_on_call"
    assert after.resolve("1002").channel == "Local/1002@fsp-agents-0000000f;1"


def check_confbridge_session() -> None:
    _, moments = replay("confbridge_session")
    seated = first(moments, lambda m: m.agents["1003"]["session_id"] == "9600001")
    assert seated.agents["1003"]["status"] == "Idle"  # alone in the room, waiting
    # The agent dialled into the room: its ;2 half sits there, ;1 is the handset.
    target = seated.resolve("9600001")
    assert (target.ok, target.agent_number, target.channel) == (
        True,
        "1003",
        "Local/1003@fsp-agents-00000006;2",
    )
    joined = first(moments, lambda m: m.agents["1003"]["status"] == "Talking")
    assert joined.resolve("1003").channel == "Local/1003@fsp-agents-00000006;2"
    assert moments[-1].agents["1003"]["session_id"] != "9600001"
    assert moments[-1].resolve("9600001").reason == "not_found"


def check_queue_call_paused_mid_call() -> None:
    _, moments = replay("queue_call_paused_mid_call", logged_in_by="login")
    answered = first(moments, lambda m: m.agents["1002"]["status"] == "Talking")
    assert answered.agents["1002"]["call"]["direction"] == "incoming"
    member = first(moments, lambda m: m.agents["1002"]["logged_in"])
    session = member.agents["1002"]["session_id"]
    assert session == "8600000"
    paused = first(moments, lambda m: m.agents["1002"]["paused"])
    bob = paused.agents["1002"]
    assert (bob["status"], bob["session_id"]) == ("Paused", session)
    assert bob["call"]["customer_number"] == "5559876"  # still on the call
    assert bob["channel"] == "Local/1002@fsp-agents-00000005;1"
    assert paused.resolve(session).channel == "Local/1002@fsp-agents-00000005;1"
    after_call = first(moments, lambda m: m.event == "QueueMemberStatus" and not m.calls)
    assert after_call.agents["1002"]["status"] == "Paused"
    bob = moments[-1].agents["1002"]
    assert (bob["logged_in"], bob["session_id"]) == (False, None)
    assert moments[-1].resolve("1002").reason == "not_logged_in"


def check_ringing_then_hangup() -> None:
    _, moments = replay("ringing_then_hangup")
    ringing = first(moments, lambda m: m.agents["1001"]["status"] == "Ringing")
    assert ringing.agents["1001"]["channel"] == "Local/1001@fsp-agents-ringing-0000000c;1"
    assert ringing.resolve("1001").reason == "not_on_call"
    alice = moments[-1].agents["1001"]
    assert (alice["status"], alice["call"], alice["channel"]) == ("Idle", None, None)
    assert moments[-1].calls == []


def check_varset_session() -> None:
    _, moments = replay("varset_session")
    named = first(moments, lambda m: m.agents["1001"]["session_id"] == "8600051")
    talking = first(
        moments[moments.index(named) :], lambda m: m.agents["1001"]["status"] == "Talking"
    )
    target = talking.resolve("8600051")
    assert (target.ok, target.agent_number, target.channel) == (
        True,
        "1001",
        "Local/1001@fsp-agents-0000000a;1",
    )
    # The session outlives the call's channels: it is the agent's, not the channel's.
    assert moments[-1].agents["1001"]["session_id"] == "8600051"
    assert moments[-1].resolve("8600051").reason == "not_on_call"


def check_agents_10_and_100() -> None:
    _, moments = replay("agents_10_and_100")
    both = first(
        moments,
        lambda m: m.agents["10"]["status"] == m.agents["100"]["status"] == "Talking",
    )
    ten, hundred = both.resolve("10"), both.resolve("100")
    assert ten.channel == "Local/10@fsp-agents-00000012;1"
    assert hundred.channel == "Local/100@fsp-agents-00000013;1"
    assert both.agents["10"]["call"]["customer_number"] == "5551234"
    assert both.agents["100"]["call"]["customer_number"] == "5559876"


def check_dialer_call() -> None:
    # VICIdial's outbound topology: agent 1003 waits in room 9600001; the dialler originates
    # Local/5551234@fsp-dialer with the campaign's caller id and, once the customer answers,
    # sends that leg into the agent's room (fsp-conf, 9600001).
    _, moments = replay("dialer_call", dialer_contexts=frozenset({"fsp-dialer"}))
    login = first(moments, lambda m: len(m.calls) == 1).calls[0]["id"]  # the agent's own leg
    joined = [m for m in moments if m.event == "ConfbridgeJoin"][-1]  # the customer's leg
    call = joined.agents["1003"]["call"]
    assert joined.agents["1003"]["status"] == "Talking" and call["id"] != login
    assert (call["direction"], call["customer_number"], call["customer_name"]) == (
        "outgoing", "5551234", "")
    assert joined.resolve("9600001").agent_number == "1003"
    # Without the rule the same call reads as coming in from the campaign's caller id:
    # the reason the rule exists.
    _, plain = replay("dialer_call")
    seen = {(c["direction"], c["customer_number"]) for m in plain for c in m.calls
            if c["id"] == call["id"]}
    assert ("incoming", "3125550000") in seen and {d for d, _ in seen} == {"incoming"}


CHECKS: dict[str, Callable[[], None]] = {
    "incoming_call_answered": check_incoming_call_answered,
    "outgoing_call": check_outgoing_call,
    "blind_transfer": check_blind_transfer,
    "confbridge_session": check_confbridge_session,
    "queue_call_paused_mid_call": check_queue_call_paused_mid_call,
    "ringing_then_hangup": check_ringing_then_hangup,
    "varset_session": check_varset_session,
    "agents_10_and_100": check_agents_10_and_100,
    "dialer_call": check_dialer_call,
}


@pytest.mark.parametrize("name", RECORDINGS)
def test_recording_replays_to_the_state_its_name_describes(name: str) -> None:
    """Replay one sandbox recording and check the moments its story is about."""
    CHECKS[name]()
