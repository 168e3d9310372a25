"""Mode switching, the join notice, and the audit log surviving kill -9, on the real Asterisk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor, threads

from fastagi_spy.config import load
from fastagi_spy.sandbox import AsteriskSandbox
from fastagi_spy.service import SpyService, make_service
from fastagi_spy.store.audit import AuditLog
from fastagi_spy.store.open import open_database
from tests.integration.audio import heard
from tests.integration.conftest import check_backend, failures
from tests.integration.driver import Driver, is_event, sleep, tag
from tests.integration.site import (
    TONE,
    agent_call,
    answer,
    closed_records,
    hears_service_unavailable,
    set_pins,
    site_config,
    supervisor_dials,
    wait_ready,
)

# Every test that takes `site` (or `store`) runs on SQLite and on the real PostgreSQL.
pytestmark = pytest.mark.both_stores

NOTICE_HZ = 1400


async def recording(sandbox: AsteriskSandbox, name: str) -> Path:
    path = sandbox.host_path(name)
    for _ in range(50):
        if path.exists() and path.stat().st_size > 8000:
            break
        await sleep(0.1)
    return Path(path)


@pytest_twisted.ensureDeferred
async def test_switching_listen_to_whisper_with_5_is_heard_and_audited(
        driver: Driver, site: SpyService, sandbox: AsteriskSandbox) -> None:
    """A supervisor allowed all modes presses 5 while listening: the agent starts hearing
    them, and the audit record lists both modes in order."""
    rec = f"{sandbox.recordings}/{tag('switch')}"
    await agent_call(driver, "1001", rec=rec)
    mark = driver.mark()
    sup = await supervisor_dials(driver, "2001", "*2221001", rec=rec)
    await answer(driver, sup, "agent-pass", "1234", since=mark)
    await driver.wait_for(is_event("ChanSpyStart", SpyerChannel=sup.line), since=mark)
    await sleep(1.5)
    await driver.type_digits(sup.handset, "supervisor", "5")
    await sleep(2.5)
    record = site.stores.audit.list(limit=1)[0]
    assert record.modes == "listen,whisper"
    await driver.hangup_all()
    await sleep(1.0)
    agent_hears = await recording(sandbox, f"{rec}-agent-hears.wav")
    customer_hears = await recording(sandbox, f"{rec}-customer-hears.wav")
    assert heard(agent_hears, TONE["supervisor"]) > 0.1
    assert heard(customer_hears, TONE["supervisor"]) < 0.02


@pytest_twisted.ensureDeferred
async def test_listen_only_supervisor_cannot_switch_modes(
        driver: Driver, site: SpyService, sandbox: AsteriskSandbox) -> None:
    """Without all three modes there is no `d` option: pressing 6 does not barge."""
    rec = f"{sandbox.recordings}/{tag('noswitch')}"
    await agent_call(driver, "1002", rec=rec)
    mark = driver.mark()
    sup = await supervisor_dials(driver, "2002", "*2221002", rec=rec)
    await answer(driver, sup, "agent-pass", "5678", since=mark)
    await driver.wait_for(is_event("ChanSpyStart", SpyerChannel=sup.line), since=mark)
    await driver.type_digits(sup.handset, "supervisor", "6")
    await sleep(2.5)
    await driver.hangup_all()
    await sleep(1.0)
    for party in ("agent", "customer"):
        path = await recording(sandbox, f"{rec}-{party}-hears.wav")
        assert heard(path, TONE["supervisor"]) < 0.02, party
    # hangup_all ends the agent's call too: when that reaches us first the supervisor is back
    # at the target prompt for a moment, in a new (abandoned) record. Check the spy's own.
    (spied, *_) = [r for r in site.stores.audit.list(limit=5) if r.spy_started_at is not None]
    assert spied.modes == "listen"


@pytest_twisted.ensureDeferred
async def test_join_notice_reaches_agent_and_customer(
        driver: Driver, sandbox: AsteriskSandbox, tmp_path: Path, store: str) -> None:
    """With `notice` configured, both monitored parties hear it when a supervisor joins,
    even in listen mode, while the supervisor's own voice still reaches nobody."""
    service = make_service(site_config(sandbox, tmp_path, notice=f"custom/fsp-tone-{NOTICE_HZ}",
                                       store=store), reactor)
    check_backend(service, store)
    set_pins(service)
    service.startService()
    try:
        await wait_ready(service)
        rec = f"{sandbox.recordings}/{tag('notice')}"
        await agent_call(driver, "1001", rec=rec)
        mark = driver.mark()
        sup = await supervisor_dials(driver, "2001", "*2221001", rec=rec)
        await answer(driver, sup, "agent-pass", "1234", since=mark)
        await driver.wait_for(is_event("ChanSpyStart", SpyerChannel=sup.line), since=mark)
        await sleep(3.0)
        await driver.hangup_all()
        await sleep(1.0)
        for party in ("agent", "customer"):
            path = await recording(sandbox, f"{rec}-{party}-hears.wav")
            assert heard(path, NOTICE_HZ) > 0.05, party
            assert heard(path, TONE["supervisor"]) < 0.02, party
    finally:
        await service.stopService()


