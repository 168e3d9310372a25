"""The real Asterisk 22 sandbox, shared by the integration tests.

It must start: when it cannot, every test that needs it errors (never skips), so a CI run
can never pass with its integration suite silently missing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.logger import globalLogPublisher

from fastagi_spy.config import load
from fastagi_spy.sandbox import AsteriskSandbox
from fastagi_spy.service import SpyService, make_service
from fastagi_spy.store import schema
from fastagi_spy.store.audit import AuditLog
from fastagi_spy.store.database import Database
from fastagi_spy.store.open import open_database
from fastagi_spy.store.postgres import PostgresDatabase
from fastagi_spy.store.runner import InlineRunner, ThreadRunner
from tests.integration.driver import Driver
from tests.integration.site import set_pins, site_config, wait_ready

# agent number -> SPYGROUP token, as a site's dialplan sets it on agent legs
TEAMS = {
    "10": "team_sales",
    "100": "team_sales",
    "1001": "team_sales",
    "1002": "team_sales",
    "1003": "team_support",
    "1004": "team_sales",
    "3050": "team_sales",  # a hot-desk phone in the sales room
}


@pytest.fixture(scope="session")
def sandbox() -> Iterator[AsteriskSandbox]:
    # One instance directory per test process: two runs on one machine never share it.
    box = AsteriskSandbox(name=f"fsp-test-{os.getpid()}", teams=TEAMS)
    box.start()
    yield box
    box.stop()
    # Recordings and logs of this run: one directory per test process, gone with it.
    shutil.rmtree(box.host_path(box.base), ignore_errors=True)


@pytest_twisted.async_yield_fixture()
async def driver(sandbox: AsteriskSandbox) -> AsyncIterator[Driver]:
    drv = Driver(sandbox)
    await drv.connect()
    yield drv
    await drv.hangup_all()
    await drv.close()


BACKENDS = ("sqlite", "postgresql")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_stores: every test of the module that takes the `store` fixture "
        "(or `site`) runs twice: on SQLite and on the real PostgreSQL")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Per module, not suite-wide: the feature-code modules are where a supervisor's call
    # drives every store path (PIN, lockout, audit) through the flow's store runner.
    if "store" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_stores"):
        metafunc.parametrize("store", BACKENDS, indirect=True)


@pytest.fixture()
def store(request: pytest.FixtureRequest) -> str:
    """The site's ``[store]`` settings for site_config(store=...): "" (the SQLite file) unless
    the module is marked both_stores, which runs each test on "sqlite" and "postgresql".
    PostgreSQL: a fresh database on the session's server, migrated as the admin would
    (the service refuses an unmigrated one)."""
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        return ""
    url: str = request.getfixturevalue("postgres_url")
    db = PostgresDatabase(url)
    try:
        schema.migrate(db)
    finally:
        db.close()
    return f'url = "{url}"'


def check_backend(service: SpyService, store: str) -> None:
    """The service really runs on the store asked for: a PostgreSQL run that silently fell
    back to the SQLite file would pass every test and prove nothing."""
    if store:
        assert isinstance(service.stores.db, PostgresDatabase), service.stores.db
        assert isinstance(service.store_runner, ThreadRunner), service.store_runner
    else:
        assert not isinstance(service.stores.db, PostgresDatabase), service.stores.db
        assert isinstance(service.store_runner, InlineRunner), service.store_runner


@pytest.fixture()
def site_audit(store: str) -> Iterator[Callable[[Path], AuditLog]]:
    """Opens the audit log of a site config file on its own backend (the SQLite file or the
    PostgreSQL database), for tests that run `fastagi-spy serve` as a process and read the
    audit from outside it. Closed after the test (and before `store`'s database is dropped,
    since this fixture depends on it)."""
    opened: list[Database] = []

    def audit_of(config: Path) -> AuditLog:
        db = open_database(load(config))
        opened.append(db)
        return AuditLog(db)

    yield audit_of
    for db in opened:
        db.close()


@pytest_twisted.async_yield_fixture()
async def site(sandbox: AsteriskSandbox, tmp_path: Path, store: str) -> AsyncIterator[SpyService]:
    service = make_service(site_config(sandbox, tmp_path, store=store), reactor)
    check_backend(service, store)
    set_pins(service)
    service.startService()
    await wait_ready(service)
    yield service
    await service.stopService()


@pytest.fixture()
def log_events() -> Iterator[list[dict[str, object]]]:
    """Every Twisted log event emitted during the test."""
    seen: list[dict[str, object]] = []
    globalLogPublisher.addObserver(seen.append)
    yield seen
    globalLogPublisher.removeObserver(seen.append)


def failures(events: list[dict[str, object]]) -> list[dict[str, object]]:
    """Log events that carry a traceback."""
    return [e for e in events if "log_failure" in e]
