"""Driving a Resource tree through the real twisted.web Site over a StringTransport, and a
stand-in for the web sessions (who is signed in, whether the CSRF token matched)."""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from fastagi_spy.domain import SupervisorEntry

CSRF = "csrf-0123456789"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: str


@dataclass
class FakeGate:
    """Signed in as ``person`` (None: nobody); the scope check is the person's own flag,
    as web/scopes.py's; the CSRF token is right when the header carries CSRF."""

    person: SupervisorEntry | None = None
    asked: list[str | None] = field(default_factory=list)

    def require(self, request: Request, scope: str | None) -> SupervisorEntry | None:
        self.asked.append(scope)
        if self.person is None:
            request.setResponseCode(302)
            request.setHeader("location", "/login")
            return None
        if scope is not None and not getattr(self.person, scope):
            request.setResponseCode(403)
            return None
        return self.person

    def csrf_ok(self, request: Request) -> bool:
        return request.getHeader("x-csrf-token") == CSRF

    def csrf_token(self, request: Request) -> str:
        return CSRF


def page(title: str, person: SupervisorEntry, body: str, scripts: list[str],
         csrf: str) -> bytes:
    return f"<title>{title}</title><main>{body}</main>".encode()


def http(root: Resource, method: str, path: str, body: str = "",
         headers: dict[str, str] | None = None, clock: Clock | None = None) -> Reply:
    """One request on a fresh connection; the reply once the resource has finished it
    (a resource that answers later: call again with ``pending``'s transport)."""
    site = Site(root, reactor=clock or Clock())
    proto = site.buildProtocol(IPv4Address("TCP", "127.0.0.2", 40000))
    assert proto is not None
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.2", 40000))
    proto.makeConnection(transport)
    lines = [f"{method} {path} HTTP/1.1", "Host: x", "Connection: close",
             f"Content-Length: {len(body.encode())}"]
    if body:
        lines.append("Content-Type: application/x-www-form-urlencoded")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    proto.dataReceived(("\r\n".join(lines) + "\r\n\r\n" + body).encode())
    raw = transport.value().decode(errors="replace")
    proto.connectionLost(Failure(ConnectionDone()))
    head, _, rest = raw.partition("\r\n\r\n")
    status_line, *header_lines = head.split("\r\n")
    found = {k.lower(): v for k, _, v in (h.partition(": ") for h in header_lines)}
    if found.get("transfer-encoding") == "chunked":
        rest = _unchunk(rest)
    return Reply(int(status_line.split(" ")[1]), found, rest)


def _unchunk(data: str) -> str:
    out = []
    while data:
        size_text, _, data = data.partition("\r\n")
        size = int(size_text or "0", 16)
        if size == 0:
            break
        out.append(data[:size])
        data = data[size + 2:]
    return "".join(out)
