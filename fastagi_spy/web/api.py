"""HTTP: the authenticated, read-only JSON snapshot of the live map (``GET /api/live``)."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Callable, Mapping
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Request


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

    def __init__(self, snapshot: Callable[[], Any], users: Mapping[str, str]) -> None:
        Resource.__init__(self)
        self.snapshot = snapshot
        self.users = users

    def render_GET(self, request: Request) -> bytes:
        if basic_user(request, self.users) is None:
            request.setHeader("www-authenticate", 'Basic realm="fastagi-spy"')
            return send_json(request, 401, {"error": "authentication required"})
        return send_json(request, 200, self.snapshot())


def make_root(snapshot: Callable[[], Any], users: Mapping[str, str]) -> Resource:
    root = Resource()
    api = Resource()
    root.putChild(b"api", api)
    api.putChild(b"live", LiveResource(snapshot, users))
    return root
