"""The FastAGI port on the real Asterisk 22: which server a call comes from, and what it refuses.

Each test runs the service as an admin would configure it and dials the feature codes through
the real bundle; the refusals are heard as the bundle's fail-closed prompt.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import reactor

from fastagi_spy.config import Config
from fastagi_spy.sandbox import AsteriskSandbox, free_port
from fastagi_spy.service import SpyService, make_service
from fastagi_spy.wire.ami import AMIMessage
from tests.integration.driver import Driver, is_event, sleep
from tests.integration.site import (
    Supervisor,
    agent_call,
    answer,
    closed_records,
    set_pins,
    site_config,
    supervisor_dials,
)
from tests.integration.test_live_map import agent_of, get_live, until


@asynccontextmanager
async def running(config: Config, ready: Callable[[SpyService], bool] | None = None,
                  ) -> AsyncIterator[SpyService]:
    """The service on ``config``, once ``ready`` (default: every server resynced once)."""
    service = make_service(config, reactor)
    set_pins(service)
    service.startService()
    try:
        ready = ready or (lambda s: all(sync.resyncs for sync in s.syncs.values()))
        for _ in range(100):
            if ready(service):
                break
            await sleep(0.1)
        else:
            raise AssertionError("the service's AMI never came up")
        yield service
    finally:
        await service.stopService()


def bundle_error(sup: Supervisor) -> Callable[[AMIMessage], bool]:
    """The bundle's fail-closed branch on the supervisor's line: "all circuits busy"."""
    return lambda m: (m.event == "Newexten" and m.get("Channel") == sup.line
                      and m.get("Application") == "Playback"
                      and "all-circuits-busy-now" in (m.get("AppData") or ""))


def agi_commands(driver: Driver, sup: Supervisor, since: int) -> list[AMIMessage]:
    return driver.seen(is_event("AGIExecStart", Channel=sup.line), since=since)


async def hears_bundle_error_and_no_spy(driver: Driver, sup: Supervisor, since: int) -> None:
    await driver.wait_for(bundle_error(sup), since=since, what="the bundle's error prompt")
    await driver.wait_for(is_event("Hangup", Channel=sup.line), since=since)
    assert not driver.seen(is_event("ChanSpyStart"), since=since)


@pytest_twisted.ensureDeferred
async def test_the_normal_flow_works_with_the_sandbox_listed_as_its_own_peer(
        driver: Driver, sandbox: AsteriskSandbox, tmp_path: Path) -> None:
    """agi_peers = ["127.0.0.1"] (the site config): *2221001 + PIN spies on 1001."""
    config = site_config(sandbox, tmp_path)
    assert [str(n) for n in config.asterisk[0].agi_peers] == ["127.0.0.1/32"]
    async with running(config):
        call = await agent_call(driver, "1001")
        mark = driver.mark()
        sup = await supervisor_dials(driver, "2001", "*2221001")
        await answer(driver, sup, "agent-pass", "1234", since=mark)
        start = await driver.wait_for(is_event("ChanSpyStart", SpyerChannel=sup.line), since=mark)
        assert start.get("SpyeeChannel") == call.agent_leg


@pytest_twisted.ensureDeferred
async def test_a_peer_no_server_lists_is_closed_before_any_command(
        driver: Driver, sandbox: AsteriskSandbox, tmp_path: Path,
        log_events: list[dict[str, Any]]) -> None:
    """The only server lists 127.0.0.2; Asterisk connects from 127.0.0.1: the connection is
    closed unread, so not even ANSWER is sent; the supervisor hears the bundle's "all circuits
    busy" and no spy starts."""
    async with running(site_config(sandbox, tmp_path, agi_peers='["127.0.0.2"]')) as service:
        await agent_call(driver, "1001")
        mark = driver.mark()
        sup = await supervisor_dials(driver, "2001", "*2221001")
        await hears_bundle_error_and_no_spy(driver, sup, mark)
        assert agi_commands(driver, sup, mark) == []
        assert any("refused a connection" in str(e.get("log_format")) and e.get("peer") == "127.0.0.1"
                   for e in log_events)
        assert service.stores.audit.list(limit=5) == []  # nothing read, nothing recorded


