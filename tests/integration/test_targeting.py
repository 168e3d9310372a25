"""Exact targeting while the call centre moves, on the real Asterisk 22.

Nothing here reads /api/live or the live map before dialling: a supervisor only dials.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor

from fastagi_spy.sandbox import AsteriskSandbox
from fastagi_spy.service import SpyService, make_service
from tests.integration.audio import heard
from tests.integration.conftest import check_backend
from tests.integration.driver import Driver, is_event, sleep, tag
from tests.integration.site import (
    TONE,
    agent_call,
    answer,
    heard_prompt,
    set_pins,
    site_config,
    supervisor_dials,
    wait_ready,
)

# Every test that takes `site` (or `store`) runs on SQLite and on the real PostgreSQL.
pytestmark = pytest.mark.both_stores


async def agent_in_room(driver: Driver, agent: str, room: str) -> str:
    """``agent`` sits in ConfBridge ``room`` (VICIdial's way) and a customer joins it.
    Returns the agent's channel in the room: the one a spy on the room must reach."""
    mark = driver.mark()
    await driver.originate(f"Local/{agent}@fsp-agents/n", "fsp-handsets", "customer",
                           variables={"FSP_CONF": room}, caller_id=f"Agent <{agent}>")
    leg = await driver.new_channel(f"Local/{agent}@fsp-agents-", ";2", since=mark)
    await driver.wait_for(is_event("ConfbridgeJoin", Channel=leg), since=mark,
                          what=f"{agent} joining {room}")
    await driver.originate(f"Local/{room}@fsp-conf/n", "fsp-handsets", "customer",
                           caller_id="ACME <5551234>")
    await driver.wait_for(
        lambda m: m.event == "ConfbridgeJoin" and m.get("Conference") == room
        and (m.get("Channel") or "").startswith(f"Local/{room}@fsp-conf-"),
        since=mark, what=f"a customer joining {room}")
    return leg


async def spyee_of(driver: Driver, dial: str) -> str:
    """Supervisor 2001 dials ``dial``, types the PIN: the channel ChanSpy started on."""
    mark = driver.mark()
    sup = await supervisor_dials(driver, "2001", dial)
    await answer(driver, sup, "agent-pass", "1234", since=mark)
    start = await driver.wait_for(is_event("ChanSpyStart", SpyerChannel=sup.line), since=mark,
                                  what="ChanSpyStart")
    await driver.hangup(sup.line)
    return start.get("SpyeeChannel") or ""


@pytest_twisted.ensureDeferred
async def test_a_session_typed_right_after_the_agent_joined_reaches_that_agent(
        driver: Driver, site: SpyService) -> None:
    leg = await agent_in_room(driver, "1001", "9600002")
    assert await spyee_of(driver, "*2229600002") == leg


@pytest_twisted.ensureDeferred
async def test_a_room_that_changed_hands_reaches_the_new_holder(
        driver: Driver, site: SpyService) -> None:
    """1001 held room 9600003 and moved on to another customer; 1002 holds the room now.
    A spy on the room reaches 1002, never 1001's new call."""
    first = await agent_in_room(driver, "1001", "9600003")
    mark = driver.mark()
    await driver.hangup(first)
    await driver.wait_for(is_event("Hangup", Channel=first), since=mark, what="1001 leaving")
    elsewhere = await agent_call(driver, "1001")
    second = await agent_in_room(driver, "1002", "9600003")
    spyee = await spyee_of(driver, "*2229600003")
    assert spyee == second
    assert spyee != elsewhere.agent_leg


HOT_DESK = "Local/3050@fsp-agents/n"  # a phone in the sales room, no agent's own


@pytest_twisted.async_yield_fixture()
async def queue_site(sandbox: AsteriskSandbox, tmp_path: Path,
                     driver: Driver, store: str) -> AsyncIterator[SpyService]:
    """A site whose agents log in through the queue: queue membership is the truth."""
    service = make_service(site_config(sandbox, tmp_path, map_rules='logged_in_by = "login"',
                                       store=store), reactor)
    check_backend(service, store)
    set_pins(service)
    service.startService()
    await wait_ready(service)
    yield service
    await driver.action("QueueRemove", [("Queue", "fsp-sales"), ("Interface", HOT_DESK)])  # may be gone
    await service.stopService()


async def queue_login(driver: Driver, agent: str) -> None:
    done = await driver.action("QueueAdd", [("Queue", "fsp-sales"), ("Interface", HOT_DESK),
                                            ("MemberName", agent)])
    assert done.success, done.response


async def queue_logout(driver: Driver) -> None:
    done = await driver.action("QueueRemove", [("Queue", "fsp-sales"), ("Interface", HOT_DESK)])
    assert done.success, done.response


@pytest_twisted.ensureDeferred
async def test_a_hot_desk_phone_is_spied_on_as_whoever_is_logged_in_on_it(
        driver: Driver, queue_site: SpyService, sandbox: AsteriskSandbox) -> None:
    """1001 logs in on the phone and out again; 1002 logs in on it and takes a queue call.
    *2221001: 'not logged in', no spy.  *2221002: ChanSpy on that phone's leg of the queue
    call, and the supervisor hears both the customer and the agent."""
    await queue_login(driver, "1001")
    await queue_logout(driver)
    await queue_login(driver, "1002")
    rec = f"{sandbox.recordings}/{tag('hotdesk')}"
    mark = driver.mark()
    await driver.originate("Local/q@fsp-customers/n", "fsp-handsets", "customer",
                           variables={"__FSP_TONE_customer": str(TONE["customer"]),
                                      "__FSP_TONE_agent": str(TONE["agent"]), "__REC": rec},
                           caller_id="Customer <5551234>")
    leg = await driver.new_channel("Local/3050@fsp-agents-", ";1", since=mark)
    await driver.wait_for(lambda m: m.event == "BridgeEnter" and m.get("Channel") == leg,
                          since=mark, what="the hot-desk phone in the queue call")

    mark = driver.mark()
    sup = await supervisor_dials(driver, "2001", "*2221001")
    await answer(driver, sup, "agent-pass", "1234", since=mark)
    await heard_prompt(driver, sup, "vm-isunavail", since=mark)
    await driver.hangup(sup.line)
    assert not driver.seen(is_event("ChanSpyStart"), since=mark)

    mark = driver.mark()
    sup = await supervisor_dials(driver, "2001", "*2221002", rec=rec)
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
    assert heard(hears, TONE["customer"]) > 0.3
    assert heard(hears, TONE["agent"]) > 0.3
