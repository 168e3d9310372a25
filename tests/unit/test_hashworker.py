"""The PIN hash worker process: right and wrong PINs, and a restart after it dies."""

from __future__ import annotations

import os
import signal
import sys

import pytest_twisted
from twisted.internet import reactor, task

from fastagi_spy.net.hashworker import HashWorker, HashWorkerGone, HashWorkerStopped
from fastagi_spy.store.pins import PinHasher

PEPPER = b"unit-test-pepper-0123456789"


@pytest_twisted.ensureDeferred
async def test_worker_verifies_and_survives_being_killed() -> None:
    """The worker answers like PinHasher; killed mid-request, the request fails cleanly
    (never a silent 'ok') and the worker is back for the next one."""
    stored = PinHasher.cheap(PEPPER).hash_pin("9001", "1234")
    worker = HashWorker(reactor, PEPPER, "cheap")
    await worker.start()
    try:
        assert await worker.verify("9001", "1234", stored) is True
        assert await worker.verify("9001", "9999", stored) is False
        assert await worker.verify("9002", "1234", None) is False
        assert worker.protocol is not None and worker.protocol.transport is not None
        pid = worker.protocol.transport.pid
        pending = worker.verify("9001", "0000", stored)  # a wrong PIN
        os.kill(pid, signal.SIGKILL)
        try:
            outcome = await pending  # it may have answered before dying: then False
        except HashWorkerGone:
            outcome = None
        assert outcome is not True
        for _ in range(100):
            if worker.protocol is not None and worker.protocol.transport is not None \
                    and worker.protocol.transport.pid != pid:
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        assert await worker.verify("9001", "1234", stored) is True
    finally:
        worker.stop()


@pytest_twisted.ensureDeferred
async def test_a_worker_that_cannot_start_is_retried_with_backoff_not_in_a_loop() -> None:
    """A worker that dies before it is ready (a broken install) is restarted after 0.5 s,
    1 s, 2 s ...: a handful of tries in 1.6 s, not hundreds; PIN checks meanwhile fail
    with HashWorkerGone (the caller hears a refusal); stop() ends the retries."""
    worker = HashWorker(reactor, PEPPER, "cheap", argv=(sys.executable, "-c", "raise SystemExit(3)"))
    started = worker.start()
    try:
        await started
    except HashWorkerGone:
        pass
    else:
        raise AssertionError("a worker that exits at once cannot be ready")
    await task.deferLater(reactor, 1.6, lambda: None)
    assert 2 <= worker.failed_starts <= 4
    try:
        await worker.verify("9001", "1234", None)
        outcome = "answered"
    except HashWorkerGone:
        outcome = "refused"
    assert outcome == "refused"
    worker.stop()
    tries = worker.failed_starts
    await task.deferLater(reactor, 2.5, lambda: None)
    assert worker.failed_starts == tries


@pytest_twisted.ensureDeferred
async def test_a_worker_stopped_before_it_is_ready_is_not_a_failure() -> None:
    """The server stopping as it starts ends a worker that was not ready yet: its start fails
    with HashWorkerStopped (the server logs nothing), not a 'did not start' HashWorkerGone;
    and it is not restarted."""
    slow = (sys.executable, "-c", "import sys, time; sys.stdin.readline(); time.sleep(0.3)")
    worker = HashWorker(reactor, PEPPER, "cheap", argv=slow)
    started = worker.start()
    worker.stop()
    try:
        await started
    except HashWorkerStopped:
        outcome = "stopped"
    except HashWorkerGone:
        outcome = "gone"
    else:
        outcome = "ready"
    assert outcome == "stopped"
    await task.deferLater(reactor, 0.8, lambda: None)
    assert worker.protocol is None and worker.failed_starts == 0


@pytest_twisted.ensureDeferred
async def test_the_worker_runs_isolated_in_a_fixed_directory() -> None:
    """`python -I` (no PYTHONPATH, no user site, no current directory on sys.path) in /,
    whatever directory the server was started from; and it still verifies PINs."""
    stored = PinHasher.cheap(PEPPER).hash_pin("9001", "1234")
    worker = HashWorker(reactor, PEPPER, "cheap")
    await worker.start()
    try:
        assert worker.protocol is not None and worker.protocol.transport is not None
        pid = worker.protocol.transport.pid
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            argv = cmdline.read().split(b"\0")
        assert argv[1] == b"-I"
        assert os.readlink(f"/proc/{pid}/cwd") == "/"
        assert await worker.verify("9001", "1234", stored) is True
    finally:
        worker.stop()
