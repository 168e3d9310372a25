"""Keeping the HTTP API standing under abuse: login throttling, a connection cap, idle timeouts.

Basic auth answers every guess, so without a limit a client could try passwords as fast as
the server answers. After ``failures`` wrong logins from one address within ``window``
seconds, that address gets 429 until the window ends, without its password being checked.

Speed (the one place the HTTP server is tuned; ``bench/api_load.py`` measures it): the cap
counts connections in the Site's own ``buildProtocol`` and in the channel's
``connectionLost``, instead of wrapping every connection in a ``WrappingFactory`` proxy that
every read and write of every request would pass through. For the same reason the channel
is Twisted's ``HTTPChannel`` itself, not the HTTP/2-negotiating proxy ``Site`` puts around
it: HTTP/2 needs TLS with ALPN and the ``h2`` package, and this API speaks HTTP/1.1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IAddress
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel, Request
from twisted.web.resource import Resource
from twisted.web.server import Site

from fastagi_spy.config import HttpLimits

_log = Logger()

# Addresses remembered at once: a bound on memory whoever sends the failures.
MAX_TRACKED_CLIENTS = 10_000


@dataclass
class _Window:
    started: float
    failures: int


class AuthThrottle:
    """Failed Basic logins per client address, counted in fixed windows."""

    log = Logger()

    def __init__(self, failures: int, window: float, now: Callable[[], float]) -> None:
        self.limit = failures
        self.window = window
        self.now = now
        self._clients: dict[str, _Window] = {}

    def retry_after(self, client: str) -> float | None:
        """Seconds until ``client`` may try again, or None if it may try now."""
        entry = self._current(client)
        if entry is None or entry.failures < self.limit:
            return None
        return entry.started + self.window - self.now()

    def failed(self, client: str) -> None:
        entry = self._current(client)
        if entry is None:
            self._make_room()
            entry = self._clients[client] = _Window(self.now(), 0)
        entry.failures += 1
        if entry.failures == self.limit:
            self.log.warn("HTTP API: {failures} failed logins from {client}; refusing it for "
                          "{window:g} s", failures=self.limit, client=client, window=self.window)

    def succeeded(self, client: str) -> None:
        self._clients.pop(client, None)

    def _current(self, client: str) -> _Window | None:
        entry = self._clients.get(client)
        if entry is not None and self.now() - entry.started >= self.window:
            del self._clients[client]
            return None
        return entry

    def _make_room(self) -> None:
        if len(self._clients) < MAX_TRACKED_CLIENTS:
            return
        now = self.now()
        for client in [c for c, e in self._clients.items() if now - e.started >= self.window]:
            del self._clients[client]
        while len(self._clients) >= MAX_TRACKED_CLIENTS:  # all fresh: forget the oldest
            del self._clients[next(iter(self._clients))]


class _CountedChannel(HTTPChannel):
    """An HTTP/1.1 connection that tells its ConnectionCap when it is gone."""

    factory: ConnectionCap

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        try:
            super().connectionLost(reason)  # type: ignore[no-untyped-call]
        finally:
            self.factory.released(self)


class ConnectionCap(Site):
    """The HTTP site: at most ``limit`` connections at once, one over the cap closed at once."""

    # No ``log`` attribute here: HTTPFactory.log is the access log's method.
    noisy = False
    protocol = _CountedChannel  # type: ignore[assignment]

    def __init__(self, root: Resource, limit: int, timeout: float, reactor: Any) -> None:
        super().__init__(root, timeout=timeout, reactor=reactor,  # type: ignore[no-untyped-call]
                         logFormatter=access_log_line)
        self.limit = limit
        self.refused = 0
        # A set, not a count: a connection lost twice (or never counted) cannot skew it.
        self.open: set[HTTPChannel] = set()

    # IProtocolFactory allows None: Twisted then closes the connection.
    def buildProtocol(self, addr: IAddress | None) -> HTTPChannel | None:  # type: ignore[override]
        if len(self.open) >= self.limit:
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                _log.warn("HTTP API: {limit} connections open; refused {refused} so far",
                          limit=self.limit, refused=self.refused)
            return None
        channel: HTTPChannel = super().buildProtocol(addr)  # type: ignore[no-untyped-call]
        self.open.add(channel)
        return channel

    def released(self, channel: HTTPChannel) -> None:
        self.open.discard(channel)


def _escaped(raw: bytes) -> str:
    # Caller-controlled bytes, shown in a log line: escaped as Python shows bytes (no control
    # character, no non-ASCII), and no bare double quote to end the field early.
    return repr(raw)[2:-1].replace('"', '\\"')


def access_log_line(timestamp: str, request: Request) -> str:
    """Twisted's combined log line without the query string or the referer.

    A VICIdial client sends ``pass=`` in the query string (and a page's address may carry it
    into the referer): neither may reach the log. The path, method, code, size and user agent
    are what an operator reads an access log for.
    """
    peer = request.getClientAddress()
    ip = peer.host if isinstance(peer, IPv4Address | IPv6Address) else "-"
    agent = request.getHeader(b"user-agent") or b"-"
    return (f'"{ip}" - - {timestamp} "{_escaped(request.method)} {_escaped(request.path)} '
            f'{_escaped(request.clientproto)}" {request.code} {request.sentLength or "-"} '
            f'"-" "{_escaped(agent)}"')


def make_site(root: Resource, limits: HttpLimits, reactor: Any) -> ConnectionCap:
    """The HTTP factory: ``root`` behind the connection cap, idle connections timed out."""
    return ConnectionCap(root, limits.max_connections, limits.idle_timeout, reactor)
