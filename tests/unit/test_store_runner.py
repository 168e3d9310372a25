"""Where store calls run: InlineRunner (at once, SQLite) and ThreadRunner (one worker thread,
FIFO, results on the reactor thread, drained on stop), on the real reactor."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.application.service import MultiService
from twisted.internet import defer, reactor
from twisted.logger import Logger

from fastagi_spy.config import load
from fastagi_spy.service import SpyService
from fastagi_spy.store import runner as runner_module
from fastagi_spy.store.database import Database
from fastagi_spy.store.errors import StoreError
from fastagi_spy.store.runner import InlineRunner, ThreadRunner, ThreadRunnerService, runner_for
from tests.unit.test_agi_servers import CONFIG

REACTOR_THREAD = threading.get_ident()  # pytest-twisted runs the tests on the reactor thread


def boom() -> None:
    raise StoreError("database went away")


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    monkeypatch.setattr(runner_module, "log", Logger(observer=events.append))
    return events


# --- inline --------------------------------------------------------------------------------


def test_inline_runs_at_once_and_its_deferred_has_already_fired() -> None:
    seen: list[int] = []
    d = InlineRunner().run(lambda x, y=0: seen.append(x + y) or x + y, 2, y=3)
    assert seen == [5]  # ran before run() returned
    results: list[int] = []
    d.addCallback(results.append)
    assert results == [5]


def test_inline_failure_is_a_failed_deferred_not_a_raise() -> None:
    d = InlineRunner().run(boom)
    failures: list[Any] = []
    d.addErrback(failures.append)
    assert failures and failures[0].check(StoreError)


def test_inline_submit_logs_a_failure(logged: list[dict[str, Any]]) -> None:
    InlineRunner().submit(boom)
    (event,) = logged
    assert event["log_failure"].check(StoreError)
    assert event["log_format"] == "background store call failed"


# --- one worker thread -----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_thread_runner_runs_elsewhere_and_answers_on_the_reactor_thread() -> None:
    runner = ThreadRunner(reactor)
    runner.start()
    try:
        ran_on: list[int] = []
        answered_on: list[int] = []

        def work(x: int) -> int:
            ran_on.append(threading.get_ident())
            return x * 2

        d = runner.run(work, 21)
        d.addCallback(lambda r: answered_on.append(threading.get_ident()) or r)
        assert await d == 42
        assert ran_on and ran_on[0] != REACTOR_THREAD
        assert answered_on == [REACTOR_THREAD]
    finally:
        await runner.stop()


@pytest_twisted.ensureDeferred
async def test_thread_runner_failures_come_back_on_the_reactor_thread() -> None:
    runner = ThreadRunner(reactor)
    runner.start()
    try:
        caught_on: list[int] = []
        d = runner.run(boom)
        d.addErrback(lambda f: caught_on.append(threading.get_ident()) or f)
        with pytest.raises(StoreError, match="went away"):
            await d
        assert caught_on == [REACTOR_THREAD]
    finally:
        await runner.stop()


@pytest_twisted.ensureDeferred
async def test_thread_runner_keeps_fifo_order_under_many_submits() -> None:
    """Earlier calls sleep longer: with more than one worker, later ones would overtake."""
    runner = ThreadRunner(reactor)
    runner.start()
    done: list[int] = []
    threads: set[int] = set()

    def write(i: int) -> None:
        threads.add(threading.get_ident())
        time.sleep((300 - i) * 2e-6)
        done.append(i)

    try:
        for i in range(300):
            if i % 7 == 0:
                runner.run(write, i)  # awaited calls and fire-and-forget share one queue
            else:
                runner.submit(write, i)
        assert await runner.run(lambda: list(done)) == list(range(300))
        assert len(threads) == 1
    finally:
        await runner.stop()


@pytest_twisted.ensureDeferred
async def test_stop_drains_pending_work_even_work_handed_over_while_stopping() -> None:
    runner = ThreadRunner(reactor)
    runner.start()
    done: list[int] = []

    def slow(i: int) -> None:
        time.sleep(0.01)
        done.append(i)

    for i in range(20):
        runner.submit(slow, i)
    stopping = defer.ensureDeferred(runner.stop())
    runner.submit(slow, 20)  # e.g. a ChanSpyStop arriving during shutdown
    await stopping
    assert done == list(range(21))
    with pytest.raises(StoreError, match="stopped"):  # fail closed afterwards
        await runner.run(lambda: None)


@pytest_twisted.ensureDeferred
async def test_submit_failure_is_logged_and_later_work_still_runs(
        logged: list[dict[str, Any]]) -> None:
    runner = ThreadRunner(reactor)
    runner.start()
    try:
        runner.submit(boom)
        assert await runner.run(lambda: "after") == "after"
        (event,) = logged
        assert event["log_failure"].check(StoreError)
    finally:
        await runner.stop()


class Remote:
    is_remote = True


@pytest_twisted.ensureDeferred
async def test_a_remote_database_gets_a_thread_runner_started_and_drained_with_its_parent(
) -> None:
    assert isinstance(runner_for(object(), reactor), InlineRunner)  # SQLite: no is_remote
    parent = MultiService()
    runner = runner_for(Remote(), reactor, parent=parent)
    assert isinstance(runner, ThreadRunner)
    parent.startService()
    ran_on = await runner.run(threading.get_ident)
    assert ran_on != REACTOR_THREAD
    done: list[int] = []
    runner.submit(lambda: (time.sleep(0.05), done.append(1)))
    await parent.stopService()
    assert done == [1]


def test_the_service_gives_the_flow_inline_calls_on_sqlite_and_one_thread_when_remote(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "spy.toml"
    path.write_text(CONFIG)
    local = SpyService(load(path), reactor)
    try:
        assert isinstance(local.flow.deps.store_runner, InlineRunner)
        assert not [s for s in local if isinstance(s, ThreadRunnerService)]
    finally:
        local.stores.db.close()
    monkeypatch.setattr(Database, "is_remote", True, raising=False)  # as PostgreSQL says
    remote = SpyService(load(path), reactor)
    try:
        runner = remote.flow.deps.store_runner
        assert isinstance(runner, ThreadRunner)
        assert remote.flow.deps.pin_checker.runner is runner  # one queue, one order
        (child,) = [s for s in remote if isinstance(s, ThreadRunnerService)]
        assert child.runner is runner  # started and drained with the service
    finally:
        remote.stores.db.close()
