"""Spying we did not start, and the audit chain, on the real Asterisk 22.

A ChanSpy run by a plain dialplan extension (``rogue-spy`` in the sandbox's ``[fsp-tests]``)
is audited as ``unexplained`` with the agent and Asterisk's own start and stop times; a
supervisor's ``*2221001`` (with the join notice's own ChanSpy) never is, and the log that run
leaves passes ``fastagi-spy audit --verify``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest_twisted
from twisted.internet import reactor, threads

from fastagi_spy.sandbox import AsteriskSandbox
from fastagi_spy.service import SpyService, make_service
from fastagi_spy.store.audit import AuditRecord
from tests.integration.driver import Driver, is_event, sleep
from tests.integration.site import (
    agent_call,
    answer,
    closed_records,
    set_pins,
    site_config,
    supervisor_dials,
    wait_ready,
)


def unexplained(site: SpyService) -> list[AuditRecord]:
    return [r for r in site.stores.audit.list(limit=50) if r.via == "unexplained"]


async def until_closed(site: SpyService, count: int) -> list[AuditRecord]:
    for _ in range(100):
        rows = unexplained(site)
        if len(rows) >= count and all(r.ended_at is not None for r in rows):
            return rows
        await sleep(0.1)
    raise AssertionError(f"no closed unexplained record: {site.stores.audit.list(limit=5)}")


async def audit_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The operator's command, off the reactor (the service keeps running meanwhile)."""
    command = [sys.executable, "-m", "fastagi_spy.cli", "audit", "--config", str(config), *args]
    done: subprocess.CompletedProcess[str] = await threads.deferToThread(
        subprocess.run, command, capture_output=True, text=True, timeout=60, check=False)
    return done


@pytest_twisted.ensureDeferred
async def test_a_chanspy_from_another_dialplan_is_audited_as_unexplained(
        driver: Driver, site: SpyService, tmp_path: Path) -> None:
    call = await agent_call(driver, "1001")
    mark = driver.mark()
    await driver.originate("Local/rogue-spy@fsp-tests/n", "fsp-handsets", "supervisor",
                           variables={"_FSP_SPY_ON": call.agent_leg})
    start = await driver.wait_for(is_event("ChanSpyStart", SpyeeChannel=call.agent_leg),
                                  since=mark, what="the rogue ChanSpyStart")
    spyer = start.get("SpyerChannel") or ""
    assert spyer.startswith("Local/rogue-spy@fsp-tests-") and spyer.endswith(";2")
    await sleep(1.0)
    await driver.hangup(spyer)
    stop = await driver.wait_for(is_event("ChanSpyStop", SpyerChannel=spyer), since=mark,
                                 what="the rogue ChanSpyStop")
    (row,) = await until_closed(site, 1)
    assert (row.server, row.channel, row.uniqueid) == ("sandbox", spyer,
                                                       start.get("SpyerUniqueid"))
    assert (row.agent, row.resolved_channel) == ("1001", call.agent_leg)
    assert row.spy_started_at == float(start.get("Timestamp") or "")
    assert row.spy_stopped_at == row.ended_at == float(stop.get("Timestamp") or "")
    assert row.detail == 'ChanSpy not started by us; spyer caller id 7777 Night Shift'
    assert row.supervisor is None and row.auth_result is None

    listed = await audit_cli(tmp_path / "site.toml", "--unexplained", "--format", "jsonl")
    assert listed.returncode == 0, listed.stderr
    (exported,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (exported["id"], exported["agent"], exported["via"]) == (row.id, "1001", "unexplained")
    assert exported["row_hash"]  # closed, so chained


@pytest_twisted.ensureDeferred
async def test_our_own_spy_and_its_notice_are_never_unexplained_and_the_log_verifies(
        driver: Driver, sandbox: AsteriskSandbox, tmp_path: Path) -> None:
    """*2221001 with the join notice on: two ChanSpy runs of ours (the supervisor's and the
    notice's), no unexplained record; then the run's whole log passes --verify, and an edit
    made with sqlite3 is named."""
    site = make_service(site_config(sandbox, tmp_path, notice="beep"), reactor)
    set_pins(site)
    site.startService()
    try:
        await wait_ready(site)
        call = await agent_call(driver, "1001")
        mark = driver.mark()
        sup = await supervisor_dials(driver, "2001", "*2221001")
        await answer(driver, sup, "agent-pass", "1234", since=mark)
        await driver.wait_for(is_event("ChanSpyStart", SpyerChannel=sup.line), since=mark,
                              what="our ChanSpyStart")
        await driver.wait_for(
            lambda m: (m.event == "ChanSpyStart" and m.get("SpyeeChannel") == call.agent_leg
                       and (m.get("SpyerChannel") or "").startswith(
                           "Local/notice@fastagi-spy-notice-")),
            since=mark, what="the notice's ChanSpyStart")
        await sleep(1.0)
        await driver.hangup(sup.line)
        await driver.wait_for(is_event("ChanSpyStop", SpyerChannel=sup.line), since=mark,
                              what="our ChanSpyStop")
        (record,) = await closed_records(site, 1)
        assert record.spy_started_at is not None and record.via == "phone"
        assert unexplained(site) == []
    finally:
        await site.stopService()

    config = tmp_path / "site.toml"
    verified = await audit_cli(config, "--verify")
    assert verified.returncode == 0, verified.stderr
    assert "audit chain OK" in verified.stdout
    listed = await audit_cli(config, "--unexplained", "--format", "jsonl")
    assert listed.returncode == 0 and listed.stdout == ""

    await threads.deferToThread(_edit, tmp_path / "site.sqlite3", record.id)
    broken = await audit_cli(config, "--verify")
    assert broken.returncode == 1
    assert f"BROKEN at row id {record.id} " in broken.stderr


def _edit(database: Path, record_id: int) -> None:
    import sqlite3

    conn = sqlite3.connect(database)
    conn.execute("UPDATE audit SET supervisor = '2002' WHERE id = ?", (record_id,))
    conn.commit()
    conn.close()
