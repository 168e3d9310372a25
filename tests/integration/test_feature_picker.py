"""Choosing an agent by ear with 0, and rights before status, on the real Asterisk 22.

A supervisor dials the bare feature code, types the PIN and then keys, all by SendDTMF; what
they are offered is read off the AGI commands Asterisk reports running on their line.
"""

from __future__ import annotations

import pytest
import pytest_twisted

from fastagi_spy.service import SpyService
from tests.integration.driver import Driver, is_event
from tests.integration.site import (
    Supervisor,
    agent_call,
    answer,
    closed_records,
    heard_prompt,
    is_prompt,
    supervisor_dials,
)

# Every test that takes `site` (or `store`) runs on SQLite and on the real PostgreSQL.
pytestmark = pytest.mark.both_stores


def said(driver: Driver, sup: Supervisor, since: int) -> list[str]:
    """The numbers said on the supervisor's line (SAY DIGITS), a repeat counted once."""
    numbers: list[str] = []
    for message in driver.seen(is_event("AGIExecStart", Channel=sup.line), since=since):
        command = message.get("Command") or ""
        if command.startswith("SAY DIGITS "):
            number = command.split('"')[1]
            if not numbers or numbers[-1] != number:
                numbers.append(number)
    return numbers


async def key_after(driver: Driver, sup: Supervisor, number: str, key: str, since: int) -> int:
    """Once ``number`` has been said and the short wait for a key began, press ``key``."""
    await driver.wait_for(is_prompt(sup, "SAY DIGITS", number), since=since,
                          what=f"SAY DIGITS {number}")
    mark = driver.mark()
    await driver.wait_for(lambda m: is_event("AGIExecStart", Channel=sup.line)(m)
                          and (m.get("Command") or "").startswith("WAIT FOR DIGIT"),
                          since=since, what="WAIT FOR DIGIT")
    await driver.type_digits(sup.handset, "supervisor", key)
    return mark


@pytest_twisted.ensureDeferred
async def test_0_offers_the_agents_on_a_call_longest_first_and_hash_spies_on_the_one_heard(
        driver: Driver, site: SpyService) -> None:
    """1001 and 1002 talk (1001 first), 100 is idle, 1003 (another team) talks too. The
    supervisor types 0 at the target prompt, hears 1001, presses 0, hears 1002, presses #:
    ChanSpy starts on 1002's leg. Nobody else was ever said."""
    await agent_call(driver, "1001")
    second = await agent_call(driver, "1002")
    await agent_call(driver, "1003")
    mark = driver.mark()
    sup = await supervisor_dials(driver, "2001", "*222")
    await answer(driver, sup, "agent-pass", "1234", since=mark)
    await answer(driver, sup, "agent-newlocation", "0", since=mark)
    await key_after(driver, sup, "1001", "0", mark)
    await key_after(driver, sup, "1002", "#", mark)
    start = await driver.wait_for(is_event("ChanSpyStart", SpyerChannel=sup.line), since=mark,
                                  what="ChanSpyStart")
    assert start.get("SpyeeChannel") == second.agent_leg
    assert said(driver, sup, mark) == ["1001", "1002"]
    record = site.stores.audit.list(limit=1)[0]
    assert (record.requested_target, record.agent) == ("1002", "1002")


@pytest_twisted.ensureDeferred
async def test_0_with_nobody_on_a_call_says_so_and_asks_again(
        driver: Driver, site: SpyService) -> None:
    mark = driver.mark()
    sup = await supervisor_dials(driver, "2001", "*222")
    await answer(driver, sup, "agent-pass", "1234", since=mark)
    await answer(driver, sup, "agent-newlocation", "0", since=mark)
    await heard_prompt(driver, sup, "dir-nomatch", since=mark)
    here = driver.mark()
    await driver.wait_for(is_prompt(sup, "GET DATA", "agent-newlocation"), since=here)
    assert said(driver, sup, mark) == []


@pytest_twisted.ensureDeferred
async def test_another_teams_agent_idle_or_talking_sounds_the_same_not_allowed(
        driver: Driver, site: SpyService) -> None:
    """A team_sales supervisor asks for team_support's 1003 while 1003 is idle, then while
    1003 talks: "not allowed" both times, and no spy. The audit tells the admin which."""
    mark = driver.mark()
    sup = await supervisor_dials(driver, "2001", "*2221003")
    await answer(driver, sup, "agent-pass", "1234", since=mark)
    await heard_prompt(driver, sup, "feature-not-avail-line", since=mark)
    await agent_call(driver, "1003")
    here = driver.mark()
    await answer(driver, sup, "agent-newlocation", "1003", since=mark)
    await heard_prompt(driver, sup, "feature-not-avail-line", since=here)
    again = driver.mark()
    await driver.wait_for(is_prompt(sup, "GET DATA", "agent-newlocation"), since=again)
    prompts = [m.get("Command") or "" for m in driver.seen(
        is_event("AGIExecStart", Channel=sup.line), since=mark)]
    streamed = [p for p in prompts if p.startswith("STREAM FILE")]
    assert len(streamed) == 2 and all('"feature-not-avail-line"' in p for p in streamed), prompts
    assert not driver.seen(is_event("ChanSpyStart"), since=mark)
    await driver.hangup(sup.line)
    idle, talking, _abandoned = sorted(await closed_records(site, 3), key=lambda r: r.id)
    assert (idle.end_reason, idle.agent) == ("denied", "1003")
    assert idle.detail is not None and idle.detail.startswith("team; agent not_")
    assert (talking.end_reason, talking.agent, talking.detail) == ("denied", "1003", "team")
