"""HTTP: the authenticated, read-only JSON snapshot of the live map (``GET /api/live``)."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.web.resource import Resource
from twisted.web.server import Request

from fastagi_spy.web.guard import AuthThrottle


def basic_user(request: Request, users: Mapping[str, str]) -> str | None:
    """The user of a valid ``Authorization: Basic`` header, compared in constant time."""
    header = request.getHeader("authorization") or ""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    expected = users.get(user)
    # Compare against something even for an unknown user, so timing says nothing.
    ok = hmac.compare_digest(password.encode(), (expected or "\0" * 16).encode())
    return user if ok and expected is not None else None


def send_json(request: Request, status: int, body: Any) -> bytes:
    request.setResponseCode(status)
    request.setHeader("content-type", "application/json")
    request.setHeader("cache-control", "no-store")
    return json.dumps(body, sort_keys=True).encode()


class LiveResource(Resource):
    """``GET /api/live``: agents, sessions and calls per server, for authenticated users."""

    isLeaf = True

    def __init__(
        self, snapshot: Callable[[], Any], users: Mapping[str, str], throttle: AuthThrottle
    ) -> None:
        Resource.__init__(self)
        self.snapshot = snapshot
        self.users = users
        self.throttle = throttle

    def render_GET(self, request: Request) -> bytes:
        client = client_address(request)
        wait = self.throttle.retry_after(client)
        if wait is not None:
            # Refused before the password is looked at: guessing on gains nothing.
            request.setHeader("retry-after", str(max(1, math.ceil(wait))))
            return send_json(request, 429, {"error": "too many failed logins; try later"})
        if basic_user(request, self.users) is None:
            if request.getHeader("authorization") is not None:
                self.throttle.failed(client)
            request.setHeader("www-authenticate", 'Basic realm="fastagi-spy"')
            return send_json(request, 401, {"error": "authentication required"})
        self.throttle.succeeded(client)
        return send_json(request, 200, self.snapshot())


def client_address(request: Request) -> str:
    """The peer's IP address (not its port: a new connection must not be a new client)."""
    peer = request.getClientAddress()
    return peer.host if isinstance(peer, IPv4Address | IPv6Address) else str(peer)


def make_root(
    snapshot: Callable[[], Any], users: Mapping[str, str], throttle: AuthThrottle
) -> Resource:
    root = Resource()
    api = Resource()
    root.putChild(b"api", api)
    api.putChild(b"live", LiveResource(snapshot, users, throttle))
    return root
