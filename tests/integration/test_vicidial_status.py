"""VICIdial's agent_status and logged_in_agents over real HTTP, against the real Asterisk 22:
an agent ready in a queue, then talking to a customer, then paused; the requests are
VICIdial's documented ones with only the host and the credentials changed."""

from __future__ import annotations

import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_twisted
from twisted.internet import reactor, threads

from fastagi_spy.sandbox import AsteriskSandbox
from fastagi_spy.service import SpyService, make_service, pin_hasher
from tests.integration.driver import Driver, sleep
from tests.integration.site import set_pins, site_config, wait_ready

USER, PASSWORD = "9200", "vicidial-reports-pw"
PERSON = f"""
[[supervisors]]
number = "{USER}"
name = "Real-time report"
teams = ["sales"]
api = true
user_level = 8
view_reports = true
"""
QUEUE, MEMBER = "fsp-sales", "Local/1002@fsp-agents/n"


@pytest_twisted.async_yield_fixture()
async def vsite(sandbox: AsteriskSandbox, tmp_path: Path) -> AsyncIterator[SpyService]:
    service = make_service(site_config(sandbox, tmp_path, extra=PERSON), reactor)
    set_pins(service)
    hasher = pin_hasher(service.config)
    service.stores.passwords.set_hash(USER, hasher.hash_password(USER, PASSWORD), time.time())
    service.startService()
    await wait_ready(service)
    yield service
    await service.stopService()


def base(service: SpyService) -> str:
    port = int(service.config.http_listen.split(":")[1])
    return f"http://127.0.0.1:{port}"


async def fetch(url: str, form: dict[str, str] | None = None) -> tuple[int, str, str]:
    """GET ``url`` (or POST ``form`` to it) from a thread, as a VICIdial client would."""
    data = urllib.parse.urlencode(form).encode() if form is not None else None

    def go() -> tuple[int, str, str]:
        try:
            with urllib.request.urlopen(url, data=data, timeout=10) as response:
                return (response.status, response.headers.get("content-type", ""),
                        response.read().decode())
        except urllib.error.HTTPError as refused:
            return refused.code, refused.headers.get("content-type", ""), refused.read().decode()

    return await threads.deferToThread(go)


def status_url(service: SpyService, agent: str) -> str:
    # VICIdial's docs: non_agent_api.php?source=test&user=6666&pass=1234&function=agent_status
    #   &agent_user=1234&stage=csv&header=YES  -- host, credentials and agent changed.
    return (f"{base(service)}/vicidial/non_agent_api.php?source=test&user={USER}"
            f"&pass={PASSWORD}&function=agent_status&agent_user={agent}&stage=csv&header=YES")


def logged_in_url(service: SpyService) -> str:
    return (f"{base(service)}/vicidial/non_agent_api.php?source=test&user={USER}"
            f"&pass={PASSWORD}&function=logged_in_agents&stage=csv&header=YES")


async def status_row(service: SpyService, agent: str) -> list[str]:
    code, ctype, text = await fetch(status_url(service, agent))
    assert code == 200 and ctype.startswith("text/plain"), (code, ctype, text)
    header, row = text.splitlines()
    assert header.split(",")[0] == "status"
    return row.split(",")


async def until_status(service: SpyService, agent: str, status: str) -> list[str]:
    """Poll agent_status until it says ``status`` (bounded: fails after 10 s)."""
    deadline = time.monotonic() + 10
    row: list[str] = []
    while time.monotonic() < deadline:
        row = await status_row(service, agent)
        if row[0] == status:
            return row
        await sleep(0.1)
    raise AssertionError(f"agent {agent} never {status}; last row {row}")


