"""Where store calls run: inline on the reactor (SQLite) or on one worker thread (PostgreSQL).

A SQLite call takes microseconds, so it runs inline: a thread hop would cost more than the
call. A PostgreSQL call is a network round trip that can hang, and the reactor must never
wait on one, so with PostgreSQL every store call of the supervision flow runs on a worker.

Ordering guarantee (why ONE worker thread): every call handed to a ``ThreadRunner``, awaited
(``run``) or not (``submit``), runs in the order it was handed over, one at a time. An
attempt's later writes (spy started, spy stopped, close) can therefore never overtake its
earlier ones (open, spying), even when the later ones are fire-and-forget AMI-driven writes
that nobody awaits. ``InlineRunner`` keeps the same order trivially: it runs each call now.

Results and failures come back on the reactor thread, so callers touch their own state only
there. Stopping drains: every call handed over before (or while) the runner stops is run
before its thread ends, so the audit loses no write at shutdown.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from twisted.application.service import IServiceCollection, Service
from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from fastagi_spy.store.errors import StoreError

T = TypeVar("T")
log = Logger()


class StoreRunner(Protocol):
    def run(self, fn: Callable[..., T], *args: Any, **kw: Any) -> defer.Deferred[T]:
        """``fn(*args, **kw)``; await the result (or its exception)."""

    def submit(self, fn: Callable[..., object], *args: Any, **kw: Any) -> None:
        """``fn(*args, **kw)`` in turn; nobody waits, so a failure is logged."""


def _logged(failure: Failure) -> None:
    log.failure("background store call failed", failure)


class InlineRunner:
    """Runs each call at once on the caller's thread (SQLite). The Deferred it returns has
    already fired, so awaiting it continues at once: no reactor turn is spent."""

    def run(self, fn: Callable[..., T], *args: Any, **kw: Any) -> defer.Deferred[T]:
        try:
            return defer.succeed(fn(*args, **kw))
        except Exception:
            return defer.fail()

    def submit(self, fn: Callable[..., object], *args: Any, **kw: Any) -> None:
        self.run(fn, *args, **kw).addErrback(_logged)


class ThreadRunner:
    """Runs each call on ONE dedicated worker thread, in the order handed over (FIFO)."""

    def __init__(self, reactor: Any, name: str = "store") -> None:
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name=name)
        self._pending = 0  # handed over, result not yet back on the reactor
        self._idle: list[defer.Deferred[None]] = []
        self._stopped = False

    def start(self) -> None:
        self._pool.start()

    def run(self, fn: Callable[..., T], *args: Any, **kw: Any) -> defer.Deferred[T]:
        if self._stopped:
            # Fail closed: a write after the thread has gone must not vanish silently.
            return defer.fail(StoreError("store runner stopped"))
        self._pending += 1
        d: defer.Deferred[T] = deferToThreadPool(self._reactor, self._pool, fn, *args, **kw)
        d.addBoth(self._done)
        return d

    def submit(self, fn: Callable[..., object], *args: Any, **kw: Any) -> None:
        self.run(fn, *args, **kw).addErrback(_logged)

    def _done(self, result: T) -> T:
        self._pending -= 1
        if not self._pending:
            idle, self._idle = self._idle, []
            for waiter in idle:
                waiter.callback(None)
        return result

    async def stop(self) -> None:
        """Run everything handed over (also while stopping), then end the thread."""
        while self._pending:
            waiter: defer.Deferred[None] = defer.Deferred()
            self._idle.append(waiter)
            await waiter
        self._stopped = True
        if self._pool.started:
            self._pool.stop()  # idle now: the join is immediate


class ThreadRunnerService(Service):
    """Starts the worker thread with the service and drains it when the service stops."""

    def __init__(self, runner: ThreadRunner) -> None:
        self.runner = runner

    def startService(self) -> None:
        Service.startService(self)
        self.runner.start()

    def stopService(self) -> defer.Deferred[None]:
        Service.stopService(self)
        return defer.ensureDeferred(self.runner.stop())


def runner_for(db: object, reactor: Any, parent: IServiceCollection | None = None) -> StoreRunner:
    """Inline for a local database (SQLite); one worker thread for a remote one
    (PostgreSQL says so with ``is_remote = True``), started and drained with ``parent``."""
    if not getattr(db, "is_remote", False):
        return InlineRunner()
    runner = ThreadRunner(reactor)
    if parent is not None:
        Service.setServiceParent(ThreadRunnerService(runner), parent)
    return runner
