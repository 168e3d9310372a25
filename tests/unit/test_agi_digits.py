"""SAY DIGITS and WAIT FOR DIGIT: what goes out, and the key read back from the reply."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection

from fastagi_spy.net.fastagi import AGIHangup, AGISession, FastAGIFactory
from fastagi_spy.wire.agi import AGIReply, check_say_digits, dtmf_key, encode_env
from fastagi_spy.wire.errors import LocalProtocolError, RemoteProtocolError

ENV = encode_env([("agi_network", "yes"), ("agi_network_script", "route"),
                  ("agi_channel", "PJSIP/2001-00000001"), ("agi_uniqueid", "1700000000.1")])


def reply(line: str) -> AGIReply:
    result = line.removeprefix("200 result=") if line.startswith("200 ") else None
    return AGIReply(int(line[:3]), result, None, None, line)


@pytest.mark.parametrize(("line", "key"), [
    ("200 result=0", None), ("200 result=35", "#"), ("200 result=42", "*"),
    ("200 result=48", "0"), ("200 result=57", "9"), ("200 result=65", "A"),
])
def test_dtmf_key_reads_the_character_code(line: str, key: str | None) -> None:
    assert dtmf_key(reply(line)) == key


@pytest.mark.parametrize("line", ["200 result=120", "200 result=1000000", "200 result=x",
                                  "200 result=", "510 Invalid or unknown command"])
def test_dtmf_key_refuses_what_no_keypad_sends(line: str) -> None:
    with pytest.raises(RemoteProtocolError):
        dtmf_key(reply(line))


@pytest.mark.parametrize(("digits", "escape"), [
    ("", "#"), ("10a1", "#"), ("1" * 21, "#"), ("\u0661\u0662", "#"), ("1001", "#x"),
    ("1001", " "), ("-1", "#"),
])
def test_say_digits_arguments_are_digits_and_keypad_keys(digits: str, escape: str) -> None:
    with pytest.raises(LocalProtocolError):
        check_say_digits(digits, escape)


class Call:
    """One FastAGI call over a string transport; ``run`` starts ``body(session)``."""

    def __init__(self, body: Any) -> None:
        self.result: list[Any] = []

        async def handler(session: AGISession) -> None:
            try:
                self.result.append(await body(session))
            except Exception as exc:
                self.result.append(exc)

        self.clock = Clock()
        factory = FastAGIFactory({"route": handler}, self.clock, mark_reached=False)
        address = IPv4Address("TCP", "127.0.0.1", 40000)
        proto = factory.buildProtocol(address)
        assert proto is not None
        self.proto = proto
        self.transport = StringTransportWithDisconnection(peerAddress=address)
        self.transport.protocol = proto
        proto.makeConnection(self.transport)
        proto.dataReceived(ENV)

    def answer(self, line: str) -> bytes:
        sent = self.transport.value()
        self.transport.clear()
        self.proto.dataReceived(line.encode() + b"\n")
        return sent


def test_say_digits_sends_the_number_and_escape_keys_and_returns_the_key() -> None:
    call = Call(lambda s: s.say_digits("1002", "#0*"))
    assert call.answer("200 result=48") == b'SAY DIGITS "1002" "#0*"\n'
    assert call.result == ["0"]


def test_wait_for_digit_times_out_to_none_and_a_hangup_is_line_gone() -> None:
    quiet = Call(lambda s: s.wait_for_digit(4000))
    assert quiet.answer("200 result=0") == b'WAIT FOR DIGIT "4000"\n'
    assert quiet.result == [None]
    gone = Call(lambda s: s.wait_for_digit(4000))
    gone.answer("200 result=-1")
    assert isinstance(gone.result[0], AGIHangup)


def test_bad_digits_never_reach_asterisk() -> None:
    call = Call(lambda s: s.say_digits("1001,B", "#"))
    assert call.transport.value() == b""
    assert isinstance(call.result[0], LocalProtocolError)
    forever = Call(lambda s: s.wait_for_digit(-1))  # -1 would wait for ever
    assert forever.transport.value() == b""
    assert isinstance(forever.result[0], ValueError)
