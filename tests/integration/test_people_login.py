"""People logging in to the running server over real HTTP: the password checked in the real
hash workers, VICIdial's lockout and `unlock --user`, and `fastagi-spy status --user`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import reactor, threads

from fastagi_spy.sandbox import AsteriskSandbox
from fastagi_spy.service import SpyService, make_service
from tests.integration.site import API_PASSWORD, API_USER, set_pins, site_config, wait_ready
from tests.integration.test_live_map import get_live


@pytest_twisted.async_yield_fixture()
async def lenient(sandbox: AsteriskSandbox, tmp_path: Path) -> AsyncIterator[SpyService]:
    """The site with the per-address throttle set high, so the per-user lockout shows."""
    service = make_service(site_config(sandbox, tmp_path, server="http_auth_failures = 100"),
                           reactor)
    set_pins(service)
    service.startService()
    await wait_ready(service)
    yield service
    await service.stopService()


async def status(site: SpyService, *, env_password: str | None = None,
                 stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FASTAGI_SPY_PASSWORD"}
    if env_password is not None:
        env["FASTAGI_SPY_PASSWORD"] = env_password
    done: subprocess.CompletedProcess[str] = await threads.deferToThread(
        subprocess.run, [sys.executable, "-m", "fastagi_spy.cli", "status", "--config",
                         site.config.source, "--user", API_USER, "--json"],
        input=stdin, env=env, capture_output=True, text=True, timeout=30)
    return done


async def cli(site: SpyService, *args: str) -> subprocess.CompletedProcess[str]:
    done: subprocess.CompletedProcess[str] = await threads.deferToThread(
        subprocess.run, [sys.executable, "-m", "fastagi_spy.cli", args[0], "--config",
                         site.config.source, *args[1:]], capture_output=True, text=True,
        timeout=30)
    return done


@pytest_twisted.ensureDeferred
async def test_status_takes_the_password_from_the_environment(site: SpyService) -> None:
    done = await status(site, env_password=API_PASSWORD)
    assert done.returncode == 0, done.stderr
    assert '"servers"' in done.stdout
    wrong = await status(site, env_password="not-the-password")
    assert wrong.returncode == 1
    assert f"the server refused '{API_USER}': wrong user or password" in wrong.stderr


@pytest_twisted.ensureDeferred
async def test_ten_wrong_passwords_lock_until_unlock(lenient: SpyService) -> None:
    """Over real HTTP: 10 wrong passwords are 401s, the 11th login is a 403 even with the
    right password; `fastagi-spy unlock --user` lifts it and the right password works."""
    codes: list[Any] = []
    for _ in range(10):
        code, _body = await get_live(lenient, password="not-the-password")
        codes.append(code)
    assert codes == [401] * 10
    code, body = await get_live(lenient)
    assert code == 403 and body == {"error": "Too many login attempts, try again in 15 minutes"}
    locked = await status(lenient, env_password=API_PASSWORD)
    assert locked.returncode == 1 and "locked for 15 minutes" in locked.stderr
    done = await cli(lenient, "unlock", "--user", API_USER)
    assert done.returncode == 0 and "unlocked" in done.stdout
    code, body = await get_live(lenient)
    assert code == 200 and "servers" in body
