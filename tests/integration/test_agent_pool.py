"""AgentLogin (app_agent_pool) on the real Asterisk 22: a login made before our AMI
connection came up still counts, because the resync reads the Agents list.

A sandbox of its own: agents.conf gains pool agent 1001, the AMI account gains the
`agent` write permission the Agents action needs, and two contexts stand in for a site's
login code (AgentLogin) and a queue-less agent call (AgentRequest). The site's rule is
logged_in_by = "login": only the pool login makes 1001 logged in, on the phone that ran it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_twisted

from fastagi_spy.sandbox import AsteriskSandbox
from tests.integration.conftest import TEAMS, check_backend
from tests.integration.driver import Driver, is_event
from tests.integration.site import TONE, answer, site_config, supervisor_dials
from tests.integration.test_agi_peers import running

# Every test that takes `site` (or `store`) runs on SQLite and on the real PostgreSQL.
pytestmark = pytest.mark.both_stores

POOL_CONFIG = {
    "agents.conf": "[1001](agent-defaults)\nfullname = Agent 1001\n",
    # The last "write" of an account wins: the shipped one plus `agent` for Agents.
    "manager_fastagi_spy.conf": "write = reporting,call,originate,agent\n",
    "extensions.conf": (
        "[fsp-pool-login]\n"
        "exten => _X.,1,Set(SPYGROUP=${FSP_TEAM_${EXTEN}})\n"
        " same => n,AgentLogin(${EXTEN},s)\n"
        " same => n,Hangup()\n"
        # A customer who keeps asking while the agent is still BUSY (app_agent_pool holds a
        # fresh login back for a moment before its first call).
        "[fsp-pool-customers]\n"
        "exten => _X.,1,Set(tries=0)\n"
        " same => n(try),AgentRequest(${EXTEN})\n"
        " same => n,Set(tries=$[${tries} + 1])\n"
        ' same => n,GotoIf($["${AGENT_STATUS}" = "BUSY" & ${tries} < 40]?again)\n'
        " same => n,Hangup()\n"
        " same => n(again),Wait(0.25)\n"
        " same => n,Goto(try)\n"),
}


@pytest.fixture(scope="module")
def pool_box() -> Iterator[AsteriskSandbox]:
    box = AsteriskSandbox(name=f"fsp-test-pool-{os.getpid()}", teams=TEAMS,
                          extra_config=POOL_CONFIG)
    box.start()
    yield box
    box.stop()
    shutil.rmtree(box.host_path(box.base), ignore_errors=True)


@pytest_twisted.async_yield_fixture()
async def on_box(pool_box: AsteriskSandbox) -> AsyncIterator[Driver]:
    drv = Driver(pool_box)
    await drv.connect()
    yield drv
    await drv.hangup_all()
    await drv.close()


async def pool_login(driver: Driver, agent: str) -> str:
    """``agent`` runs AgentLogin on phone Local/<agent>@fsp-pool-login; returns its channel."""
    mark = driver.mark()
    await driver.originate(f"Local/{agent}@fsp-pool-login/n", "fsp-handset", "agent",
                           variables={"FSP_TONE_agent": str(TONE["agent"])})
    login = await driver.wait_for(is_event("AgentLogin", Agent=agent), since=mark,
                                  what=f"AgentLogin {agent}")
    return login.get("Channel") or ""


@pytest_twisted.ensureDeferred
async def test_an_agent_logged_in_before_the_server_started_is_spied_on(
        on_box: Driver, pool_box: AsteriskSandbox, tmp_path: Path, store: str) -> None:
    """1001 runs AgentLogin; then our server starts (its first resync is what a reconnect
    does). A customer is put through to 1001 with AgentRequest: *2221001 spies on the very
    channel that ran AgentLogin."""
    leg = await pool_login(on_box, "1001")
    listed = await on_box.action("Agents")
    (item,) = [e for e in listed.events if e.get("Agent") == "1001"]
    assert (item.event, item.get("Status"), item.get("Channel")) == ("Agents", "AGENT_IDLE", leg)

    config = site_config(pool_box, tmp_path, map_rules='logged_in_by = "login"', store=store)
    async with running(config) as service:
        check_backend(service, store)
        mark = on_box.mark()
        await on_box.originate("Local/1001@fsp-pool-customers/n", "fsp-handsets", "customer",
                               variables={"FSP_TONE_customer": str(TONE["customer"])},
                               caller_id="Customer <5551234>")
        customer = await on_box.new_channel("Local/1001@fsp-pool-customers-", ";2", since=mark)
        bridged = await on_box.wait_for(is_event("BridgeEnter", Channel=customer), since=mark,
                                        what="the customer put through to 1001")
        await on_box.wait_for(
            is_event("BridgeEnter", Channel=leg,
                     BridgeUniqueid=bridged.get("BridgeUniqueid") or "-"),
            since=mark, what="1001's login channel in the customer's bridge")

        mark = on_box.mark()
        sup = await supervisor_dials(on_box, "2001", "*2221001")
        await answer(on_box, sup, "agent-pass", "1234", since=mark)
        start = await on_box.wait_for(is_event("ChanSpyStart", SpyerChannel=sup.line),
                                      since=mark, what="ChanSpyStart")
        assert start.get("SpyeeChannel") == leg
