"""A spy never outlives our knowledge of it: the real `fastagi-spy serve` process, stopped
with SIGTERM or killed with SIGKILL while a supervisor listens, on the real Asterisk 22.

SIGTERM: the server hangs the spying channel up before it exits, and the record says
`server_shutdown` with ChanSpyStop's time. SIGKILL: the next start hangs up the ChanSpy the
dead run left behind, and closes its record `interrupted` with ChanSpyStop's time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import threads

from fastagi_spy.sandbox import AsteriskSandbox
from fastagi_spy.store.audit import AuditLog, AuditRecord
from fastagi_spy.wire.ami import AMIMessage
from tests.integration.driver import Driver, is_event, sleep
from tests.integration.site import Supervisor, agent_call, answer, site_config, supervisor_dials

# Both tests run on SQLite and on the real PostgreSQL (shutdown drains the store thread).
pytestmark = pytest.mark.both_stores

READY = "Live map for sandbox rebuilt"


def _serve(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "fastagi_spy.cli", "serve", "--config", str(config)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


async def _until_logged(log: Path, text: str, count: int = 1) -> None:
    for _ in range(300):
        if log.exists() and log.read_text(errors="replace").count(text) >= count:
            return
        await sleep(0.1)
    raise AssertionError(f"server never logged {text!r}:\n{log.read_text(errors='replace')[-3000:]}")


async def _set_pin(config: Path) -> None:
    done = await threads.deferToThread(
        subprocess.run, [sys.executable, "-m", "fastagi_spy.cli", "set-pin", "--config",
                         str(config), "2001"],
        input="1234\n", capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


async def _spying(driver: Driver, log: Path) -> tuple[Supervisor, AMIMessage]:
    """Agent 1001 on a call; supervisor 2001 dials *2221001, types the PIN, and listens."""
    await agent_call(driver, "1001")
    mark = driver.mark()
    sup = await supervisor_dials(driver, "2001", "*2221001")
    await answer(driver, sup, "agent-pass", "1234", since=mark)
    start = await driver.wait_for(is_event("ChanSpyStart", SpyerChannel=sup.line), since=mark,
                                  what="ChanSpyStart")
    return sup, start


async def _chanspy_channels(driver: Driver) -> list[str]:
    return [c.get("Channel") or "" for c in await driver.channels()
            if (c.get("Application") or "").lower() == "chanspy"]


async def _closed(audit: AuditLog, record_id: int) -> AuditRecord:
    for _ in range(300):
        record = audit.get(record_id)
        if record is not None and record.ended_at is not None:
            return record
        await sleep(0.1)
    raise AssertionError(f"audit record {record_id} never closed: {audit.get(record_id)}")


async def _spy_on_record(audit: AuditLog) -> AuditRecord:
    """The newest record, once the server has written its spy's start time."""
    for _ in range(300):
        records = audit.list(limit=1)
        if records and records[0].spy_started_at is not None:
            return records[0]
        await sleep(0.1)
    raise AssertionError(f"spy start never recorded: {audit.list(limit=1)}")


def _stopped_at(stop: AMIMessage) -> float:
    return float(stop.get("Timestamp") or "nan")


def _stop_process(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.kill()
        server.wait(10)


@pytest_twisted.ensureDeferred
async def test_sigterm_during_a_spy_hangs_it_up_and_closes_the_record_server_shutdown(
        driver: Driver, sandbox: AsteriskSandbox, tmp_path: Path, store: str,
        site_audit: Callable[[Path], AuditLog]) -> None:
    config = Path(site_config(sandbox, tmp_path, store=store).source)
    await _set_pin(config)
    audit = site_audit(config)
    log = tmp_path / "serve.log"
    server = _serve(config, log)
    try:
        await _until_logged(log, READY)
        sup, _start = await _spying(driver, log)
        opened = await _spy_on_record(audit)
        mark = driver.mark()
        server.send_signal(signal.SIGTERM)
        # The spy ends because the server hung it up: Asterisk says so before we exit.
        stop = await driver.wait_for(is_event("ChanSpyStop", SpyerChannel=sup.line),
                                     since=mark, timeout=30, what="ChanSpyStop after SIGTERM")
        code = await threads.deferToThread(server.wait, 60)
    finally:
        _stop_process(server)
    assert code == 0, log.read_text(errors="replace")[-3000:]
    assert sup.line not in await _chanspy_channels(driver)
    assert not await _chanspy_channels(driver)
    record = audit.get(opened.id)
    assert record is not None and (record.supervisor, record.agent) == ("2001", "1001")
    assert record.end_reason == "server_shutdown", record
    assert record.spy_started_at is not None and record.ended_at is not None
    assert record.spy_stopped_at == _stopped_at(stop), record
    assert "could not hang up" not in log.read_text(errors="replace")


@pytest_twisted.ensureDeferred
async def test_after_kill_9_the_next_start_hangs_up_the_left_over_spy_and_closes_it_interrupted(
        driver: Driver, sandbox: AsteriskSandbox, tmp_path: Path, store: str,
        site_audit: Callable[[Path], AuditLog]) -> None:
    config = Path(site_config(sandbox, tmp_path, store=store).source)
    await _set_pin(config)
    audit = site_audit(config)
    log = tmp_path / "serve.log"
    server = _serve(config, log)
    try:
        await _until_logged(log, READY)
        sup, _start = await _spying(driver, log)
        record = await _spy_on_record(audit)
        os.kill(server.pid, signal.SIGKILL)
        await threads.deferToThread(server.wait, 30)
    finally:
        _stop_process(server)
    left = audit.get(record.id)
    assert left is not None and left.ended_at is None
    # Asterisk does not notice the dead AGI while ChanSpy runs: the supervisor still listens.
    assert sup.line in await _chanspy_channels(driver)
    mark = driver.mark()
    server = _serve(config, log)
    try:
        stop = await driver.wait_for(is_event("ChanSpyStop", SpyerChannel=sup.line),
                                     since=mark, timeout=30, what="ChanSpyStop after restart")
        closed = await _closed(audit, record.id)
        assert sup.line not in await _chanspy_channels(driver)
    finally:
        server.send_signal(signal.SIGTERM)
        await threads.deferToThread(server.wait, 60)
        _stop_process(server)
    assert closed.end_reason == "interrupted", closed
    assert closed.spy_stopped_at == _stopped_at(stop), closed
    assert closed.ended_at == closed.spy_stopped_at
    assert closed.detail is not None and "hung up" in closed.detail
