"""Follows ChanSpyStart / ChanSpyStop / DTMF for the spies we started, by spyer uniqueid.

The audit log takes its start and stop times from these AMI events (Asterisk's own word on
when audio flowed), not from our idea of when EXEC ChanSpy began, and sees the 4/5/6 mode
switches the ``d`` option allows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from twisted.internet.defer import Deferred, succeed

from fastagi_spy.domain import Mode

_SWITCH_DIGITS = {"4": Mode.LISTEN, "5": Mode.WHISPER, "6": Mode.BARGE}


class Event(Protocol):
    def get(self, name: str, default: str | None = None) -> str | None: ...

    @property
    def event(self) -> str | None: ...


@dataclass
class SpyWatch:
    """What one spying channel did; callbacks fire as the events arrive."""

    spyer_uniqueid: str
    on_start: Callable[[float, str], None]  # (time, spyee channel)
    on_stop: Callable[[float], None]
    on_mode: Callable[[Mode, float], None]
    started_at: float | None = None
    stopped_at: float | None = None
    switching: bool = False  # only count 4/5/6 when the d option is on
    server: str = ""  # the Asterisk server the spy runs on (its AMI link's name)
    link_losses: int = 0  # that link's losses when the watch began (set by SpyWatches)
    _waiting: list[Deferred[float]] = field(default_factory=list, repr=False)

    def when_stopped(self) -> Deferred[float]:
        """Fires with the stop time once ChanSpyStop is seen (at once if it was already);
        cancel it to stop waiting."""
        if self.stopped_at is not None:
            return succeed(self.stopped_at)
        waiting: Deferred[float] = Deferred(
            lambda d: self._waiting.remove(d) if d in self._waiting else None)
        self._waiting.append(waiting)
        return waiting

    def _stopped(self, at: float) -> None:
        self.stopped_at = at
        self.on_stop(at)
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(at)


class SpyWatches:
    """A registry fed with every AMI event of every server."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self._by_spyer: dict[str, SpyWatch] = {}
        self._losses: dict[str, int] = {}

    def link_lost(self, server: str) -> None:
        """The AMI link to ``server`` dropped: events of spies running there may be lost."""
        self._losses[server] = self._losses.get(server, 0) + 1

    def saw_everything(self, watch: SpyWatch) -> bool:
        """Whether the watch's AMI link stayed up since it began (no event can be missing)."""
        return self._losses.get(watch.server, 0) == watch.link_losses

    def watch(self, watch: SpyWatch) -> Callable[[], None]:
        watch.link_losses = self._losses.get(watch.server, 0)
        self._by_spyer[watch.spyer_uniqueid] = watch
        def unwatch() -> None:
            self._by_spyer.pop(watch.spyer_uniqueid, None)

        return unwatch

    def watched(self, spyer_uniqueid: str) -> bool:
        """Whether a flow of ours is running ChanSpy on this channel now."""
        return spyer_uniqueid in self._by_spyer

    def feed(self, event: Event) -> None:
        name = event.event
        if name == "ChanSpyStart":
            watch = self._by_spyer.get(event.get("SpyerUniqueid") or "")
            if watch is not None:
                at = self._time(event)
                if watch.started_at is None:
                    watch.started_at = at
                watch.on_start(at, event.get("SpyeeChannel") or "")
        elif name == "ChanSpyStop":
            watch = self._by_spyer.get(event.get("SpyerUniqueid") or "")
            if watch is not None:
                watch._stopped(self._time(event))
        elif name == "DTMFEnd":
            watch = self._by_spyer.get(event.get("Uniqueid") or "")
            mode = _SWITCH_DIGITS.get(event.get("Digit") or "")
            if (watch is not None and watch.switching and mode is not None
                    and watch.started_at is not None and watch.stopped_at is None
                    and event.get("Direction") == "Received"):
                watch.on_mode(mode, self._time(event))

    def _time(self, event: Event) -> float:
        # manager.conf timestampevents=yes adds "Timestamp: 1732165000.123456".
        try:
            return float(event.get("Timestamp") or "")
        except ValueError:
            return self._now()
