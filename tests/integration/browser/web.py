"""The browser side of the page tests: people with passwords, a headless Chromium driven from
the reactor thread without blocking it, and `login`.

Selenium blocks; our server runs on the same reactor as the test. Every browser call
therefore runs in a thread (`Page.run`), so the server keeps answering while Chromium waits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait
from twisted.internet import threads

from fastagi_spy.service import SpyService, pin_hasher

T = TypeVar("T")
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
LAPTOP, TABLET = (1280, 800), (800, 1100)
# An upper bound for "the page got there", never a measured duration: a failing wait is a
# page that never showed the thing, and the message says which.
PATIENCE = 20.0


@dataclass(frozen=True)
class Person:
    number: str
    password: str
    name: str


# The web's people, added to the integration site (site.py) as [[supervisors]] entries.
BOSS = Person("3001", "boss-password-1", "Floor boss")  # every scope, every team
LEAD = Person("3002", "lead-password-2", "Sales lead")  # sales only, spy (listen), no settings
VIEWER = Person("3003", "viewer-password-3", "Support viewer")  # support only, looks only
PEOPLE = (BOSS, LEAD, VIEWER)
PEOPLE_TOML = f"""
[[supervisors]]
number = "{BOSS.number}"
name = "{BOSS.name}"
teams = ["sales", "support"]
modes = ["listen", "whisper", "barge"]
see_everyone = true
spy = true
configure = true
phone = "web3001"

[[supervisors]]
number = "{LEAD.number}"
name = "{LEAD.name}"
teams = ["sales"]
modes = ["listen"]
spy = true
phone = "web3002"

[[supervisors]]
number = "{VIEWER.number}"
name = "{VIEWER.name}"
teams = ["support"]
modes = ["listen", "whisper", "barge"]

[[phones]]
login = "web3001"
dial = "Local/2001@fsp-api-phones"
server = "sandbox"

[[phones]]
login = "web3002"
dial = "Local/2002@fsp-api-phones"
server = "sandbox"
"""


def set_passwords(service: SpyService) -> None:
    """The web people's passwords, as `fastagi-spy set-password` stores them."""
    hasher = pin_hasher(service.config)
    for person in PEOPLE:
        service.stores.passwords.set_hash(
            person.number, hasher.hash_password(person.number, person.password), time.time())


def new_chromium(size: tuple[int, int] = LAPTOP) -> WebDriver:
    """Debian's Chromium and its matching driver: nothing is fetched from anywhere."""
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                f"--window-size={size[0]},{size[1]}"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


class Page:
    """One test's view of the shared browser, with our server's base URL."""

    def __init__(self, driver: WebDriver, base_url: str, screenshots: Path) -> None:
        self.driver = driver
        self.base_url = base_url
        self.screenshots = screenshots

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        """Any blocking Selenium call, off the reactor thread."""
        result: T = await threads.deferToThread(call, *args)
        return result

    async def get(self, path: str) -> None:
        await self.run(self.driver.get, self.base_url + path)

    async def find(self, css: str) -> WebElement:
        """The first element matching `css`, once the page shows it."""
        def wait() -> WebElement:
            try:
                found: WebElement = WebDriverWait(self.driver, PATIENCE).until(
                    lambda d: d.find_element(By.CSS_SELECTOR, css))
            except TimeoutException:
                raise AssertionError(f"the page never showed {css!r}; it is at "
                                     f"{self.driver.current_url}") from None
            return found
        return await self.run(wait)

    async def all(self, css: str) -> list[WebElement]:
        """Every element matching `css` now (possibly none)."""
        return await self.run(self.driver.find_elements, By.CSS_SELECTOR, css)

    async def until(self, what: str, check: Callable[[WebDriver], T]) -> T:
        """Until `check(driver)` is truthy; its value."""
        def wait() -> T:
            try:
                value: T = WebDriverWait(self.driver, PATIENCE).until(check)
            except TimeoutException:
                raise AssertionError(f"the page never showed {what}; it is at "
                                     f"{self.driver.current_url}") from None
            return value
        return await self.run(wait)

    async def script(self, js: str, *args: Any) -> Any:
        return await self.run(self.driver.execute_script, js, *args)

    async def resize(self, size: tuple[int, int]) -> None:
        await self.run(self.driver.set_window_size, *size)

    async def screenshot(self, name: str) -> Path:
        path = self.screenshots / f"{name}.png"
        await self.run(self.driver.save_screenshot, str(path))
        return path

    async def status(self, path: str, method: str = "GET", headers: dict[str, str] | None = None
                     ) -> int:
        """The HTTP status of `fetch(path)` from inside the page: same cookies, same origin."""
        code: int = await self.script(
            "return fetch(arguments[0], {method: arguments[1], headers: arguments[2],"
            " redirect: 'manual', credentials: 'same-origin'}).then(r => r.status)"
            " .then(s => s === 0 ? 302 : s);", path, method, headers or {})
        return code


async def login(page: Page, person: Person, password: str | None = None,
                next_path: str = "/live") -> None:
    """Signs in through the login form, as a person would: typed, then the button; with the
    right password, waits for the signed-in frame (its Sign out form) at ``next_path``."""
    await page.get(f"/login?next={next_path}")
    user = await page.find("input[name=user]")
    await page.run(user.send_keys, person.number)
    secret = await page.find("input[name=password]")
    await page.run(secret.send_keys, person.password if password is None else password)
    await page.run((await page.find("form button[type=submit]")).click)
    if password is None or password == person.password:
        await page.until("the signed-in header",
                         lambda d: d.find_elements(By.CSS_SELECTOR, "form[action='/logout']"))
