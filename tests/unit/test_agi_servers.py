"""A FastAGI call knows its Asterisk server, and targets resolve on that server only.

The real service (config, FastAGI factory, supervision flow, SQLite audit) with a fake
transport and a scripted Asterisk; only the PIN hash and the live map are stand-ins.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection

from fastagi_spy.config import load
from fastagi_spy.domain import AgentEntry, Directory
from fastagi_spy.model import LiveMap, ModelConfig, Resolution
from fastagi_spy.service import SpyService
from fastagi_spy.store.audit import AuditRecord
from fastagi_spy.wire.agi import encode_env
from fastagi_spy.wire.ami import AMIMessage

CONFIG = """
[server]
pin_pepper = "unit-test-pepper-0123456789"
database = "spy.sqlite3"

[[asterisk]]
name = "a"
ami_host = "10.0.0.5"
ami_username = "u"
ami_secret = "s"

[[asterisk]]
name = "b"
ami_host = "10.0.0.6"
ami_username = "u"
ami_secret = "s"
agi_peers = ["10.0.0.6", "10.0.0.5"]

[[agents]]
number = "1001"
team = "sales"
devices = ["PJSIP/1001"]

[[supervisors]]
number = "2001"
teams = ["sales"]
modes = ["listen"]
devices = ["PJSIP/2001"]
"""

ON_B = Resolution(True, "ok", "b", "1001", "8600001", "PJSIP/1001-00000007", "1700000000.7")


@dataclass
class FakeResolver:
    """Answers per (target, server); remembers every question."""

    answers: dict[tuple[str, str | None], Resolution] = field(default_factory=dict)
    asked: list[tuple[str, str | None]] = field(default_factory=list)

    def resolve(self, target: str, server: str | None = None) -> Resolution:
        self.asked.append((target, server))
        return self.answers.get((target, server), Resolution.refuse("not_found"))


@pytest.fixture
def service(tmp_path: Path) -> Iterator[SpyService]:
    path = tmp_path / "spy.toml"
    path.write_text(CONFIG)
    spy = SpyService(load(path), reactor)
    spy.agi.clock = Clock()  # command timeouts never touch the real reactor

    async def any_pin_is_right(*_args: object) -> bool:  # (the signature is the worker's)
        return True

    spy.flow.deps.verify_pin = any_pin_is_right
    yield spy
    spy.stores.db.close()


class Asterisk:
    """One FastAGI connection from ``peer``, scripted command by command."""

    def __init__(self, service: SpyService, peer: str, script: str, target: str) -> None:
        address = IPv4Address("TCP", peer, 40000)
        proto = service.agi.buildProtocol(address)
        assert proto is not None
        self.transport = StringTransportWithDisconnection(peerAddress=address)
        self.transport.protocol = proto
        proto.makeConnection(self.transport)
        self.proto = proto
        proto.dataReceived(encode_env([
            ("agi_network", "yes"), ("agi_network_script", script),
            ("agi_channel", "PJSIP/2001-00000001"), ("agi_uniqueid", "1700000000.1"),
            ("agi_arg_1", target)]))
        # The session-start mark (the bundle's fail-over reads it) comes before the flow.
        if self.transport.value().startswith(b'SET VARIABLE "FASTAGI_SPY_REACHED"'):
            self.transport.clear()
            proto.dataReceived(b"200 result=1\n")

    def expect(self, command: str, reply: str) -> None:
        sent = self.transport.value().decode()
        self.transport.clear()
        assert sent.startswith(command), sent
        self.proto.dataReceived(reply.encode())


def last_record(service: SpyService, offset: int = 0) -> AuditRecord:
    return service.stores.audit.list(limit=offset + 1)[offset]


def sign_in(call: Asterisk) -> None:
    call.expect("ANSWER", "200 result=0\n")
    call.expect('GET DATA "agent-pass"', "200 result=1234\n")


def test_a_target_on_another_server_is_refused_with_a_prompt_and_audited(
        service: SpyService) -> None:
    """The call comes from a's address: 1001 is looked up on a; it is on a call on b, so the
    supervisor hears "not available" and the record says other_server."""
    resolver = FakeResolver({("1001", "b"): ON_B})
    service.flow.deps.resolver = resolver
    call = Asterisk(service, "10.0.0.5", "spy/listen?server=a", "1001")
    sign_in(call)
    call.expect('STREAM FILE "feature-not-avail-line"', "200 result=0 endpos=8000\n")
    call.expect('GET DATA "agent-newlocation"', "HANGUP\n")
    assert resolver.asked[0] == ("1001", "a")
    refused = last_record(service, 1)
    assert refused.end_reason == "denied" and refused.detail == "other_server b"
    assert refused.requested_target == "1001" and refused.resolved_channel is None
    assert b"ChanSpy" not in call.transport.value()


def test_the_server_of_the_call_is_the_one_targets_resolve_on(service: SpyService) -> None:
    """From b's own address (b alone lists 10.0.0.6) the spy runs on b's channel."""
    resolver = FakeResolver({("1001", "b"): ON_B})
    service.flow.deps.resolver = resolver
    call = Asterisk(service, "10.0.0.6", "spy/listen", "1001")
    sign_in(call)
    call.expect('EXEC "ChanSpy" "PJSIP/1001-00000007,', "200 result=-1\nHANGUP\n")
    assert resolver.asked == [("1001", "b")]


def test_a_target_not_on_a_call_anywhere_gets_this_server_s_answer(service: SpyService) -> None:
    """Only an answer that would spy counts as "lives elsewhere": not on a call on both
    servers is "not answering", not other_server."""
    not_on_call = Resolution.refuse("not_on_call", "a", "1001")
    resolver = FakeResolver({("1001", "a"): not_on_call,
                             ("1001", "b"): Resolution.refuse("not_on_call", "b", "1001")})
    service.flow.deps.resolver = resolver
    call = Asterisk(service, "10.0.0.5", "spy/listen?server=a", "1001")
    sign_in(call)
    call.expect('STREAM FILE "number-not-answering"', "200 result=0 endpos=8000\n")
    call.expect('GET DATA "agent-newlocation"', "HANGUP\n")
    assert last_record(service, 1).end_reason == "not_on_call"


def test_ambiguous_or_mismatched_server_names_are_refused_and_audited(service: SpyService) -> None:
    """10.0.0.5 is listed for a and b: with no name, or a name it is not listed for, the call
    is refused before any command and the audit log says why."""
    for script, why in (("spy/listen", "must name one"), ("spy/listen?server=c", "'c'")):
        call = Asterisk(service, "10.0.0.5", script, "1001")
        assert call.transport.value() == b"" and not call.transport.connected
        record = last_record(service)
        assert record.end_reason == "denied" and record.channel == "PJSIP/2001-00000001"
        assert record.detail is not None and why in record.detail
        assert record.ended_at is not None


def test_an_address_no_server_lists_never_gets_a_protocol(service: SpyService) -> None:
    assert service.agi.buildProtocol(IPv4Address("TCP", "10.0.0.7", 40000)) is None


# -- the live map: one stale server leaves the others' targets alone ----------------------------

def _session_on_a_call(live: LiveMap, server: str) -> str:
    """Agent 1001 on a call on ``server`` in a dialplan-set session; returns the session."""
    events = [
        {"Event": "Newchannel", "Channel": "PJSIP/1001-00000001", "Uniqueid": "1.1",
         "Linkedid": "1.1", "Context": "from-internal", "Exten": "5551234",
         "ChannelState": "6", "ChannelStateDesc": "Up", "CallerIDNum": "1001"},
        {"Event": "VarSet", "Channel": "PJSIP/1001-00000001", "Uniqueid": "1.1",
         "Variable": "FASTAGI_SPY_SESSION", "Value": "8600051"},
        {"Event": "Newchannel", "Channel": "PJSIP/trunk-00000002", "Uniqueid": "1.2",
         "Linkedid": "1.1", "Context": "from-trunk", "Exten": "s",
         "ChannelState": "6", "ChannelStateDesc": "Up", "CallerIDNum": "5551234"},
        {"Event": "BridgeEnter", "Channel": "PJSIP/1001-00000001", "Uniqueid": "1.1",
         "BridgeUniqueid": "br1", "Linkedid": "1.1"},
        {"Event": "BridgeEnter", "Channel": "PJSIP/trunk-00000002", "Uniqueid": "1.2",
         "BridgeUniqueid": "br1", "Linkedid": "1.1"},
    ]
    live.apply_many(server, [AMIMessage(tuple(e.items())) for e in events], 1.0)
    return "8600051"


def test_one_stale_server_never_refuses_a_session_on_a_healthy_one() -> None:
    """Asked across all servers, a 7-digit target is "stale" while any server is; asked on
    the call's own healthy server, as the flow now asks, it resolves."""
    directory = Directory((AgentEntry("1001", "Ann", "sales", ("PJSIP/1001",)),), (),
                          frozenset())
    rules = ModelConfig(trunk_contexts=frozenset({"from-trunk"}))
    live = LiveMap(directory, {"a": rules, "b": rules})
    session = _session_on_a_call(live, "a")
    live.mark_stale("b", 2.0)
    assert live.resolve(session).reason == "stale"  # why the flow must not ask this way
    found = live.resolve(session, server="a")
    assert found.ok and found.channel == "PJSIP/1001-00000001"
