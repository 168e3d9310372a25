"""Keeping the HTTP API standing under abuse: login throttling, a connection cap, idle timeouts.

Basic auth answers every guess, so without a limit a client could try passwords as fast as
the server answers. After ``failures`` wrong logins from one address within ``window``
seconds, that address gets 429 until the window ends, without its password being checked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IAddress
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.web.resource import Resource
from twisted.web.server import Site

from fastagi_spy.config import HttpLimits

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


class ConnectionCap(WrappingFactory[ProtocolWrapper]):
    """At most ``limit`` connections at once; one over the cap is closed at once."""

    log = Logger()
    noisy = False

    def __init__(self, wrapped: Site, limit: int) -> None:
        super().__init__(wrapped)  # type: ignore[no-untyped-call]
        self.limit = limit
        self.refused = 0

    # IProtocolFactory allows None: Twisted then closes the connection.
    def buildProtocol(self, addr: IAddress | None) -> ProtocolWrapper | None:  # type: ignore[override]
        if len(self.protocols) >= self.limit:
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                self.log.warn("HTTP API: {limit} connections open; refused {refused} so far",
                              limit=self.limit, refused=self.refused)
            return None
        return super().buildProtocol(addr)


def make_site(root: Resource, limits: HttpLimits, reactor: Any) -> ConnectionCap:
    """The HTTP factory: ``root`` behind the connection cap, idle connections timed out."""
    site = Site(root, timeout=limits.idle_timeout, reactor=reactor)
    return ConnectionCap(site, limits.max_connections)
