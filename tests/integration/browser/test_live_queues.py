"""The Live Monitor's queue side in a real Chromium, fed by the real Asterisk 22: a member
paused with a reason shows "Paused (<reason>)" in the status column, and the queue strip
shows a caller waiting in fsp-sales (no member to answer) with a ticking longest wait,
then the abandon once the caller hangs up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_twisted
from selenium.webdriver.remote.webdriver import WebDriver

from fastagi_spy.service import SpyService
from tests.integration.browser.conftest import base_url
from tests.integration.browser.web import BOSS, LAPTOP, Page, login
from tests.integration.driver import Driver, is_event

QUEUE = "fsp-sales"
MEMBER = "Local/1002@fsp-agents/n"
# The row's status badge text, or null while the row is not there.
BADGE_JS = """
const tr = document.querySelector('#live tr[data-agent="' + arguments[0] + '"]');
return tr ? tr.cells[1].textContent : null;
"""
# The strip's card for fsp-sales: its data and its longest-wait figure, or null.
CARD_JS = """
const li = document.querySelector('#queue-strip li.queue[data-queue="' + arguments[0] + '"]');
if (!li) return null;
return {waiting: li.dataset.waiting, abandoned: li.dataset.abandoned,
        wait: li.querySelector('.queue-wait strong').textContent,
        visible: li.offsetHeight > 0 && !document.getElementById('queue-strip').hidden};
"""


@pytest_twisted.async_yield_fixture()
async def live(browser: WebDriver, web_site: SpyService, screenshots: Path
               ) -> AsyncIterator[Page]:
    view = Page(browser, base_url(web_site), screenshots)
    await view.resize(LAPTOP)
    await view.get("/favicon.ico")
    await view.run(browser.delete_all_cookies)
    yield view
    await view.run(browser.delete_all_cookies)


async def color_scheme(page: Page, scheme: str | None) -> None:
    """Makes Chromium report ``scheme`` as the system's colour scheme (None: its own again)."""
    features = [{"name": "prefers-color-scheme", "value": scheme}] if scheme else []
    cdp = page.driver.execute_cdp_cmd  # type: ignore[attr-defined]  # Chromium's driver
    await page.run(cdp, "Emulation.setEmulatedMedia", {"features": features})


def badge(agent: str) -> Any:
    return lambda d: d.execute_script(BADGE_JS, agent)


def card(d: WebDriver) -> Any:
    return d.execute_script(CARD_JS, QUEUE)


@pytest_twisted.ensureDeferred
async def test_a_member_paused_with_a_reason_shows_it_in_the_status_column(
        live: Page, driver: Driver) -> None:
    await login(live, BOSS)
    await driver.action("QueueAdd", [("Queue", QUEUE), ("Interface", MEMBER),
                                     ("MemberName", "1002")])
    try:
        assert await live.until("agent 1002 idle", lambda d: badge("1002")(d) == "Idle")
        mark = driver.mark()
        await driver.action("QueuePause", [("Queue", QUEUE), ("Interface", MEMBER),
                                           ("Paused", "true"), ("Reason", "Lunch")])
        await driver.wait_for(is_event("QueueMemberPause", Queue=QUEUE), since=mark,
                              what="app_queue pausing 1002")
        assert await live.until("1002 paused for lunch",
                                lambda d: badge("1002")(d) == "Paused (Lunch)")
        await live.screenshot("paused-with-reason")
        # Unpaused: the reason goes with the pause.
        await driver.action("QueuePause", [("Queue", QUEUE), ("Interface", MEMBER),
                                           ("Paused", "false")])
        assert await live.until("1002 idle again", lambda d: badge("1002")(d) == "Idle")
    finally:
        await driver.action("QueueRemove", [("Queue", QUEUE), ("Interface", MEMBER)])


@pytest_twisted.ensureDeferred
async def test_the_queue_strip_shows_a_waiting_caller_then_the_abandon(
        live: Page, driver: Driver, screenshots: Path) -> None:
    await login(live, BOSS)
    before = await live.until("the fsp-sales card", card)
    assert before["visible"] and before["waiting"] == "0"
    abandoned = int(before["abandoned"])

    mark = driver.mark()
    await driver.originate("Local/q@fsp-customers/n", "fsp-handsets", "customer",
                           caller_id="Initech <5557000>")
    await driver.wait_for(is_event("QueueCallerJoin", Queue=QUEUE), since=mark,
                          what="the caller joining fsp-sales")
    handset = await driver.new_channel("Local/q@fsp-customers-", ";1", since=mark)
    waiting = await live.until("1 waiting", lambda d: (c := card(d)) and c["waiting"] == "1"
                               and c)
    first = waiting["wait"]
    assert ":" in first
    await live.until("the longest wait to tick", lambda d: card(d)["wait"] != first)
    await live.screenshot("queue-strip")
    # The same in the dark theme (the system's choice, emulated): the strip must stay readable.
    await color_scheme(live, "dark")
    try:
        await live.screenshot("queue-strip-dark")
    finally:
        await color_scheme(live, None)

    mark = driver.mark()
    await driver.hangup(handset)
    await driver.wait_for(is_event("QueueCallerAbandon", Queue=QUEUE), since=mark,
                          what="the caller abandoning fsp-sales")
    done = await live.until("0 waiting, one more abandoned", lambda d: (c := card(d))
                            and c["waiting"] == "0" and int(c["abandoned"]) == abandoned + 1
                            and c)
    assert done["wait"] == "\u2013"
