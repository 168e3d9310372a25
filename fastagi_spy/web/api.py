"""HTTP: the authenticated, read-only JSON snapshot of the live map (``GET /api/live``).

Basic auth checks a person's password through the same `PasswordChecker` as VICIdial's API
(hash in the worker, VICIdial's lockout); the per-address throttle (guard.py) comes first.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from fastagi_spy.supervise.passwords import LoginUnavailable, LoginVerdict, PasswordChecker
from fastagi_spy.web.guard import AuthThrottle

log = Logger()


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """The user and password of an ``Authorization: Basic`` header, if well formed."""
    header = request.getHeader("authorization") or ""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def send_json(request: Request, status: int, body: Any) -> bytes:
    request.setResponseCode(status)
    request.setHeader("content-type", "application/json")
    request.setHeader("cache-control", "no-store")
    return json.dumps(body, sort_keys=True).encode()


class LiveResource(Resource):
    """``GET /api/live``: agents, sessions and calls per server, for authenticated users."""

    isLeaf = True

    def __init__(
        self, snapshot: Callable[[], Any], checker: PasswordChecker, throttle: AuthThrottle
    ) -> None:
        Resource.__init__(self)
        self.snapshot = snapshot
        self.checker = checker
        self.throttle = throttle

    def render_GET(self, request: Request) -> bytes | int:
        client = client_address(request)
        wait = self.throttle.retry_after(client)
        if wait is not None:
            # Refused before the password is looked at: guessing on gains nothing.
            request.setHeader("retry-after", str(max(1, math.ceil(wait))))
            return send_json(request, 429, {"error": "too many failed logins; try later"})
        credentials = basic_credentials(request)
        if credentials is None:
            if request.getHeader("authorization") is not None:
                self.throttle.failed(client)
            return self._challenge(request)
        gone: list[bool] = []  # the client hung up while its password was being checked
        request.notifyFinish().addErrback(lambda _failure: gone.append(True))
        defer.ensureDeferred(self._answer(request, gone, client, *credentials)).addErrback(
            lambda failure: log.failure("GET /api/live failed", failure))
        return NOT_DONE_YET

    async def _answer(self, request: Request, gone: list[bool], client: str, user: str,
                      password: str) -> None:
        try:
            login = await self.checker.login(user, password, client)
        except LoginUnavailable:
            body = send_json(request, 503, {"error": "cannot check passwords now; try again"})
        else:
            if login.verdict is LoginVerdict.OK:
                self.throttle.succeeded(client)
                body = send_json(request, 200, self.snapshot())
            elif login.verdict is LoginVerdict.LOCKED:
                self.throttle.failed(client)  # still guessing: the address is throttled too
                body = send_json(request, 403, {
                    "error": "Too many login attempts, try again in 15 minutes"})
            else:
                self.throttle.failed(client)
                body = self._challenge(request)
        if not gone:
            request.write(body)
            request.finish()

    @staticmethod
    def _challenge(request: Request) -> bytes:
        request.setHeader("www-authenticate", 'Basic realm="fastagi-spy"')
        return send_json(request, 401, {"error": "authentication required"})


def client_address(request: Request) -> str:
    """The peer's IP address (not its port: a new connection must not be a new client)."""
    peer = request.getClientAddress()
    return peer.host if isinstance(peer, IPv4Address | IPv6Address) else str(peer)


def make_root(
    snapshot: Callable[[], Any], checker: PasswordChecker, throttle: AuthThrottle
) -> Resource:
    root = Resource()
    api = Resource()
    root.putChild(b"api", api)
    api.putChild(b"live", LiveResource(snapshot, checker, throttle))
    return root
