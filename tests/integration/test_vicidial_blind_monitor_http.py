"""blind_monitor over real HTTP against the running server and the real Asterisk 22: VICIdial's
documented request (only host, credentials and the live session changed) rings the phone and
ChanSpy starts on the agent's leg; each of VICIdial's error strings, in its order of checks,
is the same by GET and by POST."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_twisted
from twisted.internet import reactor

from fastagi_spy.sandbox import AsteriskSandbox
from fastagi_spy.service import SpyService, make_service, pin_hasher
from tests.integration.driver import Driver
from tests.integration.site import agent_call, set_pins, site_config, wait_ready
from tests.integration.test_blind_monitor import PHONES, is_spy_on, session_of
from tests.integration.test_vicidial_status import base, fetch

USER, NO_API, NOT_ALLOWED, PASSWORD = "9200", "9201", "9202", "vicidial-monitor-pw"
PEOPLE = PHONES + f"""
[[supervisors]]
number = "{USER}"
name = "Real-time report"
teams = ["sales"]
modes = ["listen", "whisper", "barge"]
api = true
user_level = 8

[[supervisors]]
number = "{NO_API}"
name = "No API access"
teams = ["sales"]
modes = ["listen"]
user_level = 8

[[supervisors]]
number = "{NOT_ALLOWED}"
name = "agent_status only"
teams = ["sales"]
modes = ["listen"]
api = true
user_level = 8
functions = ["agent_status"]
"""


@pytest_twisted.async_yield_fixture()
async def bsite(sandbox: AsteriskSandbox, tmp_path: Path) -> AsyncIterator[SpyService]:
    service = make_service(site_config(sandbox, tmp_path, extra=PEOPLE), reactor)
    set_pins(service)
    hasher = pin_hasher(service.config)
    for user in (USER, NO_API, NOT_ALLOWED):
        service.stores.passwords.set_hash(user, hasher.hash_password(user, PASSWORD),
                                          time.time())
    service.startService()
    await wait_ready(service)
    yield service
    await service.stopService()


def query(session: str, **changes: str) -> dict[str, str]:
    # VICIdial's docs: source=test&user=6666&pass=1234&function=blind_monitor&phone_login=350a
    #   &session_id=8600051&server_ip=10.10.10.16&stage=MONITOR
    params = {"source": "test", "user": USER, "pass": PASSWORD, "function": "blind_monitor",
              "phone_login": "350a", "session_id": session, "server_ip": "127.0.0.1",
              "stage": "MONITOR"}
    params.update(changes)
    return params


async def both(site: SpyService, params: dict[str, str]) -> str:
    """The answer by GET; the same request as a form POST must answer the same."""
    url = f"{base(site)}/vicidial/non_agent_api.php"
    by_get = await fetch(f"{url}?{urllib.parse.urlencode(params)}")
    by_post = await fetch(url, params)
    assert by_get == by_post, (by_get, by_post)
    code, ctype, text = by_get
    assert code == 200 and ctype.startswith("text/plain"), by_get
    return text


@pytest_twisted.ensureDeferred
async def test_every_error_in_vicidials_order_then_the_documented_request_spies(
        driver: Driver, bsite: SpyService) -> None:
    call = await agent_call(driver, "1001")
    session = await session_of(bsite, "1001", USER, PASSWORD)
    wrong = "a-wrong-guess"
    expected = [
        (query(session, **{"pass": wrong}),
         f"ERROR: Login incorrect, please try again: |{USER}||BAD|\n"),
        (query(session, source="t"), "ERROR: Invalid Source - t\nERROR: Invalid Source: |t|\n"),
        (query(session, user=NOT_ALLOWED),
         "ERROR: auth USER DOES NOT HAVE PERMISSION TO USE THIS FUNCTION: "
         f"|{NOT_ALLOWED}|blind_monitor|\n"),
        (query(session, user=NO_API),
         "ERROR: blind_monitor USER DOES NOT HAVE PERMISSION TO BLIND MONITOR: "
         f"|{NO_API}|0|\n"),
        (query("8699999"),
         f"ERROR: blind_monitor INVALID SESSION ID - 8699999|127.0.0.1|{USER}\n"),
        (query(session, server_ip="10.10.10.16"),
         f"ERROR: blind_monitor INVALID SESSION ID - {session}|10.10.10.16|{USER}\n"),
        (query(session, phone_login="999z"),
         f"ERROR: blind_monitor INVALID PHONE LOGIN - 999z|{USER}\n"),
        (query(session, function=""), "ERROR: NO FUNCTION SPECIFIED\n"),
    ]
    for params, answer in expected:
        text = await both(bsite, params)
        assert text == answer, (params, text)
        assert wrong not in text
    # Nothing above rang anything: no launch row.
    assert not [r for r in bsite.stores.audit.list(limit=50) if r.via == "api"]

    mark = driver.mark()
    url = f"{base(bsite)}/vicidial/non_agent_api.php?{urllib.parse.urlencode(query(session))}"
    code, _, text = await fetch(url)
    assert code == 200
    prefix = "SUCCESS: blind_monitor HAS BEEN LAUNCHED - 350a|"
    assert text.startswith(prefix) and text.endswith(f"|{USER}\n"), text
    dialstring, number, shown_session, man_id, _ = text[len(prefix):-1].split("|")
    assert dialstring == f"127*000*000*001*{session}" and number == "2001"
    assert shown_session == session and man_id.isdigit()
    await driver.wait_for(is_spy_on(call), since=mark, what="ChanSpyStart from the rung phone")
    launch_row = bsite.stores.audit.get(int(man_id))
    assert launch_row is not None and launch_row.via == "api"
    await driver.hangup_all()