@pytest_twisted.ensureDeferred
async def test_agent_status_ready_talking_paused(driver: Driver, vsite: SpyService) -> None:
    await driver.action("QueueAdd", [("Queue", QUEUE), ("Interface", MEMBER),
                                     ("MemberName", "1002")])
    try:
        ready = await until_status(vsite, "1002", "READY")
        assert ready[5:7] == ["Agent 1002", "sales"]

        await driver.originate("Local/q@fsp-customers/n", "fsp-handsets", "customer",
                               caller_id="Globex <5559876>")
        talking = await until_status(vsite, "1002", "INCALL")
        assert talking[1] != "" and talking[10] == "5559876"  # callerid (call id), phone_number

        # The same agent in the live list, in VICIdial's logged_in_agents field order.
        code, _, listed = await fetch(logged_in_url(vsite))
        assert code == 200
        lines = listed.splitlines()
        assert lines[0] == ("user,campaign_id,session_id,status,lead_id,callerid,calls_today,"
                            "full_name,user_group,user_level")
        mine = next(line.split(",") for line in lines[1:] if line.startswith("1002,"))
        assert mine[3] == "INCALL" and mine[5] == talking[1]

        await driver.action("QueuePause", [("Queue", QUEUE), ("Interface", MEMBER),
                                           ("Paused", "true")])
        # Paused mid-call: VICIdial keeps INCALL until the call ends, then PAUSED.
        assert (await status_row(vsite, "1002"))[0] == "INCALL"
        await driver.hangup_all()
        paused = await until_status(vsite, "1002", "PAUSED")
        assert paused[1] == "" and paused[10] == ""

        # A form POST gets the same answer as the GET.
        form = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(status_url(vsite, "1002")).query))
        by_post = await fetch(f"{base(vsite)}/non_agent_api.php", form)
        by_get = await fetch(status_url(vsite, "1002"))
        assert by_post == by_get
    finally:
        await driver.action("QueueRemove", [("Queue", QUEUE), ("Interface", MEMBER)])


@pytest_twisted.ensureDeferred
async def test_vicidial_errors_over_http(vsite: SpyService) -> None:
    """What a client sees for an agent outside the caller's teams, a wrong password (never
    echoed) and a parameter with CR/LF."""
    code, _, text = await fetch(status_url(vsite, "1003"))  # team "support"
    assert (code, text) == (200, f"ERROR: agent_status AGENT NOT FOUND: {USER}|1003\n")
    code, _, text = await fetch(status_url(vsite, "1001").replace(PASSWORD, "wrong-guess"))
    assert text == f"ERROR: Login incorrect, please try again: |{USER}||BAD|\n"
    code, _, text = await fetch(status_url(vsite, "1001") + "&phone_login=350a%0d%0aX")
    assert (code, text) == (400, "ERROR: INVALID PARAMETER - phone_login\n")
    code, _, text = await fetch(f"{base(vsite)}/non_agent_api.php?function=version")
    assert code == 200 and text.startswith("VERSION: ")


@pytest_twisted.ensureDeferred
async def test_ten_bad_passwords_lock_the_user_for_15_minutes(
        sandbox: AsteriskSandbox, tmp_path: Path) -> None:
    """VICIdial's lockout through non_agent_api.php: ten wrong passwords, then even the
    right one gets the LOCK line; 15 minutes later (the login's clock moved) it works again."""
    service = make_service(site_config(sandbox, tmp_path, extra=PERSON,
                                       server="http_auth_failures = 100"), reactor)
    clock = [time.time()]
    service.password_checker.now = lambda: clock[0]
    hasher = pin_hasher(service.config)
    service.stores.passwords.set_hash(USER, hasher.hash_password(USER, PASSWORD), time.time())
    service.startService()
    try:
        await wait_ready(service)
        wrong = status_url(service, "1001").replace(PASSWORD, "wrong-guess")
        for _ in range(10):
            assert (await fetch(wrong))[2] == (
                f"ERROR: Login incorrect, please try again: |{USER}||BAD|\n")
        locked = f"ERROR: Too many login attempts, try again in 15 minutes: |{USER}|LOCK|\n"
        assert (await fetch(status_url(service, "1001")))[2] == locked
        clock[0] += 14 * 60
        assert (await fetch(status_url(service, "1001")))[2] == locked
        clock[0] += 60 + 1
        code, _, text = await fetch(status_url(service, "1001"))
        assert code == 200 and text.splitlines()[1].split(",")[5] == "Agent 1001", text
    finally:
        await service.stopService()
