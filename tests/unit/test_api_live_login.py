"""/api/live logs people in through the PasswordChecker: VICIdial's lockout, not only the
per-address throttle, and a clear 503 when passwords cannot be checked."""

from __future__ import annotations

import base64

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from fastagi_spy.config import HttpLimits
from fastagi_spy.net.hashworker import HashWorkerTimeout
from fastagi_spy.web.api import make_root
from fastagi_spy.web.guard import AuthThrottle, ConnectionCap, make_site
from tests.unit.people import People, people

LIMITS = HttpLimits(max_connections=5, idle_timeout=20.0, auth_failures=100, auth_window=60.0)


def api(site: People, clock: Clock) -> ConnectionCap:
    throttle = AuthThrottle(LIMITS.auth_failures, LIMITS.auth_window, clock.seconds)
    return make_site(make_root(lambda: {"servers": {}}, site.checker, throttle), LIMITS, clock)


def get(factory: ConnectionCap, user: str, password: str) -> tuple[int, str]:
    addr = IPv4Address("TCP", "127.0.0.2", 40000)
    proto = factory.buildProtocol(addr)
    assert proto is not None
    transport = StringTransport(peerAddress=addr)
    proto.makeConnection(transport)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    proto.dataReceived(f"GET /api/live HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {token}\r\n"
                       f"Connection: close\r\n\r\n".encode())
    proto.connectionLost(Failure(ConnectionDone()))
    answer = transport.value().decode(errors="replace")
    return int(answer.split(" ", 2)[1]), answer


def test_a_person_with_the_right_password_sees_the_map() -> None:
    clock = Clock()
    factory = api(people({"9001": "right-password"}), clock)
    code, answer = get(factory, "9001", "right-password")
    assert code == 200 and '"servers"' in answer
    assert get(factory, "9001", "wrong-password")[0] == 401
    assert get(factory, "7777", "right-password")[0] == 401  # nobody of that name


def test_ten_wrong_passwords_lock_the_user_not_the_others() -> None:
    """The 11th login of 9001 is refused (403, VICIdial's words), right password or not;
    9002 logs in meanwhile; the password never appears in an answer."""
    clock = Clock()
    factory = api(people({"9001": "right-password", "9002": "other-password"}), clock)
    assert [get(factory, "9001", "wrong-password")[0] for _ in range(10)] == [401] * 10
    code, answer = get(factory, "9001", "right-password")
    assert code == 403 and "Too many login attempts, try again in 15 minutes" in answer
    assert "right-password" not in answer
    assert get(factory, "9002", "other-password")[0] == 200


def test_a_stuck_hash_worker_is_a_503_not_a_crash() -> None:
    clock = Clock()
    site = people({"9001": "right-password"})
    site.verifier.broken = HashWorkerTimeout("stuck")
    code, answer = get(api(site, clock), "9001", "right-password")
    assert code == 503 and "cannot check passwords now" in answer
