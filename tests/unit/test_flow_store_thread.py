"""With a ThreadRunner (PostgreSQL), the feature-code flow makes no store call on the reactor
thread, an attempt's writes still land complete and in order, and a store failure on the
worker still fails closed. Real SQLite behind a recording wrapper, the real reactor."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.python.failure import Failure

from fastagi_spy.domain import Mode
from fastagi_spy.store.errors import StoreError
from fastagi_spy.store.runner import ThreadRunner
from tests.store_threads import REACTOR_THREAD, until
from tests.unit.test_supervise_flow import (
    PIN,
    PIN_ASK,
    SPYER,
    T0,
    TARGET_ASK,
    FakeResolver,
    Site,
    SpyLine,
    ami,
    heard,
    start,
    talking,
)

Call = tuple[str, str, int]  # (store, method, thread)


class Recorded:
    """A store as the flow sees it: every method call is noted with the thread it ran on;
    ``fail`` names methods that raise StoreError instead (a database gone away)."""

    def __init__(self, store: Any, name: str, calls: list[Call], fail: frozenset[str]) -> None:
        self._store, self._name, self._calls, self._fail = store, name, calls, fail

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._store, attr)
        if attr.startswith("_") or not callable(value):
            return value

        def call(*args: Any, **kw: Any) -> Any:
            self._calls.append((self._name, attr, threading.get_ident()))
            if attr in self._fail:
                raise StoreError(f"{attr}: connection lost")
            return value(*args, **kw)

        return call


def recording(calls: list[Call], fail: frozenset[str] = frozenset()) -> Callable[[Any], Any]:
    def wrap(store: Any) -> Recorded:
        return Recorded(store, type(store).__name__, calls, fail)

    return wrap


@pytest_twisted.ensureDeferred
async def test_with_a_thread_runner_no_store_call_is_on_the_reactor_and_rows_stay_in_order(
        tmp_path: Path, runner: ThreadRunner) -> None:
    calls: list[Call] = []
    site = Site(tmp_path, FakeResolver({"1001": talking("1001")}), runner=runner,
                wrap=recording(calls))
    line = SpyLine([(PIN_ASK, PIN), (TARGET_ASK, "1001")])
    done = start(site, line, Mode.LISTEN)
    await until(lambda: any(c.startswith("EXEC ChanSpy") for c in line.sent))
    # AMI-driven writes nobody waits for, handed over right behind each other.
    site.spies.feed(ami("ChanSpyStart", SpyerUniqueid=SPYER, Timestamp=str(T0 + 1)))
    site.spies.feed(ami("DTMFEnd", Uniqueid=SPYER, Digit="5", Direction="Received",
                        Timestamp=str(T0 + 3)))
    site.spies.feed(ami("ChanSpyStop", SpyerUniqueid=SPYER, Timestamp=str(T0 + 9)))
    line.chanspy_returns()
    await done  # the next target prompt finds the supervisor gone

    assert calls, "the wrapper saw no store call"
    on_reactor = [(store, method) for store, method, thread in calls
                  if thread == REACTOR_THREAD]
    assert on_reactor == []
    assert len({thread for *_, thread in calls}) == 1  # one worker: one order
    audit_calls = [method for store, method, _ in calls if store == "AuditLog"]
    assert audit_calls == [
        "open",  # before anything can be heard
        "update", "add_event",  # the PIN, in the lockout transaction
        "update",  # spying: everything the row needs, before ChanSpy
        "mark_spy_started", "add_mode", "add_event", "mark_spy_stopped",
        "close", "open",  # next attempt
        "close",  # hung up at the target prompt
    ]
    spied, after = site.records()
    assert (spied.auth_result, spied.end_reason, spied.agent, spied.modes) == (
        "ok", "agent_hangup", "1001", "listen,whisper")
    assert (spied.spy_started_at, spied.spy_stopped_at) == (T0 + 1, T0 + 9)
    assert [(e.kind, e.detail) for e in site.audit.events(spied.id)] == [
        ("pin", "2001 ok"), ("mode", "whisper")]
    assert (after.end_reason, after.detail) == ("abandoned", "hung up at target prompt")


@pytest_twisted.ensureDeferred
async def test_a_store_failure_on_the_worker_still_fails_closed(
        tmp_path: Path, runner: ThreadRunner) -> None:
    """The lockout store is gone while a PIN is counted: no spy, the row closed as an error
    (the bundle then plays its fail-closed prompt), and the in-flight slots given back."""
    calls: list[Call] = []
    site = Site(tmp_path, FakeResolver({"1001": talking("1001")}), runner=runner,
                wrap=recording(calls, fail=frozenset({"admit"})))
    line = SpyLine([(PIN_ASK, PIN), (TARGET_ASK, "1001")])
    failures: list[Failure] = []
    await start(site, line).addErrback(failures.append)
    assert failures and failures[0].check(StoreError)
    assert not any(c.startswith("EXEC ChanSpy") for c in line.sent)
    assert heard(line) == []
    (record,) = site.records()
    assert (record.end_reason, record.detail) == ("error", "StoreError: admit: connection lost")
    assert ("LockoutStore", "admit") in [(s, m) for s, m, _ in calls]
    assert all(thread != REACTOR_THREAD for *_, thread in calls)
    assert not +site.flow.deps.pin_checker.in_flight  # no slot left held
