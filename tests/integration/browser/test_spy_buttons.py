"""The Live Monitor's buttons in a real Chromium on the real Asterisk: Listen rings the
person's own (Local-channel, auto-answering) phone and a ChanSpyStart on that agent's leg
follows; the page says "Connected"; the audit view shows it came from the page. A person
without spy sees no buttons and gets 403; with the feature codes blanked the buttons go."""

from __future__ import annotations

import pytest_twisted
from selenium.webdriver.common.by import By

from fastagi_spy.service import SpyService
from fastagi_spy.wire.ami import AMIMessage
from tests.integration.browser.signin import sign_in
from tests.integration.browser.web import BOSS, LEAD, VIEWER, Page
from tests.integration.driver import Driver, Predicate
from tests.integration.site import AgentCall, agent_call

PHONE_3001 = "Local/2001@fsp-api-phones-"  # BOSS's phone (web3001); its ;1 half spies


def controls(agent: str) -> str:
    return f"table#live td.controls[data-agent='{agent}']"


async def buttons(page: Page, agent: str) -> list[str]:
    found = await page.all(f"{controls(agent)} button.spy")
    return [await page.run(b.get_attribute, "data-mode") for b in found]


async def row_shown(page: Page, agent: str, active: bool) -> None:
    want = "1" if active else "0"
    await page.find(f"{controls(agent)}[data-active='{want}']")
    # actions.js has asked which buttons this person gets:
    await page.until("the spy modes known", lambda d: d.execute_script(
        "return document.getElementById('live').dataset.spyModes !== undefined"))


async def post_spy(page: Page, agent: str, mode: str) -> int:
    """POST /api/spy from the page, with its own CSRF token: what a forged button sends."""
    code: int = await page.script(
        "const t = document.querySelector('meta[name=csrf-token]').content;"
        "return fetch('/api/spy', {method: 'POST', credentials: 'same-origin',"
        " headers: {'X-CSRF-Token': t, 'Content-Type': 'application/x-www-form-urlencoded'},"
        " body: new URLSearchParams({agent: arguments[0], mode: arguments[1]})})"
        ".then(r => r.text().then(t => { window.lastSpyReply = t; return r.status; }));",
        agent, mode)
    return code


def spies_on(call: AgentCall, phone: str) -> Predicate:
    def match(m: AMIMessage) -> bool:
        spyer = m.get("SpyerChannel") or ""
        return (m.event == "ChanSpyStart" and m.get("SpyeeChannel") == call.agent_leg
                and spyer.startswith(phone))
    return match


@pytest_twisted.ensureDeferred
async def test_listen_rings_the_persons_phone_and_spies_on_that_agent(
        page: Page, web_site: SpyService, driver: Driver) -> None:
    call = await agent_call(driver, "1001")
    await sign_in(page, BOSS, "/live")
    await row_shown(page, "1001", active=True)
    assert await buttons(page, "1001") == ["listen", "whisper", "barge"]
    mark = driver.mark()
    await page.run((await page.find(f"{controls('1001')} button.spy-listen")).click)
    start = await driver.wait_for(spies_on(call, PHONE_3001), since=mark,
                                  what="ChanSpyStart from the person's phone on 1001")
    assert (start.get("SpyerChannel") or "").endswith(";1")
    await page.until("Connected", lambda d: d.find_element(By.ID, "spy-status")
                     .get_attribute("data-state") == "connected")
    await page.screenshot("live-listening")
    await driver.hangup_all()

    await page.get("/audit")
    await page.until("the page's rows", lambda d: len(d.find_elements(
        By.XPATH, "//table[@class='audit']//td[text()='page']")) >= 2)
    await page.screenshot("audit")


@pytest_twisted.ensureDeferred
async def test_a_person_without_spy_sees_no_buttons_and_is_refused(
        page: Page, web_site: SpyService, driver: Driver) -> None:
    await agent_call(driver, "1003")  # support: VIEWER's team
    mark = driver.mark()
    await sign_in(page, VIEWER, "/live")
    await row_shown(page, "1003", active=True)
    assert await buttons(page, "1003") == []
    assert await post_spy(page, "1003", "listen") == 403, await page.script(
        "return window.lastSpyReply")
    await driver.hangup_all()
    # Nothing rang: no phone of the bundle's fsp-api-phones came up.
    assert not driver.seen(lambda m: m.event == "Newchannel" and "@fsp-api-phones"
                           in (m.get("Channel") or ""), since=mark)


@pytest_twisted.ensureDeferred
async def test_only_the_persons_modes_are_offered_and_others_refused(
        page: Page, web_site: SpyService, driver: Driver) -> None:
    await agent_call(driver, "1001")
    await sign_in(page, LEAD, "/live")  # spy, listen only
    await row_shown(page, "1001", active=True)
    assert await buttons(page, "1001") == ["listen"]
    assert await post_spy(page, "1001", "barge") == 403
    await driver.hangup_all()


@pytest_twisted.ensureDeferred
async def test_with_the_feature_codes_blanked_the_buttons_are_hidden(
        page: Page, web_site: SpyService, driver: Driver) -> None:
    await sign_in(page, BOSS, "/settings")
    for name in ("code_listen", "code_whisper", "code_barge"):
        field = await page.find(f"input[name='{name}']")
        await page.run(field.clear)
    await page.run((await page.find("#settings-form button[type=submit]")).click)
    await page.until("the codes saved", lambda d: "code_barge" in
                     d.find_element(By.ID, "settings-result").text)
    await agent_call(driver, "1001")
    await page.get("/live")
    await row_shown(page, "1001", active=True)  # live state still shown
    assert await buttons(page, "1001") == []
    assert await post_spy(page, "1001", "listen") == 403
    await driver.hangup_all()
