"""Which spies of ours are running now, on which server and channel, and when each stops.

Fed with every AMI event of every server (by server name). A spy is ours while a flow of
ours watches its spyer uniqueid (``SpyWatches.watched``); its channel name and server come
from Asterisk's own ``ChanSpyStart``, so a hang-up at shutdown names exactly the channel
that runs ChanSpy. Anyone may wait for the ``ChanSpyStop`` of a spyer, ours or not (the
start-up reconciliation waits for the spies a crashed run left behind).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from twisted.internet import defer

from fastagi_spy.supervise.spywatch import Event


@dataclass(frozen=True)
class RunningSpy:
    server: str
    channel: str  # the spyer channel: our AGI call's, which runs ChanSpy
    uniqueid: str
    started_at: float


class RunningSpies:
    def __init__(self, ours: Callable[[str], bool], now: Callable[[], float]) -> None:
        self._ours = ours
        self._now = now
        self._running: dict[tuple[str, str], RunningSpy] = {}
        self._stop_waiters: dict[tuple[str, str], list[defer.Deferred[float]]] = {}
        # Called with each spy of ours as it starts (the shutdown hangs up late starters).
        self.on_start: Callable[[RunningSpy], None] | None = None

    def feed(self, server: str, event: Event) -> None:
        name = event.event
        if name not in ("ChanSpyStart", "ChanSpyStop"):
            return
        uniqueid = event.get("SpyerUniqueid") or ""
        key = (server, uniqueid)
        if name == "ChanSpyStart":
            channel = event.get("SpyerChannel") or ""
            if uniqueid and channel and self._ours(uniqueid):
                spy = RunningSpy(server, channel, uniqueid, self._time(event))
                self._running[key] = spy
                if self.on_start is not None:
                    self.on_start(spy)
            return
        self._running.pop(key, None)
        at = self._time(event)
        for waiter in self._stop_waiters.pop(key, []):
            waiter.callback(at)

    def running(self) -> list[RunningSpy]:
        """Our spies that started and have not stopped, while a flow still runs them."""
        return [spy for spy in self._running.values() if self._ours(spy.uniqueid)]

    def stopped(self, server: str, uniqueid: str) -> defer.Deferred[float]:
        """Fires with the time of the next ChanSpyStop of this spyer on this server."""
        key = (server, uniqueid)
        waiter: defer.Deferred[float] = defer.Deferred(
            lambda d: self._forget(key, d))  # cancelled (timed out): no longer waited for
        self._stop_waiters.setdefault(key, []).append(waiter)
        return waiter

    def _forget(self, key: tuple[str, str], waiter: defer.Deferred[float]) -> None:
        waiters = self._stop_waiters.get(key, [])
        if waiter in waiters:
            waiters.remove(waiter)
        if not waiters:
            self._stop_waiters.pop(key, None)

    def _time(self, event: Event) -> float:
        # manager.conf timestampevents=yes adds "Timestamp: 1732165000.123456".
        try:
            return float(event.get("Timestamp") or "")
        except ValueError:
            return self._now()
