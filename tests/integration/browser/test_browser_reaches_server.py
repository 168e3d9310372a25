"""The browser test rig itself: Chromium reaches our server on the reactor while it runs."""

from __future__ import annotations

import pytest_twisted
from selenium.webdriver.common.by import By

from tests.integration.browser.web import Page


@pytest_twisted.ensureDeferred
async def test_chromium_gets_an_answer_from_our_running_server(page: Page) -> None:
    # A path nobody serves: Twisted's own 404 page, served while the browser waited in its
    # thread.
    await page.get("/no-such-page-here")
    body = await page.until("the 404 page", lambda d: d.find_element(By.TAG_NAME, "body").text)
    assert "No Such Resource" in body
    shot = await page.screenshot("rig")
    assert shot.stat().st_size > 0
