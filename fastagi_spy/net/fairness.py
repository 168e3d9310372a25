"""Bounded I/O work per reactor iteration, so timers stay punctual under load.

Twisted's epoll reactor asks epoll for every ready descriptor and handles them all before it
runs timed calls again. With 50 FastAGI calls answering at once that is ~10 ms of legitimate
work in one go, and AMI keepalives, command timeouts and the ChanSpy wait loop all run late
by that much. Asking epoll for a few descriptors at a time bounds the gap: for
level-triggered descriptors (Twisted's) Linux puts each reported one back at the tail of the
ready list, so the others come next time, in turn, and nothing is lost.
"""

from __future__ import annotations

from typing import Any, Protocol

MAX_EVENTS_PER_POLL = 4


class _Epoll(Protocol):
    def poll(self, timeout: float = -1, maxevents: int = -1) -> list[tuple[int, int]]: ...
    def register(self, fd: int, eventmask: int = ...) -> None: ...
    def modify(self, fd: int, eventmask: int) -> None: ...
    def unregister(self, fd: int) -> None: ...
    def close(self) -> None: ...
    def fileno(self) -> int: ...


class BoundedPoller:
    """An epoll object whose ``poll`` reports at most ``cap`` descriptors per call."""

    __slots__ = ("_cap", "_epoll")

    def __init__(self, epoll: _Epoll, cap: int) -> None:
        if cap < 1:
            raise ValueError("cap must be positive")
        self._epoll = epoll
        self._cap = cap

    def poll(self, timeout: float = -1, maxevents: int = -1) -> list[tuple[int, int]]:
        cap = self._cap
        return self._epoll.poll(timeout, cap if maxevents < 1 or maxevents > cap else maxevents)

    def register(self, fd: int, eventmask: int) -> None:
        self._epoll.register(fd, eventmask)

    def modify(self, fd: int, eventmask: int) -> None:
        self._epoll.modify(fd, eventmask)

    def unregister(self, fd: int) -> None:
        self._epoll.unregister(fd)

    def close(self) -> None:
        self._epoll.close()

    def fileno(self) -> int:
        return self._epoll.fileno()


def bound_io_per_iteration(reactor: Any, cap: int = MAX_EVENTS_PER_POLL) -> bool:
    """Make an epoll reactor handle at most ``cap`` ready descriptors per iteration.

    Returns False (and changes nothing) for a reactor that is not epoll based.
    """
    poller = getattr(reactor, "_poller", None)
    if isinstance(poller, BoundedPoller):
        return True
    if poller is None or not all(hasattr(poller, m) for m in ("poll", "register", "modify")):
        return False
    reactor._poller = BoundedPoller(poller, cap)
    return True
