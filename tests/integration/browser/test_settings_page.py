"""The settings page in a real Chromium on the real Asterisk: a wrong AMI password saved
from the page takes the link down, the right one brings it back, without a restart; the
password never comes back to the browser; the audit view lists the changes' effects."""

from __future__ import annotations

import pytest_twisted
from selenium.webdriver.common.by import By

from fastagi_spy.service import SpyService
from tests.integration.browser.signin import sign_in
from tests.integration.browser.web import BOSS, LEAD, Page


async def save_password(page: Page, secret: str) -> None:
    field = await page.find("input[name='sandbox.ami_secret']")
    await page.run(field.clear)
    await page.run(field.send_keys, secret)
    await page.run((await page.find("#settings-form button[type=submit]")).click)
    await page.until("the save confirmed", lambda d: "sandbox: ami_secret" in
                     d.find_element(By.ID, "settings-result").text)


async def link_shown(page: Page, state: str) -> None:
    await page.until(f"the sandbox link {state}", lambda d: d.find_element(
        By.CSS_SELECTOR, "[data-link='sandbox']").text == f"link {state}")


@pytest_twisted.ensureDeferred
async def test_a_wrong_ami_password_shows_the_link_down_and_the_right_one_up(
        page: Page, web_site: SpyService) -> None:
    right = web_site.config.asterisk[0].ami_secret
    await sign_in(page, BOSS, "/settings")
    await link_shown(page, "up")
    assert right not in await page.script("return document.documentElement.outerHTML")

    await save_password(page, "not-the-password-1")
    await link_shown(page, "down")
    assert not web_site.clients["sandbox"].ready  # the server's own view agrees
    await page.screenshot("settings-link-down")

    await save_password(page, right)
    await link_shown(page, "up")
    assert web_site.clients["sandbox"].ready
    await page.get("/settings")  # a fresh load: the password field is empty again
    field = await page.find("input[name='sandbox.ami_secret']")
    assert await page.run(field.get_attribute, "value") == ""
    html = await page.script("return document.documentElement.outerHTML")
    assert right not in html and "not-the-password-1" not in html
    assert html.count("(changed)") == 2  # both changes recorded, neither secret
    await page.screenshot("settings")


@pytest_twisted.ensureDeferred
async def test_without_configure_the_settings_are_refused(page: Page) -> None:
    await sign_in(page, LEAD, "/audit")
    assert await page.status("/settings") == 403
    assert await page.status("/settings", "POST", {"X-CSRF-Token": "x"}) == 403
    assert await page.status("/audit") == 200
