"""FASTAGI_SPY_AGENT on the real Asterisk 22: a pre-dial handler names the agent on a leg.

Agent 1001 answers a customer on hot-desk phone 3050 (Local/3050@fsp-agents), not on their
own configured device. The sandbox's pre-dial handler (fsp-agent-leg) sets
FASTAGI_SPY_AGENT=1001 on that leg, as a site's dialplan or dialler would.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_twisted

from fastagi_spy.sandbox import AsteriskSandbox
from fastagi_spy.service import SpyService
from tests.integration.audio import heard
from tests.integration.driver import Driver, is_event, sleep, tag
from tests.integration.site import TONE, answer, heard_prompt, supervisor_dials

# Every test that takes `site` (or `store`) runs on SQLite and on the real PostgreSQL.
pytestmark = pytest.mark.both_stores


async def hot_desk_call(driver: Driver, agent: str = "", rec: str = "") -> str:
    """A customer call answered on phone 3050; ``agent``: who the pre-dial handler names.
    Returns the phone's leg (Local/3050@fsp-agents-XXXX;1)."""
    variables = {"__FSP_TONE_customer": str(TONE["customer"]),
                 "__FSP_TONE_agent": str(TONE["agent"])}
    if agent:
        variables["__FSP_AGENT"] = agent
    if rec:
        variables["__REC"] = rec
    mark = driver.mark()
    await driver.originate("Local/3050@fsp-customers/n", "fsp-handsets", "customer",
                           variables=variables, caller_id="Customer <5551234>")
    leg = await driver.new_channel("Local/3050@fsp-agents-", ";1", since=mark)
    await driver.wait_for(lambda m: m.event == "BridgeEnter" and m.get("Channel") == leg,
                          since=mark, what="phone 3050 in the call")
    return leg


@pytest_twisted.ensureDeferred
async def test_a_leg_the_dialplan_marks_as_the_agents_is_spied_on_as_theirs(
        driver: Driver, site: SpyService, sandbox: AsteriskSandbox) -> None:
    """*2221001 spies on the 3050 leg marked FASTAGI_SPY_AGENT=1001, and the supervisor
    hears the customer and the agent. Once that call is over, an unmarked call on 3050 is
    not 1001's: *2221001 hears 'not answering' and no spy starts."""
    rec = f"{sandbox.recordings}/{tag('agentvar')}"
    leg = await hot_desk_call(driver, agent="1001", rec=rec)
    assert driver.seen(lambda m: m.event == "VarSet" and m.get("Channel") == leg
                       and m.get("Variable") == "FASTAGI_SPY_AGENT" and m.get("Value") == "1001")

    mark = driver.mark()
    sup = await supervisor_dials(driver, "2001", "*2221001", rec=rec)
    await answer(driver, sup, "agent-pass", "1234", since=mark)
    start = await driver.wait_for(is_event("ChanSpyStart", SpyerChannel=sup.line), since=mark,
                                  what="ChanSpyStart")
    assert start.get("SpyeeChannel") == leg
    await sleep(3.0)
    await driver.hangup_all()
    await sleep(1.0)  # MixMonitor finishes its files on hangup
    hears = sandbox.host_path(f"{rec}-supervisor-hears.wav")
    for _ in range(50):
        if hears.exists() and hears.stat().st_size > 8000:
            break
        await sleep(0.1)
    assert heard(Path(hears), TONE["customer"]) > 0.3
    assert heard(Path(hears), TONE["agent"]) > 0.3

    await hot_desk_call(driver)
    mark = driver.mark()
    sup = await supervisor_dials(driver, "2001", "*2221001")
    await answer(driver, sup, "agent-pass", "1234", since=mark)
    await heard_prompt(driver, sup, "number-not-answering", since=mark)
    await driver.hangup(sup.line)
    assert not driver.seen(is_event("ChanSpyStart"), since=mark)
