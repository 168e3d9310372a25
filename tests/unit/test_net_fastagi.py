"""The Twisted FastAGI server with StringTransport and task.Clock: no sockets, no real time."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import ip_network
from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure

from fastagi_spy.net.fastagi import (
    PROMPT_ALLOWANCE,
    AGICommandTimeout,
    AGIHangup,
    AGILimits,
    AGISession,
    FastAGIFactory,
    FastAGIProtocol,
    PeerServers,
)
from fastagi_spy.wire.agi import AGIEnvironment, AGIReply, encode_env

ENV = encode_env([
    ("agi_network", "yes"),
    ("agi_network_script", "route?x=1"),
    ("agi_channel", "PJSIP/2001-00000001"),
    ("agi_uniqueid", "1700000000.1"),
    ("agi_accountcode", ""),
])


@pytest.fixture
def log_events() -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    yield seen
    globalLogPublisher.removeObserver(seen.append)


def env(script: str = "route?x=1") -> bytes:
    return ENV.replace(b"route?x=1", script.encode())


class Harness:
    def __init__(self, handler: Any, script: bytes = ENV, *, factory: FastAGIFactory | None = None,
                 peer: str = "127.0.0.1") -> None:
        self.clock = Clock()
        if factory is None:
            factory = FastAGIFactory({"route": handler}, self.clock, mark_reached=False)
        factory.clock = self.clock
        self.factory = factory
        address = IPv4Address("TCP", peer, 40000)
        proto = factory.buildProtocol(address)
        assert proto is not None, f"{peer} refused"
        self.proto: FastAGIProtocol = proto
        self.transport = StringTransportWithDisconnection(peerAddress=address)
        self.transport.protocol = self.proto
        self.proto.makeConnection(self.transport)
        if script:
            self.proto.dataReceived(script)

    def sent(self) -> bytes:
        value = self.transport.value()
        self.transport.clear()
        return value


def test_known_script_runs_its_handler_with_the_env() -> None:
    """The route is chosen by the script path without its query; the handler sees the env."""
    seen: list[AGISession] = []

    async def handler(session: AGISession) -> None:
        seen.append(session)

    h = Harness(handler)
    assert seen[0].env.channel == "PJSIP/2001-00000001"
    assert seen[0].env.get("agi_accountcode") == ""
    assert not h.transport.connected  # handler returned: the AGI ends, dialplan continues


def test_unknown_script_is_refused_without_any_command() -> None:
    """An unknown script gets a clean close and not a single byte written."""
    h = Harness(lambda s: None, ENV.replace(b"route?x=1", b"nope"))
    assert h.transport.value() == b""
    assert not h.transport.connected


def test_one_command_at_a_time() -> None:
    """A second command while one is in flight is refused, not interleaved."""
    results: list[Any] = []

    async def handler(session: AGISession) -> None:
        first = session.command("ANSWER")
        try:
            await session.command("ANSWER")
        except Exception as exc:
            results.append(exc)
        results.append(await first)

    h = Harness(handler)
    assert h.sent() == b'ANSWER\n'
    h.proto.dataReceived(b"200 result=0\n")
    assert "another command" in str(results[0])
    assert isinstance(results[1], AGIReply) and results[1].result == "0"


def test_command_timeout_aborts_the_connection() -> None:
    """No reply within the timeout: the command fails and the connection is aborted."""
    failures: list[Failure] = []

    async def handler(session: AGISession) -> None:
        try:
            await session.command("GET DATA", "beep", "1000", "4", timeout=5)
        except AGICommandTimeout as exc:
            failures.append(Failure(exc))

    h = Harness(handler)
    h.clock.advance(4.9)
    assert not failures
    h.clock.advance(0.2)
    assert len(failures) == 1
    assert not h.transport.connected


def test_hangup_fails_pending_swallows_the_owed_reply_and_refuses_later_commands() -> None:
    """HANGUP is a notice, not a reply: pending fails, later commands never reach the wire."""
    outcome: list[str] = []

    async def handler(session: AGISession) -> None:
        try:
            await session.command("STREAM FILE", "beep", "")
        except AGIHangup:
            outcome.append("pending failed")
        try:
            await session.command("ANSWER")
        except AGIHangup:
            outcome.append("later refused")

    h = Harness(handler)
    assert h.sent().startswith(b"STREAM FILE")
    h.proto.dataReceived(b"HANGUP\n")
    assert outcome == ["pending failed", "later refused"]
    assert h.sent() == b""
    # The reply Asterisk still owes for STREAM FILE arrives and is not misattributed.
    h.proto.dataReceived(b"511 Command Not Permitted on a dead channel or intercept routine\n")
    assert not h.transport.connected


def test_hangup_between_commands_then_eof_is_clean() -> None:
    """HANGUP, then a second HANGUP and EOF (run_agi ends): the handler sees AGIHangup only."""
    errors: list[BaseException] = []

    async def handler(session: AGISession) -> None:
        await session.when_hung_up()
        try:
            await session.answer()
        except AGIHangup as exc:
            errors.append(exc)

    h = Harness(handler)
    h.proto.dataReceived(b"HANGUP\nHANGUP\n")
    h.transport.loseConnection()
    assert len(errors) == 1
    assert h.factory.sessions == set()


def test_garbage_from_asterisk_aborts_the_connection() -> None:
    """A reply line that is not AGI is a protocol error: abort, never guess."""

    async def handler(session: AGISession) -> None:
        await session.answer()

    h = Harness(handler)
    h.proto.dataReceived(b"<html>oops</html>\n")
    assert not h.transport.connected


def test_drain_refuses_new_calls_and_cuts_stragglers_after_the_limit() -> None:
    """Graceful shutdown: in-flight calls get the drain time, then are cut; new ones refused."""
    blocker: defer.Deferred[None] = defer.Deferred()

    async def handler(session: AGISession) -> None:
        await blocker

    h = Harness(handler)
    done = h.factory.drain(10)
    fired: list[object] = []
    done.addCallback(fired.append)
    late2 = FastAGIProtocol(h.factory)
    t2 = StringTransportWithDisconnection()
    t2.protocol = late2
    late2.makeConnection(t2)
    late2.dataReceived(ENV)
    assert not t2.connected  # refused while draining
    h.clock.advance(9)
    assert not fired
    h.clock.advance(2)
    assert not h.transport.connected


@pytest.mark.parametrize("arg", ["1001\nHANGUP", "x\r", "a\x00b"])
def test_injection_in_a_command_argument_is_refused(arg: str) -> None:
    """CR, LF or NUL in an argument never reaches Asterisk."""
    errors: list[BaseException] = []

    async def handler(session: AGISession) -> None:
        try:
            await session.set_variable("X", arg)
        except Exception as exc:
            errors.append(exc)

    h = Harness(handler)
    assert h.transport.value() == b""
    assert errors and "LocalProtocolError" in type(errors[0]).__name__


def test_reply_and_hangup_in_one_read_mark_the_line_gone_before_the_handler_resumes() -> None:
    """'200 result=-1' + HANGUP together: the handler sees hung_up when its reply arrives,
    and a follow-up prompt is refused without a byte written."""
    seen: list[object] = []

    async def handler(session: AGISession) -> None:
        reply = await session.exec("ChanSpy", "PJSIP/1001-00000001,quES")
        seen.append((reply.result, session.hung_up))
        try:
            await session.stream_file("feature-not-avail-line")
        except AGIHangup:
            seen.append("refused")

    h = Harness(handler)
    assert h.sent().startswith(b"EXEC")
    h.proto.dataReceived(b"200 result=-1\nHANGUP\n")
    assert seen == [("-1", True), "refused"]
    assert h.sent() == b""


# -- what the port accepts ------------------------------------------------------------------

PBX_PEERS = PeerServers({
    "a": [ip_network("10.0.0.5")],
    "b": [ip_network("10.0.0.5"), ip_network("10.0.1.0/24")],
    "c": [ip_network("10.0.0.6")],
})


def never_called(session: AGISession) -> Any:
    raise AssertionError("the handler must not run")


def test_a_peer_no_server_lists_is_closed_before_anything_is_read() -> None:
    """buildProtocol refuses it: Twisted closes the socket without a protocol to read with."""
    factory = FastAGIFactory({"route": never_called}, Clock(), peers=PBX_PEERS,
                             mark_reached=False)
    assert factory.buildProtocol(IPv4Address("TCP", "10.0.0.9", 4000)) is None
    assert factory.buildProtocol(IPv4Address("TCP", "10.0.2.1", 4000)) is None
    assert factory.buildProtocol(IPv4Address("TCP", "10.0.1.77", 4000)) is not None  # b's /24
    # An IPv4 Asterisk seen through a dual-stack listener is still itself.
    assert factory.buildProtocol(IPv6Address("TCP", "::ffff:10.0.0.6", 4000)) is not None
    assert factory.buildProtocol(IPv6Address("TCP", "::ffff:10.0.0.9", 4000)) is None
    assert factory.sessions == set()


def test_without_a_peer_table_only_loopback_may_connect() -> None:
    """A factory built with no servers (tests, benchmarks) still refuses the network."""
    factory = FastAGIFactory({"route": never_called}, Clock(),
                             mark_reached=False)
    assert factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 4000)) is None
    assert factory.buildProtocol(IPv4Address("TCP", "127.0.0.2", 4000)) is not None


def test_an_environment_block_that_never_ends_is_cut_at_the_env_timeout() -> None:
    """Half an env block, then nothing: closed after env_timeout, the handler never runs."""
    factory = FastAGIFactory({"route": never_called}, Clock(), limits=AGILimits(env_timeout=5),
                             mark_reached=False)
    h = Harness(never_called, ENV[:40], factory=factory)
    h.clock.advance(4.9)
    assert h.transport.connected
    h.clock.advance(0.2)
    assert not h.transport.connected
    assert h.transport.value() == b""


def test_an_env_block_in_time_stops_the_env_timer() -> None:
    """The env timeout only guards the env block: a call that runs longer is not cut by it."""
    blocker: defer.Deferred[None] = defer.Deferred()

    async def handler(session: AGISession) -> None:
        await blocker

    factory = FastAGIFactory({"route": handler}, Clock(), limits=AGILimits(env_timeout=5),
                             mark_reached=False)
    h = Harness(handler, factory=factory)
    h.clock.advance(60)
    assert h.transport.connected
    assert not h.clock.getDelayedCalls()
    blocker.callback(None)


def test_the_call_over_the_session_cap_is_closed_without_a_command_and_logged(
        log_events: list[dict[str, Any]]) -> None:
    """max_sessions=1: the second call gets no command (the bundle then plays its
    "all circuits busy" branch) and a warning names the cap; after the first ends, the
    next is served."""
    blocker: defer.Deferred[None] = defer.Deferred()
    started: list[str] = []

    async def handler(session: AGISession) -> None:
        started.append(session.env.channel)
        await blocker

    factory = FastAGIFactory({"route": handler}, Clock(), limits=AGILimits(max_sessions=1),
                             mark_reached=False)
    first = Harness(handler, factory=factory)
    second = Harness(handler, factory=factory)
    assert started == ["PJSIP/2001-00000001"]
    assert second.transport.value() == b""
    assert not second.transport.connected
    assert first.transport.connected
    assert any("max_agi_sessions" in str(e.get("log_format")) for e in log_events)
    blocker.callback(None)
    assert not first.transport.connected
    third = Harness(handler, factory=factory)
    assert len(started) == 2
    del third


def test_every_command_gets_the_configured_command_timeout() -> None:
    """ANSWER, SET VARIABLE: cut at limits.command_timeout, not at a built-in 30 s."""
    failures: list[BaseException] = []

    async def handler(session: AGISession) -> None:
        try:
            await session.answer()
        except AGICommandTimeout as exc:
            failures.append(exc)

    factory = FastAGIFactory({"route": handler}, Clock(), limits=AGILimits(command_timeout=7),
                             mark_reached=False)
    h = Harness(handler, factory=factory)
    h.clock.advance(6.9)
    assert not failures and h.transport.connected
    h.clock.advance(0.2)
    assert len(failures) == 1 and not h.transport.connected


@pytest.mark.parametrize("prompt, sounds", [("agent-pass", 1), ("vm-incorrect&agent-pass", 2)])
def test_get_data_waits_for_the_prompt_and_every_digit_on_top_of_the_command_timeout(
        prompt: str, sounds: int) -> None:
    """GET DATA answers after its prompts play and up to timeout_ms per digit: a supervisor
    typing slowly is never cut by the command timeout."""
    failures: list[BaseException] = []

    async def handler(session: AGISession) -> None:
        try:
            await session.get_data(prompt, 10000, 4)
        except AGICommandTimeout as exc:
            failures.append(exc)

    factory = FastAGIFactory({"route": handler}, Clock(), limits=AGILimits(command_timeout=7),
                             mark_reached=False)
    h = Harness(handler, factory=factory)
    assert h.sent().startswith(b"GET DATA")
    allowed = 7 + sounds * PROMPT_ALLOWANCE + 4 * 10
    h.clock.advance(allowed - 0.1)
    assert not failures and h.transport.connected
    h.clock.advance(0.2)
    assert len(failures) == 1 and not h.transport.connected


def test_stream_file_gets_the_prompt_allowance_on_top_of_the_command_timeout() -> None:
    failures: list[BaseException] = []

    async def handler(session: AGISession) -> None:
        try:
            await session.stream_file("agent-newlocation")
        except AGICommandTimeout as exc:
            failures.append(exc)

    factory = FastAGIFactory({"route": handler}, Clock(), limits=AGILimits(command_timeout=2),
                             mark_reached=False)
    h = Harness(handler, factory=factory)
    h.clock.advance(2 + PROMPT_ALLOWANCE - 0.1)
    assert not failures
    h.clock.advance(0.2)
    assert failures


@pytest.mark.parametrize("peer, script, server", [
    ("10.0.0.6", "route", "c"),  # the only server at that address
    ("10.0.0.5", "route?server=a", "a"),  # two servers share the address: the URL picks
    ("10.0.0.5", "route?server=b", "b"),
    ("10.0.1.9", "route?server=b", "b"),
])
def test_the_call_knows_its_server_from_its_peer_and_the_url(
        peer: str, script: str, server: str) -> None:
    seen: list[str | None] = []

    async def handler(session: AGISession) -> None:
        seen.append(session.server)

    factory = FastAGIFactory({"route": handler}, Clock(), peers=PBX_PEERS,
                             mark_reached=False)
    Harness(handler, env(script), factory=factory, peer=peer)
    assert seen == [server]


@pytest.mark.parametrize("peer, script, why", [
    ("10.0.0.6", "route?server=a", "does not match peer 10.0.0.6"),  # a's name, c's address
    ("10.0.0.5", "route?server=c", "does not match"),
    ("10.0.0.5", "route", "must name one"),  # a and b share it: never guess
    ("10.0.0.6", "route?server=c%0Ax", "bad server name"),
    ("10.0.0.6", "route?server=", "bad server name"),
])
def test_a_server_name_the_peer_may_not_speak_for_is_refused_and_reported(
        peer: str, script: str, why: str, log_events: list[dict[str, Any]]) -> None:
    """No command, the connection closed (the bundle plays its error), on_refused hears why."""
    refused: list[tuple[AGIEnvironment, str]] = []
    factory = FastAGIFactory({"route": never_called}, Clock(), peers=PBX_PEERS,
                             on_refused=lambda e, reason: refused.append((e, reason)))
    h = Harness(never_called, env(script), factory=factory, peer=peer)
    assert h.transport.value() == b""
    assert not h.transport.connected
    assert len(refused) == 1 and why in refused[0][1]
    assert refused[0][0].channel == "PJSIP/2001-00000001"
    assert any(e.get("reason") is not None and why in str(e["reason"]) for e in log_events)


def test_every_session_first_marks_the_channel_reached_then_runs_its_handler() -> None:
    """The bundle's fail-over reads FASTAGI_SPY_REACHED: it is set before the handler's
    first command, and the handler waits for its reply (one command at a time)."""
    ran: list[str] = []

    async def handler(session: AGISession) -> None:
        ran.append("handler")
        await session.answer()

    clock = Clock()
    h = Harness(handler, factory=FastAGIFactory({"route": handler}, clock))
    assert h.sent() == b'SET VARIABLE "FASTAGI_SPY_REACHED" "1"\n'
    assert ran == []
    h.proto.dataReceived(b"200 result=1\n")
    assert ran == ["handler"]
    assert h.sent() == b"ANSWER\n"


def test_a_refused_call_is_not_marked_reached() -> None:
    """Refused before any command (draining): no mark, so the bundle may try another server."""
    factory = FastAGIFactory({"route": lambda s: None}, Clock())
    factory.draining = True
    h = Harness(lambda s: None, factory=factory)
    assert h.transport.value() == b""
    assert not h.transport.connected
