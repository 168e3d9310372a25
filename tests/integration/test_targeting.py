"""Exact targeting while the call centre moves, on the real Asterisk 22.

Nothing here reads /api/live or the live map before dialling: a supervisor only dials.
"""

from __future__ import annotations

import pytest_twisted

from fastagi_spy.sandbox_driver import Driver, is_event
from fastagi_spy.service import SpyService
from tests.integration.site import agent_call, answer, supervisor_dials


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