def _serve(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "fastagi_spy.cli", "serve", "--config", str(config)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


async def _until_logged(log: Path, text: str, count: int = 1) -> None:
    for _ in range(150):
        if log.exists() and log.read_text(errors="replace").count(text) >= count:
            return
        await sleep(0.1)
    raise AssertionError(f"server never logged {text!r}:\n{log.read_text(errors='replace')[-3000:]}")


def _cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fastagi_spy.cli", *args], input=stdin,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest_twisted.ensureDeferred
async def test_kill_9_mid_spy_loses_nothing_and_restart_closes_it_as_interrupted(
        driver: Driver, sandbox: AsteriskSandbox, tmp_path: Path, store: str) -> None:
    """The real `fastagi-spy serve` process: PIN set with `set-pin`, a spy starts, the server
    is killed with SIGKILL; the record was already on disk; a restart closes it as
    interrupted, and `audit --csv` exports it."""
    config = site_config(sandbox, tmp_path, store=store)
    path = Path(config.source)
    done = await threads.deferToThread(_cli, "set-pin", "--config", str(path), "2001", stdin="1234\n")
    assert done.returncode == 0, done.stderr
    log = tmp_path / "serve.log"
    server = _serve(path, log)
    try:
        await agent_call(driver, "1001")
        await _until_logged(log, "Live map for sandbox rebuilt")
        mark = driver.mark()
        sup = await supervisor_dials(driver, "2001", "*2221001")
        await answer(driver, sup, "agent-pass", "1234", since=mark)
        await driver.wait_for(is_event("ChanSpyStart", SpyerChannel=sup.line), since=mark)
        await sleep(1.0)
        os.kill(server.pid, signal.SIGKILL)
        server.wait(10)
    finally:
        if server.poll() is None:
            server.kill()
    # Read back through the store classes, on whichever backend the site is configured for.
    db = open_database(load(path))
    try:
        await _killed_and_restarted(path, log, AuditLog(db))
    finally:
        db.close()


async def _killed_and_restarted(path: Path, log: Path, audit: AuditLog) -> None:
    """The record the killed server left open; a restart closes it as interrupted."""
    record = audit.list(limit=1)[0]
    assert record.supervisor == "2001" and record.agent == "1001"
    assert record.resolved_channel and record.resolved_channel.startswith("Local/1001@fsp-agents-")
    assert record.spy_started_at is not None and record.ended_at is None
    server = _serve(path, log)
    try:
        await _until_logged(log, "Live map for sandbox rebuilt", count=2)
        for _ in range(100):
            if audit.get(record.id) and audit.get(record.id).ended_at is not None:  # type: ignore[union-attr]
                break
            await sleep(0.1)
    finally:
        server.send_signal(signal.SIGTERM)
        await threads.deferToThread(server.wait, 20)
    closed = audit.get(record.id)
    assert closed is not None and closed.end_reason == "interrupted"
    export = await threads.deferToThread(_cli, "audit", "--config", str(path), "--csv")
    assert export.returncode == 0, export.stderr
    header, *rows = export.stdout.splitlines()
    assert "end_reason" in header and any("interrupted" in row and "1001" in row for row in rows)
    listing = await threads.deferToThread(_cli, "audit", "--config", str(path))
    assert "interrupted" in listing.stdout


@pytest_twisted.ensureDeferred
async def test_before_ami_ever_comes_up_the_answer_is_service_unavailable(
        driver: Driver, sandbox: AsteriskSandbox, tmp_path: Path, store: str) -> None:
    """Asterisk refuses our AMI login from start-up: the map has never been synced, so a
    supervisor whose agent is on a call hears 'all circuits busy', not 'not answering'."""
    service = make_service(site_config(sandbox, tmp_path, ami_secret="not-the-secret",
                                       store=store), reactor)
    check_backend(service, store)
    set_pins(service)
    service.startService()
    try:
        await agent_call(driver, "1001")
        assert service.live_map.snapshot(0)["servers"]["sandbox"]["stale"] is True  # type: ignore[index]
        await hears_service_unavailable(driver)
        (record,) = await closed_records(service, 1)
        assert (record.end_reason, record.auth_result) == ("service_unavailable", "ok")
        assert service.syncs["sandbox"].resyncs == 0
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_stopping_the_service_closes_ami_without_a_reconnect_warning(
        sandbox: AsteriskSandbox, tmp_path: Path, log_events: list[dict[str, object]],
        store: str) -> None:
    """An admin stopping the server (Ctrl-C, SIGTERM) sees AMI closed, not 'lost'."""
    service = make_service(site_config(sandbox, tmp_path, store=store), reactor)
    check_backend(service, store)
    service.startService()
    await wait_ready(service)
    await service.stopService()
    texts = [str(e.get("log_format", "")) for e in log_events]
    assert any("AMI connection to {name} closed" in t for t in texts)
    assert not any("lost; reconnecting" in t for t in texts)
    assert not failures(log_events)
