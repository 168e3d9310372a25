"""The service on a real PostgreSQL, driven over real HTTP against the real Asterisk 22: the
VICIdial API (agent_status with a password, a wrong password, blind_monitor ringing the phone
into a spy), /readyz and /metrics make no PostgreSQL call on the reactor thread; and /readyz
says "store: unreachable" once the database refuses connections, then "ready" again."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
import pytest_twisted
from twisted.internet import reactor

from fastagi_spy.sandbox import AsteriskSandbox
from fastagi_spy.service import SpyService, make_service, pin_hasher
from fastagi_spy.store.postgres import PostgresDatabase
from fastagi_spy.supervise.launch import Stage
from tests.integration.conftest import check_backend
from tests.integration.driver import Driver, sleep
from tests.integration.site import agent_call, set_pins, site_config, wait_ready
from tests.integration.test_blind_monitor import (
    PASSWORD,
    PHONES,
    USER,
    blind_monitor,
    is_spy_on,
    session_of,
)
from tests.integration.test_vicidial_status import base, fetch
from tests.postgres_harness import PostgresServer
from tests.store_threads import Threads, note_threads


@pytest.fixture
def threads(monkeypatch: pytest.MonkeyPatch) -> Threads:
    return note_threads(monkeypatch, PostgresDatabase)


@pytest_twisted.async_yield_fixture()
async def pgsite(sandbox: AsteriskSandbox, tmp_path: Path, store: str
                 ) -> AsyncIterator[SpyService]:
    service = make_service(site_config(sandbox, tmp_path, extra=PHONES, store=store), reactor)
    check_backend(service, store)
    set_pins(service)
    hasher = pin_hasher(service.config)
    service.stores.passwords.set_hash(USER, hasher.hash_password(USER, PASSWORD), time.time())
    service.startService()
    await wait_ready(service)
    yield service
    await service.stopService()


def _allow_connections(postgres: PostgresServer, url: str, allow: bool) -> None:
    """The database refuses (or accepts again) every new connection; refusing also cuts the
    service's pooled ones, as a database going away would."""
    name = urllib.parse.urlparse(url).path.lstrip("/")
    with psycopg.connect(postgres.url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allow).lower()}')
        if not allow:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))


@pytest.mark.parametrize("store", ["postgresql"], indirect=True)
@pytest_twisted.ensureDeferred
async def test_vicidial_api_readyz_and_metrics_keep_postgresql_off_the_reactor(
        driver: Driver, pgsite: SpyService, threads: Threads, postgres: PostgresServer,
        postgres_url: str) -> None:
    threads.seen.clear()  # start-up (migration check, reconcile) is not what this is about
    url = base(pgsite)
    assert await fetch(url + "/readyz") == (200, "text/plain; charset=utf-8", "ready\n")
    call = await agent_call(driver, "1001")
    # agent_status with the password: the lockout and hash lookups of every API request.
    session = await session_of(pgsite, "1001", USER, PASSWORD)
    wrong = urllib.parse.urlencode({"source": "test", "user": USER, "pass": "a-wrong-guess",
                                    "function": "agent_status", "agent_user": "1001"})
    _, _, text = await fetch(f"{url}/vicidial/non_agent_api.php?{wrong}")
    assert "BAD" in text, text
    mark = driver.mark()
    man_id = await blind_monitor(pgsite, session, Stage.MONITOR)
    await driver.wait_for(is_spy_on(call), since=mark, what="ChanSpyStart from the rung phone")
    code, _, metrics = await fetch(url + "/metrics")
    assert code == 200 and "fastagi_spy_attempts_total" in metrics
    assert threads.off_reactor(), "no PostgreSQL statement seen at all"
    assert threads.on_reactor() == []
    launch = pgsite.stores.audit.get(int(man_id))
    assert launch is not None and launch.via == "api" and launch.end_reason == "completed"
    await driver.hangup_all()

    # The database goes away: /readyz says so (without blocking the reactor), then recovers.
    _allow_connections(postgres, postgres_url, False)
    try:
        status, _, body = await fetch(url + "/readyz")
        assert (status, body) == (503, "store: unreachable\n")
    finally:
        _allow_connections(postgres, postgres_url, True)
    for _ in range(100):
        status, _, body = await fetch(url + "/readyz")
        if status == 200:
            break
        await sleep(0.1)
    assert (status, body) == (200, "ready\n")
