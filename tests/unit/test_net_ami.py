"""The Twisted AMI protocol and client with StringTransport and task.Clock."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection

from fastagi_spy.net.ami import (
    AMIClient,
    AMIConnectionLost,
    AMICredentials,
    AMILoginRefused,
    AMIProtocol,
    AMITimeout,
)
from fastagi_spy.wire.ami import ActionResult, AMIMessage
from fastagi_spy.wire.errors import LocalProtocolError


def connect(events: list[AMIMessage] | None = None, clock: Clock | None = None) -> tuple[AMIProtocol, StringTransportWithDisconnection, Clock]:
    clock = clock or Clock()
    seen = events if events is not None else []
    proto = AMIProtocol(clock, seen.extend, "t")
    transport = StringTransportWithDisconnection()
    transport.protocol = proto
    proto.makeConnection(transport)
    proto.dataReceived(b"Asterisk Call Manager/11.0.0\r\n")
    return proto, transport, clock


def reply(proto: AMIProtocol, text: str) -> None:
    proto.dataReceived(text.replace("\n", "\r\n").encode())


def test_replies_are_matched_by_action_id_not_by_order() -> None:
    """Two actions answered out of order each get their own reply."""
    proto, _, _ = connect()
    first = proto.send_action("Ping")
    second = proto.send_action("Ping")
    got: dict[str, ActionResult] = {}
    first.addCallback(lambda r: got.setdefault("first", r))
    second.addCallback(lambda r: got.setdefault("second", r))
    reply(proto, "Response: Success\nActionID: t-2\nPing: Pong\nTimestamp: 2\n\n")
    reply(proto, "Response: Success\nActionID: t-1\nPing: Pong\nTimestamp: 1\n\n")
    assert got["first"].response.get("Timestamp") == "1"
    assert got["second"].response.get("Timestamp") == "2"


def test_event_list_is_collected_and_unrelated_events_still_dispatched() -> None:
    """CoreShowChannels items come back as one result; a Newchannel in between is an event."""
    events: list[AMIMessage] = []
    proto, _, _ = connect(events)
    d = proto.send_action("CoreShowChannels")
    results: list[ActionResult] = []
    d.addCallback(results.append)
    reply(proto, "Response: Success\nActionID: t-1\nEventList: start\nMessage: Channels will follow\n\n"
                 "Event: CoreShowChannel\nActionID: t-1\nChannel: Local/a-1;1\n\n"
                 "Event: Newchannel\nChannel: PJSIP/9-1\nUniqueid: 9.1\n\n"
                 "Event: CoreShowChannel\nActionID: t-1\nChannel: Local/a-1;2\n\n"
                 "Event: CoreShowChannelsComplete\nActionID: t-1\nEventList: Complete\nListItems: 2\n\n")
    assert [e.get("Channel") for e in results[0].events] == ["Local/a-1;1", "Local/a-1;2"]
    assert [e.event for e in events] == ["Newchannel"]


def test_a_read_is_one_batch_split_where_an_action_ends() -> None:
    """Events of one read reach the listener together, in order; those before an action's
    reply are delivered before its waiter runs, those after it in a batch of their own."""
    batches: list[list[str | None]] = []
    order: list[str] = []
    clock = Clock()
    proto = AMIProtocol(clock, lambda events: (batches.append([e.event for e in events]),
                                               order.append("events")), "t")
    proto.makeConnection(StringTransportWithDisconnection())
    proto.dataReceived(b"Asterisk Call Manager/11.0.0\r\n")
    proto.send_action("Ping").addCallback(lambda _: order.append("reply"))
    reply(proto, "Event: Newchannel\nUniqueid: 1.1\n\nEvent: Newstate\nUniqueid: 1.1\n\n"
                 "Response: Success\nActionID: t-1\nPing: Pong\n\n"
                 "Event: Hangup\nUniqueid: 1.1\n\n")
    assert batches == [["Newchannel", "Newstate"], ["Hangup"]]
    assert order == ["events", "reply", "events"]


def test_action_timeout_fails_only_that_action() -> None:
    """No reply in time: AMITimeout; a late reply is ignored."""
    proto, _, clock = connect()
    d = proto.send_action("Status", timeout=2)
    failures: list[Any] = []
    d.addErrback(failures.append)
    clock.advance(2.1)
    assert failures and failures[0].check(AMITimeout)
    reply(proto, "Response: Success\nActionID: t-1\n\n")  # late: dropped quietly


def test_pending_actions_fail_on_disconnect_and_are_never_replayed() -> None:
    """A lost connection fails what was pending; nothing is re-sent on the next one."""
    proto, transport, _ = connect()
    d = proto.send_action("Originate", [("Channel", "Local/x@y")])
    failures: list[Any] = []
    d.addErrback(failures.append)
    transport.loseConnection()
    assert failures and failures[0].check(AMIConnectionLost)
    # A fresh protocol (the reconnect) starts with nothing queued.
    _, transport2, _ = connect()
    assert transport2.value() == b""


def test_keepalive_ping_without_pong_aborts_half_open_connection() -> None:
    """Ping every interval; no Pong within the timeout means the link is dead: abort."""
    proto, transport, clock = connect()
    proto.start_keepalive(10, 3)
    clock.advance(10)
    assert b"Action: Ping" in transport.value()
    assert transport.connected
    clock.advance(3.1)
    assert not transport.connected


def test_header_injection_is_refused_before_the_wire() -> None:
    """CR/LF in a header value raises; nothing is written."""
    proto, transport, _ = connect()
    transport.clear()
    with pytest.raises(LocalProtocolError, match="Channel"):
        proto.send_action("Originate", [("Channel", "Local/x@y\r\nAction: Command")])
    assert transport.value() == b""


def _client(clock: Clock, secret: str = "s3cret") -> AMIClient:
    return AMIClient("pbx", object(), AMICredentials("fsp", secret), clock)  # type: ignore[arg-type]


def test_md5_challenge_login() -> None:
    """Login sends Challenge, then Key = md5(challenge + secret), never the secret itself."""
    clock = Clock()
    client = _client(clock)
    proto, transport, _ = connect(clock=clock)
    done = defer.ensureDeferred(client._login(proto))
    assert b"Action: Challenge" in transport.value()
    transport.clear()
    reply(proto, "Response: Success\nActionID: t-1\nChallenge: 840415273\n\n")
    sent = transport.value().decode()
    assert f"Key: {hashlib.md5(b'840415273s3cret').hexdigest()}" in sent
    assert "s3cret" not in sent
    reply(proto, "Response: Success\nActionID: t-2\nMessage: Authentication accepted\n\n")
    assert done.called and not isinstance(done.result, Exception)


def test_refused_login_raises_and_is_logged_once(caplog: Any) -> None:
    """Two refusals in a row: both raise AMILoginRefused, the error is logged only once."""
    from twisted.logger import globalLogPublisher

    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        clock = Clock()
        client = _client(clock, "wrong")
        for _ in range(2):
            proto, _, _ = connect(clock=clock)
            d = defer.ensureDeferred(client._login(proto))
            failures: list[Any] = []
            d.addErrback(failures.append)
            reply(proto, "Response: Success\nActionID: t-1\nChallenge: 1\n\n")
            reply(proto, "Response: Error\nActionID: t-2\nMessage: Authentication failed\n\n")
            assert failures[0].check(AMILoginRefused)
    finally:
        globalLogPublisher.removeObserver(seen.append)
    errors = [e for e in seen if "refused" in str(e.get("log_format", ""))]
    assert len(errors) == 1
