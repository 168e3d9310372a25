"""Queues as a wallboard shows them: callers waiting and since when, members available,
on calls or paused, and calls answered and abandoned since the day began.

Callers come from app_queue.c's QueueCallerJoin / QueueCallerLeave / QueueCallerAbandon
and AgentConnect, and from QueueStatus's QueueEntry items after a reconnect; members
are counted from the agents the map already follows.  The day's counts are ours (the
QueueParams Completed/Abandoned figures run since the queue was loaded, not since
midnight), so calls that end while the AMI link is down are not counted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

from fastagi_spy.model.changes import Payload
from fastagi_spy.model.events import Malformed

__all__ = [
    "DayStart",
    "QueueBook",
    "QueueView",
    "check_pause_reason",
    "check_queue_name",
    "queue_payload",
    "utc_day_start",
]

# When the day that ``now`` falls in began (the model has no clock: injected).
DayStart = Callable[[float], float]

# A member's place in one queue's counts.
_AVAILABLE, _ON_CALL, _PAUSED = 0, 1, 2

# Longer than any queues.conf section name a site writes; a bound on what we echo.
_MAX_NAME = 80
# app_queue.c's reason_paused is char[80]: longer never came from Asterisk.
_MAX_REASON = 79


def utc_day_start(now: float) -> float:
    """Midnight UTC before ``now``: the default when no local clock is injected."""
    return now - now % 86400


def check_queue_name(name: str | None) -> str:
    """The Queue header as a name to show, else :class:`Malformed`.

    The name comes from a dialplan (``Queue(${EXTEN})`` would let a caller pick it):
    only printable text of a bounded length reaches the page.
    """
    if not name:
        raise Malformed("missing Queue")
    if len(name) > _MAX_NAME or not name.isprintable():
        raise Malformed(f"Queue {name[:20]!r} is not a printable name of {_MAX_NAME} or fewer")
    return name


def check_pause_reason(reason: str | None) -> str | None:
    """A pause reason to show, None when there is none, else :class:`Malformed`.

    Whoever pauses types it (a phone's PauseQueueMember, a wallboard's QueuePause):
    only printable text no longer than app_queue.c keeps (80) reaches the page.
    """
    if not reason:
        return None
    if len(reason) > _MAX_REASON or not reason.isprintable():
        raise Malformed(f"PausedReason {reason[:20]!r} is not printable text of {_MAX_REASON} or fewer")
    return reason


class QueueView(NamedTuple):
    """Everything a queue's payload shows except the ticking wait."""

    waiting: int
    longest_since: float | None
    available: int
    on_calls: int
    paused: int
    answered: int
    abandoned: int
    day_start: float
    day_end: float


class _Queue:
    __slots__ = ("abandoned", "answered", "callers", "day", "members")

    def __init__(self) -> None:
        # Uniqueid of each waiting caller -> when it joined.
        self.callers: dict[str, float] = {}
        # Members per place: available, on a call, paused.
        self.members = [0, 0, 0]
        self.answered = 0
        self.abandoned = 0
        self.day: float | None = None


class QueueBook:
    """Every queue one server has told us of, and which ones changed since the last report."""

    __slots__ = ("day_start", "dirty", "emitted", "placed", "queues", "where")

    def __init__(self, day_start: DayStart) -> None:
        self.day_start = day_start
        self.queues: dict[str, _Queue] = {}
        # Waiting caller's uniqueid -> its queue (a Hangup with no Leave still ends the wait).
        self.where: dict[str, str] = {}
        # Agent number -> {queue: place} as last counted.
        self.placed: dict[str, dict[str, int]] = {}
        self.dirty: set[str] = set()
        self.emitted: dict[str, QueueView] = {}

    def known(self, name: str) -> _Queue:
        """Queue ``name`` (validated), known from now on."""
        queue = self.queues.get(name)
        if queue is None:
            queue = self.queues[check_queue_name(name)] = _Queue()
            self.dirty.add(name)
        return queue

    def join(self, name: str, uniqueid: str, since: float) -> None:
        """A caller waits in ``name`` since ``since`` (a repeat keeps the first time)."""
        queue = self.known(name)
        if uniqueid in queue.callers:
            return
        self._drop(uniqueid)  # a caller waits in one queue at a time
        queue.callers[uniqueid] = since
        self.where[uniqueid] = name
        self.dirty.add(name)

    def leave(self, uniqueid: str) -> None:
        """The caller stopped waiting (answered, abandoned, timed out, hung up)."""
        if uniqueid in self.where:
            self._drop(uniqueid)

    def _drop(self, uniqueid: str) -> None:
        name = self.where.pop(uniqueid, None)
        if name is not None:
            self.queues[name].callers.pop(uniqueid, None)
            self.dirty.add(name)

    def count(self, name: str, now: float, *, answered: bool) -> None:
        """One call of ``name`` answered (or abandoned) at ``now``."""
        queue = self.known(name)
        day = self.day_start(now)
        if queue.day != day:
            queue.day = day
            queue.answered = queue.abandoned = 0
        if answered:
            queue.answered += 1
        else:
            queue.abandoned += 1
        self.dirty.add(name)

    def place(self, number: str, memberships: Mapping[str, bool], on_call: bool) -> None:
        """Count agent ``number`` in each queue it is a member of (paused or not there)."""
        busy = _ON_CALL if on_call else _AVAILABLE
        new = {queue: _PAUSED if paused else busy for queue, paused in memberships.items()}
        old = self.placed.get(number)
        if old == new:
            return
        if old:
            for name, where in old.items():
                if new.get(name) != where:
                    self.queues[name].members[where] -= 1
                    self.dirty.add(name)
        for name, where in new.items():
            if old is None or old.get(name) != where:
                self.known(name).members[where] += 1
                self.dirty.add(name)
        if new:
            self.placed[number] = new
        else:
            self.placed.pop(number, None)

    def carry_day(self, old: QueueBook) -> None:
        """Keep the day's counts of the queues still here from ``old`` (a resync)."""
        for name, queue in self.queues.items():
            before = old.queues.get(name)
            if before is not None:
                queue.day, queue.answered, queue.abandoned = (
                    before.day, before.answered, before.abandoned)
        self.emitted = dict(old.emitted)
        self.dirty.update(self.queues)

    def view(self, name: str, now: float) -> QueueView:
        """Queue ``name`` as of ``now``; counts of an earlier day show as 0."""
        queue = self.queues[name]
        day = self.day_start(now)
        # Next midnight: a day is 23 to 25 hours long, 26 h on lands in the next one.
        end = self.day_start(day + 26 * 3600)
        today = queue.day == day
        available, on_calls, paused = queue.members
        callers = queue.callers
        return QueueView(
            len(callers),
            min(callers.values()) if callers else None,
            available,
            on_calls,
            paused,
            queue.answered if today else 0,
            queue.abandoned if today else 0,
            day,
            end,
        )


def queue_payload(name: str, view: QueueView, now: float) -> Payload:
    """The queue as JSON.  ``as_of`` is the server time the wait was measured at, so a
    page can tick ``longest_wait_s`` on without trusting its own clock."""
    since = view.longest_since
    return {
        "queue": name,
        "waiting": view.waiting,
        "longest_since": since,
        "longest_wait_s": 0.0 if since is None else round(max(0.0, now - since), 3),
        "available": view.available,
        "on_calls": view.on_calls,
        "paused": view.paused,
        "answered": view.answered,
        "abandoned": view.abandoned,
        "day_start": view.day_start,
        "day_end": view.day_end,
        "as_of": now,
    }
