"""Signing in to the web page in a real Chromium, against the running server: the form, a
wrong password, rights (no Settings entry, 403 on /settings), the keyboard, both themes
and both window sizes (screenshots in the run's output)."""

from __future__ import annotations

import pytest_twisted
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from tests.integration.browser.web import BOSS, LAPTOP, LEAD, TABLET, VIEWER, Page, login


def nav_labels(d: WebDriver) -> list[str]:
    return [a.text for a in d.find_elements(By.CSS_SELECTOR, "nav.nav a")]


@pytest_twisted.ensureDeferred
async def test_a_person_signs_in_with_the_form_and_lands_on_the_page_asked_for(page: Page
                                                                                ) -> None:
    # The page asked for, without a session: the browser is sent to sign in first.
    await page.get("/audit")
    await page.find("form[action='/login'] input[name=user]")
    assert "/login?next=/audit" in await page.run(lambda: page.driver.current_url)
    await page.screenshot("login")
    await login(page, BOSS, next_path="/audit")
    assert (await page.run(lambda: page.driver.current_url)).endswith("/audit")
    assert BOSS.name in (await page.find(".who-name")).text
    assert await page.run(nav_labels, page.driver) == ["Live", "Settings", "Audit"]
    # The session cookie is out of the page's scripts' reach (HttpOnly).
    assert "fsp_session" not in await page.script("return document.cookie;")


@pytest_twisted.ensureDeferred
async def test_a_wrong_password_shows_an_error_and_signs_nobody_in(page: Page) -> None:
    await login(page, LEAD, password="not-the-password")
    alert = await page.find("p.alert[role=alert]")
    assert alert.text == "Wrong user or password."
    # The typed user is kept, the password is not.
    assert (await page.find("input[name=user]")).get_attribute("value") == LEAD.number
    assert (await page.find("input[name=password]")).get_attribute("value") == ""
    assert await page.all("form[action='/logout']") == []
    assert await page.status("/settings") == 302  # still signed out: sent to sign in


@pytest_twisted.ensureDeferred
async def test_without_configure_there_is_no_settings_entry_and_the_server_says_403(
        page: Page) -> None:
    await login(page, VIEWER, next_path="/audit")
    assert await page.run(nav_labels, page.driver) == ["Live", "Audit"]
    assert await page.status("/settings") == 403
    # Typing the address does not help either: the server's refusal, not a settings page.
    await page.get("/settings")
    body = await page.until("the refusal", lambda d: d.find_element(By.TAG_NAME, "body").text)
    assert "configure" in body and await page.all("form#settings-form") == []


@pytest_twisted.ensureDeferred
async def test_signing_out_needs_no_mouse_and_ends_the_session(page: Page) -> None:
    await login(page, LEAD, next_path="/audit")
    out = await page.find("form[action='/logout'] button")
    await page.run(out.send_keys, Keys.ENTER)
    await page.find("form[action='/login'] input[name=user]")
    assert await page.status("/audit") == 302


FOCUSED = ("const e = document.activeElement;"
           "return e.tagName.toLowerCase() + '|' + (e.getAttribute('name') || '') + '|' +"
           " (e.getAttribute('href') || '') + '|' + e.textContent.trim();")


async def tab_to(page: Page, count: int) -> list[str]:
    """What has the focus after each of ``count`` presses of Tab (as a keyboard does: to
    whatever has the focus now, from the top of a freshly loaded page)."""
    seen: list[str] = []
    for _ in range(count):
        await page.run(lambda: ActionChains(page.driver).send_keys(Keys.TAB).perform())
        seen.append(await page.script(FOCUSED))
    return seen


@pytest_twisted.ensureDeferred
async def test_the_login_form_and_the_navigation_are_reachable_with_tab(page: Page) -> None:
    await page.get("/login?next=/audit")
    await page.find("input[name=user]")
    # The user field has the focus on arrival; Tab walks the form in reading order.
    assert (await page.script(FOCUSED)).startswith("input|user|")
    order = await tab_to(page, 2)
    assert order[0].startswith("input|password|") and order[1] == "button|||Sign in", order
    # Signed in with the keyboard alone: type, Tab, type, Enter.
    user = await page.find("input[name=user]")
    await page.run(user.send_keys, BOSS.number, Keys.TAB, BOSS.password, Keys.ENTER)
    await page.find("form[action='/logout']")
    await page.get("/audit")  # freshly loaded: the keyboard starts at the top
    await page.find("form[action='/logout']")
    order = await tab_to(page, 8)
    hrefs = [entry.split("|")[2] for entry in order]
    for href in ("/live", "/settings", "/audit"):
        assert href in hrefs, order
    assert any(e.startswith("button|") and e.endswith("Sign out") for e in order), order
    # The focused element is visibly marked (the stylesheet's focus outline).
    outline = await page.script(
        "return getComputedStyle(document.activeElement).outlineStyle;")
    assert outline not in ("", "none")


@pytest_twisted.ensureDeferred
async def test_light_and_dark_follow_the_system_at_laptop_and_tablet_size(page: Page) -> None:
    await login(page, BOSS, next_path="/audit")
    colours = {}
    for scheme in ("light", "dark"):
        await page.run(page.driver.execute_cdp_cmd, "Emulation.setEmulatedMedia",
                       {"features": [{"name": "prefers-color-scheme", "value": scheme}]})
        colours[scheme] = await page.script(
            "return getComputedStyle(document.body).backgroundColor;")
        for name, size in (("laptop", LAPTOP), ("tablet", TABLET)):
            await page.resize(size)
            # Nothing wider than the window: no sideways scrolling of the whole page.
            overflow = await page.script(
                "return document.documentElement.scrollWidth - window.innerWidth;")
            assert overflow <= 0, (scheme, name, overflow)
            await page.screenshot(f"audit-{scheme}-{name}")
    await page.run(page.driver.execute_cdp_cmd, "Emulation.setEmulatedMedia", {"features": []})
    assert colours["light"] != colours["dark"]
    # Every stylesheet and script came from this server: nothing from the internet.
    sources = await page.script(
        "return performance.getEntriesByType('resource').map(e => e.name);")
    assert all(s.startswith(page.base_url) for s in sources), sources
