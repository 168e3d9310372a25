"""The Twisted AMI protocol and client with StringTransport and task.Clock."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport, StringTransportWithDisconnection
from twisted.logger import LogLevel
from twisted.python.failure import Failure

from fastagi_spy.net.ami import (
    AMIClient,
    AMIConnectionLost,
    AMICredentials,
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


class FakeAsterisk(Protocol):
    """Answers AMI like Asterisk: banner, Challenge, Login (refused or accepted), lists, Ping."""

    def __init__(self, accept_login: bool, banner: bool = True) -> None:
        self.accept_login = accept_login
        self.send_banner = banner
        self.buffer = b""

    def connectionMade(self) -> None:
        if self.send_banner:
            self.transport.write(b"Asterisk Call Manager/11.0.0\r\n")

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            block, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            fields = dict(line.split(": ", 1) for line in block.decode().split("\r\n"))
            self.transport.write(self.answer(fields["Action"], fields["ActionID"]).encode())

    def answer(self, action: str, aid: str) -> str:
        if action == "Challenge":
            return f"Response: Success\r\nActionID: {aid}\r\nChallenge: 123\r\n\r\n"
        if action == "Login" and not self.accept_login:
            return f"Response: Error\r\nActionID: {aid}\r\nMessage: Authentication failed\r\n\r\n"
        if action in ("CoreShowChannels", "QueueStatus"):
            return (f"Response: Success\r\nActionID: {aid}\r\nEventList: start\r\n\r\n"
                    f"Event: Done\r\nActionID: {aid}\r\nEventList: Complete\r\n\r\n")
        return f"Response: Success\r\nActionID: {aid}\r\n\r\n"


class Loopback(StringTransport):
    """One end of an in-memory connection. Bytes and the close travel on the clock, as they
    do through a reactor: ``loseConnection`` returns before ``connectionLost`` runs."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.peer: Loopback
        self.protocol: Any = None

    def write(self, data: bytes) -> None:
        if not self.disconnecting:
            self.clock.callLater(0, lambda: self.peer.protocol.dataReceived(data))

    def loseConnection(self) -> None:
        if not self.disconnecting:
            self.disconnecting = self.peer.disconnecting = True
            self.clock.callLater(0, self._lost)

    abortConnection = loseConnection

    def _lost(self) -> None:
        for end in (self, self.peer):
            end.protocol.connectionLost(Failure(ConnectionDone()))


class FakeAMIEndpoint:
    """Connects to a fresh FakeAsterisk each time; ``accept_login`` may change between tries."""

    def __init__(self, clock: Clock, accept_login: bool = False, banner: bool = True) -> None:
        self.clock = clock
        self.accept_login = accept_login
        self.banner = banner
        self.servers: list[FakeAsterisk] = []

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        client, server = factory.buildProtocol(None), FakeAsterisk(self.accept_login, self.banner)
        ours, theirs = Loopback(self.clock), Loopback(self.clock)
        ours.peer, theirs.peer, ours.protocol, theirs.protocol = theirs, ours, client, server
        self.servers.append(server)
        server.makeConnection(theirs)
        client.makeConnection(ours)
        return defer.succeed(client)

    def finished(self) -> int:
        """How many connections have closed (or are closing)."""
        return sum(1 for server in self.servers if server.transport.disconnecting)


def run_for(clock: Clock, seconds: float, step: float = 0.5) -> None:
    for _ in range(int(seconds / step)):
        clock.advance(0)
        clock.advance(0)
        clock.advance(step)


@pytest.fixture
def log_events() -> Iterator[list[dict[str, Any]]]:
    from twisted.logger import globalLogPublisher

    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    yield seen
    globalLogPublisher.removeObserver(seen.append)