@pytest_twisted.ensureDeferred
async def test_over_the_session_cap_the_next_supervisor_hears_all_circuits_busy(
        driver: Driver, sandbox: AsteriskSandbox, tmp_path: Path) -> None:
    """max_agi_sessions = 1: while one supervisor is at the PIN prompt, a second one's call
    gets no command and hears the bundle's "all circuits busy"; the first is served on."""
    config = site_config(sandbox, tmp_path, server="max_agi_sessions = 1")
    async with running(config):
        call = await agent_call(driver, "1001")
        mark = driver.mark()
        first = await supervisor_dials(driver, "2001", "*2221001")
        await driver.wait_for(lambda m: m.event == "AGIExecStart" and m.get("Channel") == first.line
                              and '"agent-pass"' in (m.get("Command") or ""), since=mark)
        second = await supervisor_dials(driver, "2002", "*2221001")
        await hears_bundle_error_and_no_spy(driver, second, mark)
        assert agi_commands(driver, second, mark) == []
        await driver.type_digits(first.handset, "supervisor", "1234#")
        start = await driver.wait_for(is_event("ChanSpyStart", SpyerChannel=first.line),
                                      since=mark)
        assert start.get("SpyeeChannel") == call.agent_leg


async def set_global(driver: Driver, name: str, value: str) -> None:
    """A dialplan global, as `[globals]` in extensions.conf would set it (no Channel)."""
    await driver.action("Setvar", [("Variable", name), ("Value", value)])


@pytest_twisted.ensureDeferred
async def test_the_server_named_in_the_agi_url_must_be_one_the_peer_speaks_for(
        driver: Driver, site: SpyService) -> None:
    """FASTAGI_SPY_SERVER=sandbox: the bundle sends ?server=sandbox and the spy runs. A name
    the peer is not listed for: refused before any command, audited, the bundle's error."""
    call = await agent_call(driver, "1001")
    try:
        await set_global(driver, "FASTAGI_SPY_SERVER", "sandbox")
        mark = driver.mark()
        sup = await supervisor_dials(driver, "2001", "*2221001")
        await answer(driver, sup, "agent-pass", "1234", since=mark)
        start = await driver.wait_for(is_event("ChanSpyStart", SpyerChannel=sup.line), since=mark)
        assert start.get("SpyeeChannel") == call.agent_leg
        await driver.hangup(sup.line)
        await closed_records(site, 1)

        await set_global(driver, "FASTAGI_SPY_SERVER", "pbx9")
        mark = driver.mark()
        sup = await supervisor_dials(driver, "2001", "*2221001")
        await hears_bundle_error_and_no_spy(driver, sup, mark)
        assert agi_commands(driver, sup, mark) == []
        (record,) = await closed_records(site, 1)
        assert record.end_reason == "denied" and record.channel == sup.line
        assert "'pbx9'" in (record.detail or "") and "does not match" in (record.detail or "")
    finally:
        await set_global(driver, "FASTAGI_SPY_SERVER", "")


@pytest_twisted.ensureDeferred
async def test_a_stale_server_never_refuses_a_session_on_the_healthy_one(
        driver: Driver, sandbox: AsteriskSandbox, tmp_path: Path) -> None:
    """A second server whose AMI never answers stays stale; a supervisor on the healthy one
    dials the 7-digit session the Live Monitor shows and spies on it."""
    down = (f'\n[[asterisk]]\nname = "down"\nami_port = {free_port()}\n'
            'ami_username = "fastagi-spy"\nami_secret = "x"\nagi_peers = ["127.0.0.2"]\n')
    config = site_config(sandbox, tmp_path, extra=down)
    async with running(config, ready=lambda s: bool(s.syncs["sandbox"].resyncs)) as service:
        call = await agent_call(driver, "1001")
        session: list[str] = []

        async def shown() -> bool:  # what the supervisor reads on the Live Monitor
            _, snap = await get_live(service)
            assert snap["servers"]["down"]["stale"]
            agent = agent_of(snap, "1001")
            session[:] = [agent["session_id"]] if agent["status"] == "Talking" else []
            return bool(session and session[0])

        await until(shown)
        assert len(session[0]) == 7
        mark = driver.mark()
        sup = await supervisor_dials(driver, "2001", f"*222{session[0]}")
        await answer(driver, sup, "agent-pass", "1234", since=mark)
        start = await driver.wait_for(is_event("ChanSpyStart", SpyerChannel=sup.line), since=mark)
        assert start.get("SpyeeChannel") == call.agent_leg
