"""The HTTP API's guards, driven through the real Site with fake transports and task.Clock."""

from __future__ import annotations

import base64
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from fastagi_spy.config import HttpLimits
from fastagi_spy.web.api import make_root
from fastagi_spy.web.guard import AuthThrottle, ConnectionCap, make_site
from tests.unit.people import people

LIMITS = HttpLimits(max_connections=3, idle_timeout=20.0, auth_failures=3, auth_window=60.0)


def api(clock: Clock, limits: HttpLimits = LIMITS) -> ConnectionCap:
    throttle = AuthThrottle(limits.auth_failures, limits.auth_window, clock.seconds)
    root = make_root(lambda: {"servers": {}}, people({"9001": "right-password"}).checker,
                     throttle)
    return make_site(root, limits, clock)


def connect(factory: ConnectionCap, host: str = "127.0.0.2") -> tuple[Any, StringTransport] | None:
    addr = IPv4Address("TCP", host, 40000)
    proto = factory.buildProtocol(addr)
    if proto is None:
        return None
    transport = StringTransport(peerAddress=addr)
    proto.makeConnection(transport)
    return proto, transport


def get(factory: ConnectionCap, password: str | None, host: str = "127.0.0.2") -> str:
    """One request on a fresh connection; the status line and headers of the answer."""
    connection = connect(factory, host)
    assert connection is not None
    proto, transport = connection
    auth = ""
    if password is not None:
        # "right" stands for the person's real password, anything else is a wrong one.
        secret = "right-password" if password == "right" else password
        token = base64.b64encode(f"9001:{secret}".encode()).decode()
        auth = f"Authorization: Basic {token}\r\n"
    proto.dataReceived(
        f"GET /api/live HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n".encode())
    assert transport.disconnecting  # "Connection: close" honoured
    proto.connectionLost(Failure(ConnectionDone()))
    return transport.value().decode(errors="replace")


def status(answer: str) -> int:
    return int(answer.split(" ", 2)[1])


def test_wrong_passwords_from_one_client_earn_429_without_a_password_check() -> None:
    """After 3 failures in the window the right password gets 429 too; another client is
    unaffected; once the window has passed the client may log in again."""
    clock = Clock()
    factory = api(clock)
    assert [status(get(factory, "guess")) for _ in range(3)] == [401, 401, 401]
    refused = get(factory, "right")
    assert status(refused) == 429
    assert "Retry-After: 60" in refused
    assert status(get(factory, "right", host="127.0.0.3")) == 200
    assert status(get(factory, None)) == 429  # no credentials: still refused, not counted
    clock.advance(61)
    assert status(get(factory, "right")) == 200


def test_no_credentials_is_not_a_failed_login() -> None:
    """A browser's first, credential-less request (401 + challenge) never locks anyone out."""
    clock = Clock()
    factory = api(clock)
    assert {status(get(factory, None)) for _ in range(10)} == {401}
    assert status(get(factory, "right")) == 200


def test_a_success_clears_the_count() -> None:
    clock = Clock()
    factory = api(clock)
    assert [status(get(factory, p)) for p in ("x", "x", "right", "x", "x")] == [401] * 2 + [200] + [401] * 2
    assert status(get(factory, "right")) == 200


def test_connections_over_the_cap_are_closed_at_once() -> None:
    """With 3 open, a 4th is refused; when one closes, a new one is accepted."""
    clock = Clock()
    factory = api(clock)
    open_ones = [connect(factory) for _ in range(3)]
    assert all(t is not None for t in open_ones)
    assert connect(factory) is None
    first = open_ones[0]
    assert first is not None
    first[0].connectionLost(Failure(ConnectionDone()))
    assert connect(factory) is not None


def test_idle_connections_time_out() -> None:
    """A connection that sends nothing is closed after http_idle_timeout seconds."""
    clock = Clock()
    factory = api(clock)
    connection = connect(factory)
    assert connection is not None
    transport = connection[1]
    clock.advance(19)
    assert not transport.disconnecting
    clock.advance(2)
    assert transport.disconnecting


def test_tracked_clients_are_bounded() -> None:
    """Failures from ever more addresses cannot grow memory without bound."""
    from fastagi_spy.web import guard

    clock = Clock()
    throttle = AuthThrottle(3, 60.0, clock.seconds)
    for n in range(guard.MAX_TRACKED_CLIENTS + 50):
        throttle.failed(f"127.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}")
    assert len(throttle._clients) <= guard.MAX_TRACKED_CLIENTS


def test_the_access_log_never_shows_a_password_from_the_query_string() -> None:
    """VICIdial clients send ``pass=`` in the URL: the access log line keeps the path, the
    status and the client, never the query string (nor a referer that could carry one)."""
    from twisted.logger import formatEvent, globalLogPublisher

    clock = Clock()
    factory = api(clock)
    lines: list[str] = []

    def observe(event: Any) -> None:
        lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    factory.doStart()  # opens the access log, as listening does
    try:
        connection = connect(factory)
        assert connection is not None
        proto = connection[0]
        proto.dataReceived(b"GET /api/live?user=9001&pass=Hunter2-secret HTTP/1.1\r\n"
                           b"Host: x\r\nReferer: http://x/p?pass=Hunter2-secret\r\n"
                           b"User-Agent: cli\"\x1b\r\nConnection: close\r\n\r\n")
        proto.connectionLost(Failure(ConnectionDone()))
    finally:
        factory.doStop()
        globalLogPublisher.removeObserver(observe)
    access = [line for line in lines if "/api/live" in line]
    assert len(access) == 1
    # Clock() starts at 0: the date is the epoch's. The size is the 401 page's, then "-" for
    # the referer and the user agent escaped (no bare quote, no raw escape byte).
    prefix = '"127.0.0.2" - - [01/Jan/1970:00:00:00 +0000] "GET /api/live HTTP/1.1" 401 '
    assert access[0].startswith(prefix)
    size, referer, agent = access[0][len(prefix):].split(" ")
    assert size.isdigit()
    assert (referer, agent) == ('"-"', '"cli\\"\\x1b"')
    assert not any("Hunter2" in line for line in lines)
