"""The Twisted FastAGI server with StringTransport and task.Clock: no sockets, no real time."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.python.failure import Failure

from fastagi_spy.net.fastagi import (
    AGICommandTimeout,
    AGIHangup,
    AGISession,
    FastAGIFactory,
    FastAGIProtocol,
)
from fastagi_spy.wire.agi import AGIReply, encode_env

ENV = encode_env([
    ("agi_network", "yes"),
    ("agi_network_script", "route?x=1"),
    ("agi_channel", "PJSIP/2001-00000001"),
    ("agi_uniqueid", "1700000000.1"),
    ("agi_accountcode", ""),
])


class Harness:
    def __init__(self, handler: Any, script: bytes = ENV) -> None:
        self.clock = Clock()
        self.factory = FastAGIFactory({"route": handler}, self.clock)
        self.proto: FastAGIProtocol = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        self.transport = StringTransportWithDisconnection()
        self.transport.protocol = self.proto
        self.proto.makeConnection(self.transport)
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
