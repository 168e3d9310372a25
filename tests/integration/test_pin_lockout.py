"""The PIN prompt on the real Asterisk 22: saying nothing is not a wrong PIN.

The site locks a phone after 4 failures (site.py). A supervisor who dials from their own
phone and leaves the PIN prompt empty ('#' alone, or silence until it times out) on two
calls must still get in with the right PIN on the third; none of it sounds like a wrong PIN.
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
    is_prompt,
    supervisor_dials,
)

# Every test that takes `site` (or `store`) runs on SQLite and on the real PostgreSQL.
pytestmark = pytest.mark.both_stores

PIN_PROMPT = "agent-pass"


async def _nothing_typed(driver: Driver, sup: Supervisor, since: int) -> int:
    """At the PIN prompt asked after `since`, press '#' alone; returns a mark from which the
    next prompt is to be looked for."""
    await driver.wait_for(is_prompt(sup, "GET DATA", PIN_PROMPT), since=since,
                          what="PIN prompt")
    here = driver.mark()
    await driver.type_digits(sup.handset, "supervisor", "#")
    return here


@pytest_twisted.ensureDeferred
async def test_an_empty_pin_prompt_is_asked_again_and_never_locks_the_supervisor_out(
        driver: Driver, site: SpyService) -> None:
    """Call 1: '#', '#', then silence: the prompt comes back each time, then goodbye, and
    'login incorrect' is never heard. Call 2: '#', the prompt again, hang up. Call 3: the
    right PIN, and ChanSpy starts (before the fix the four empty entries were four wrong
    PINs, and the phone was locked out)."""
    call = await agent_call(driver, "1001")
    start = driver.mark()
    sup = await supervisor_dials(driver, "2001", "*2221001")
    after_first = await _nothing_typed(driver, sup, start)
    after_second = await _nothing_typed(driver, sup, after_first)
    await driver.wait_for(is_prompt(sup, "GET DATA", PIN_PROMPT), since=after_second,
                          what="third PIN prompt")  # then silence until GET DATA times out
    await driver.wait_for(is_event("Hangup", Channel=sup.line), since=start, timeout=30,
                          what="goodbye after three empty prompts")
    assert driver.seen(is_prompt(sup, "STREAM FILE", "vm-goodbye"), since=start)
    assert not driver.seen(is_prompt(sup, "STREAM FILE", "vm-incorrect"), since=start)
    first = (await closed_records(site, 1))[0]
    assert (first.auth_result, first.end_reason) == ("no_input", "abandoned")

    mark = driver.mark()
    sup = await supervisor_dials(driver, "2001", "*2221001")
    after = await _nothing_typed(driver, sup, mark)
    await driver.wait_for(is_prompt(sup, "GET DATA", PIN_PROMPT), since=after,
                          what="PIN prompt again")
    await driver.hangup(sup.line)
    await driver.wait_for(is_event("Hangup", Channel=sup.line), since=mark, what="hangup")
    assert not driver.seen(is_prompt(sup, "STREAM FILE", "vm-incorrect"), since=mark)

    mark = driver.mark()
    sup = await supervisor_dials(driver, "2001", "*2221001")
    await answer(driver, sup, PIN_PROMPT, "1234", since=mark)
    spy = await driver.wait_for(is_event("ChanSpyStart", SpyerChannel=sup.line), since=mark,
                                what="ChanSpyStart: not locked out")
    assert spy.get("SpyeeChannel") == call.agent_leg
