"""Follows ChanSpyStart / ChanSpyStop / DTMF for the spies we started, by spyer uniqueid.

The audit log takes its start and stop times from these AMI events (Asterisk's own word on
when audio flowed), not from our idea of when EXEC ChanSpy began, and sees the 4/5/6 mode
switches the ``d`` option allows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

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


class SpyWatches:
    """A registry fed with every AMI event of every server."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self._by_spyer: dict[str, SpyWatch] = {}

    def watch(self, watch: SpyWatch) -> Callable[[], None]:
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
                watch.stopped_at = self._time(event)
                watch.on_stop(watch.stopped_at)
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
