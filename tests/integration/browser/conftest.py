"""Browser tests: a real headless Chromium against our real server on the sandbox Asterisk.

They live under tests/integration/ so they share its one Asterisk per test session (the
`sandbox` and `driver` fixtures). Fixtures here:

- `browser`: one Chromium for the whole session (starting one costs seconds);
- `screenshots`: <pytest's basetemp>/screenshots, the run's output directory;
- `web_site`: our service (site.py's config plus the web people of web.py, passwords set);
- `page`: a `Page` for the test, cookies cleared, window at laptop size, at `web_site`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_twisted
from selenium.webdriver.remote.webdriver import WebDriver
from twisted.internet import reactor

from fastagi_spy.sandbox import AsteriskSandbox
from fastagi_spy.service import SpyService, make_service
from tests.integration.browser.web import LAPTOP, PEOPLE_TOML, Page, new_chromium, set_passwords
from tests.integration.site import set_pins, site_config, wait_ready


@pytest.fixture(scope="session")
def browser() -> Iterator[WebDriver]:
    driver = new_chromium()
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.getbasetemp() / "screenshots"
    path.mkdir(exist_ok=True)
    return path


@pytest_twisted.async_yield_fixture()
async def web_site(sandbox: AsteriskSandbox, tmp_path: Path) -> AsyncIterator[SpyService]:
    service = make_service(site_config(sandbox, tmp_path, extra=PEOPLE_TOML), reactor)
    set_pins(service)
    set_passwords(service)
    service.startService()
    await wait_ready(service)
    yield service
    await service.stopService()


def base_url(service: SpyService) -> str:
    port = int(service.config.http_listen.split(":")[1])
    return f"http://127.0.0.1:{port}"


@pytest_twisted.async_yield_fixture()
async def page(browser: WebDriver, web_site: SpyService, screenshots: Path
               ) -> AsyncIterator[Page]:
    view = Page(browser, base_url(web_site), screenshots)
    await view.resize(LAPTOP)
    # Cookies belong to 127.0.0.1 whatever the port: one test's session must not leak into
    # the next test's server.
    await view.get("/favicon.ico")
    await view.run(browser.delete_all_cookies)
    yield view
    await view.run(browser.delete_all_cookies)