def warnings_and_worse(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    loud = {LogLevel.warn, LogLevel.error, LogLevel.critical}
    return [e for e in events if e.get("log_level") in loud]


def test_refused_login_is_one_clear_line_per_retry_and_no_traceback(
    log_events: list[dict[str, Any]],
) -> None:
    """Every refused login is exactly one error line naming the fix; no event carries a
    failure (ClientService used to log a NoTransition traceback for each refusal)."""
    clock = Clock()
    endpoint = FakeAMIEndpoint(clock, accept_login=False)
    client = AMIClient("pbx", endpoint, AMICredentials("fsp", "wrong"), clock,  # type: ignore[arg-type]
                       max_backoff=2.0)
    client.start()
    run_for(clock, 30)
    tries = endpoint.finished()  # the one in progress, if any, is ended by stop()
    stopped = client.stop()
    run_for(clock, 1)
    assert stopped.called
    assert tries >= 5
    assert [e for e in log_events if "log_failure" in e] == []
    loud = warnings_and_worse(log_events)
    assert len(loud) == tries
    assert all(e["log_level"] == LogLevel.error and "refused" in e["log_format"]
               and "ami_secret" in e["log_format"] for e in loud)
    assert not client.ready
    assert clock.getDelayedCalls() == []  # stopped: no retry left behind


def test_login_accepted_after_refusals_resyncs_and_reconnects_after_a_drop(
    log_events: list[dict[str, Any]],
) -> None:
    """Once the secret is right the client logs in and runs on_ready; a dropped connection
    calls on_down and is re-established; stop() ends it without another try."""
    clock = Clock()
    endpoint = FakeAMIEndpoint(clock, accept_login=False)
    ready: list[int] = []
    down: list[int] = []
    client = AMIClient("pbx", endpoint, AMICredentials("fsp", "s3cret"), clock,  # type: ignore[arg-type]
                       max_backoff=2.0, on_ready=lambda c: ready.append(1),
                       on_down=lambda c: down.append(1))
    client.start()
    run_for(clock, 5)
    assert not client.ready and ready == []
    endpoint.accept_login = True
    run_for(clock, 5)
    assert client.ready and ready == [1]
    endpoint.servers[-1].transport.loseConnection()  # Asterisk restarts
    run_for(clock, 5)
    assert down == [1] and ready == [1, 1] and client.ready
    tries = len(endpoint.servers)
    stopped = client.stop()
    run_for(clock, 5)
    assert stopped.called and not client.ready and down == [1, 1]
    assert len(endpoint.servers) == tries
    assert [e for e in log_events if "log_failure" in e] == []


def test_no_banner_is_a_timeout_and_a_retry(log_events: list[dict[str, Any]]) -> None:
    """A peer that accepts TCP but never speaks AMI costs one warning per try, not a hang."""
    clock = Clock()
    endpoint = FakeAMIEndpoint(clock, banner=False)
    client = AMIClient("pbx", endpoint, AMICredentials("fsp", "s"), clock,  # type: ignore[arg-type]
                       max_backoff=1.0, login_timeout=3.0)
    client.start()
    run_for(clock, 20)
    tries = endpoint.finished()
    client.stop()
    run_for(clock, 1)
    loud = warnings_and_worse(log_events)
    assert tries >= 3
    assert len(loud) == tries
    assert all("no AMI banner" in str(e.get("error")) for e in loud)


def test_stop_then_start_runs_one_loop() -> None:
    """Restarting at once does not leave the old loop reconnecting beside the new one."""
    clock = Clock()
    endpoint = FakeAMIEndpoint(clock, accept_login=True)
    client = AMIClient("pbx", endpoint, AMICredentials("fsp", "s"), clock,  # type: ignore[arg-type]
                       max_backoff=1.0)
    client.start()
    run_for(clock, 2)
    assert client.ready and len(endpoint.servers) == 1
    client.stop()
    client.start()
    run_for(clock, 10)
    assert client.ready and len(endpoint.servers) == 2
    stopped = client.stop()
    run_for(clock, 2)
    assert stopped.called and not client.ready and clock.getDelayedCalls() == []
