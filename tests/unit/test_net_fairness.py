"""Bounded I/O per reactor iteration: few descriptors per poll, and every one gets its turn."""

from __future__ import annotations

import os
import select
from collections.abc import Iterator

import pytest
from twisted.internet.epollreactor import EPollReactor

from fastagi_spy.net.fairness import BoundedPoller, bound_io_per_iteration


@pytest.fixture
def ready_pipes() -> Iterator[tuple[select.epoll, list[int]]]:
    """An epoll watching 20 pipe write ends, all writable (ready) at once."""
    poller = select.epoll()
    ends: list[int] = []
    for _ in range(20):
        read_end, write_end = os.pipe()
        ends += [read_end, write_end]
        poller.register(write_end, select.EPOLLOUT)
    yield poller, ends[1::2]
    poller.close()
    for fd in ends:
        os.close(fd)


def test_poll_reports_at_most_cap_and_every_descriptor_in_turn(
    ready_pipes: tuple[select.epoll, list[int]],
) -> None:
    poller, writers = ready_pipes
    bounded = BoundedPoller(poller, 8)
    seen: list[int] = []
    for _ in range(3):
        batch = bounded.poll(0, 40)
        assert len(batch) == 8
        seen += [fd for fd, _ in batch]
    # Level-triggered and still ready: the ones not reported come next, none starves.
    assert set(seen) == set(writers)


def test_smaller_requests_pass_through(ready_pipes: tuple[select.epoll, list[int]]) -> None:
    poller, _ = ready_pipes
    assert len(BoundedPoller(poller, 8).poll(0, 3)) == 3


def test_reactor_is_bounded_once_and_others_are_left_alone() -> None:
    reactor = EPollReactor()
    try:
        assert bound_io_per_iteration(reactor, 4)
        assert isinstance(reactor._poller, BoundedPoller)
        assert bound_io_per_iteration(reactor, 4)  # idempotent: not wrapped twice
        assert not isinstance(reactor._poller._epoll, BoundedPoller)
        # The reactor still works: a timed call runs through the bounded poller.
        ran: list[bool] = []
        reactor.callLater(0, lambda: (ran.append(True), reactor.stop()))
        reactor.run(installSignalHandlers=False)
        assert ran == [True]
    finally:
        reactor._poller.close()

    class NotEpoll:
        pass

    assert not bound_io_per_iteration(NotEpoll())


def test_cap_must_be_positive() -> None:
    poller = select.epoll()
    try:
        with pytest.raises(ValueError):
            BoundedPoller(poller, 0)
    finally:
        poller.close()
