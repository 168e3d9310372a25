"""Signing in through the form straight to a given page (web.login lands on /live)."""

from __future__ import annotations

from selenium.webdriver.common.by import By

from tests.integration.browser.web import Page, Person


async def sign_in(page: Page, person: Person, then: str) -> None:
    await page.get(f"/login?next={then}")
    await page.run((await page.find("input[name=user]")).send_keys, person.number)
    await page.run((await page.find("input[name=password]")).send_keys, person.password)
    await page.run((await page.find("form button[type=submit]")).click)
    await page.until("the signed-in header",
                     lambda d: d.find_elements(By.CSS_SELECTOR, "form[action='/logout']"))
