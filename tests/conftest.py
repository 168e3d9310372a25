"""Fixtures shared by the unit and the integration tests: a real PostgreSQL server, and a
started store thread (``runner``).

The server must start: when it cannot, every test that needs it errors (never skips), as with
the Asterisk sandbox, so a run can never pass with its PostgreSQL tests silently missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from fastagi_spy.store import schema
from fastagi_spy.store.database import Database
from fastagi_spy.store.postgres import PostgresDatabase
from fastagi_spy.store.runner import ThreadRunner
from tests.postgres_harness import PostgresServer


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database on the shared server: tests isolate by database. Dropped
    after the test (a database is several MB on disk)."""
    # The test's name makes a failing test's database easy to find in the server log.
    name = postgres.unique_name(request.node.name)
    yield postgres.new_database(name)
    postgres.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh store at the latest schema, on each backend in turn: a store test using this
    runs on SQLite and on the real PostgreSQL server."""
    database: Database
    if request.param == "sqlite":
        database = Database(tmp_path / "any.sqlite3")
    else:
        database = PostgresDatabase(request.getfixturevalue("postgres_url"))
        schema.migrate(database)  # the admin's step (fastagi-spy migrate)
    yield database
    database.close()


@pytest.fixture
def runner() -> Iterator[ThreadRunner]:
    """A started store thread, drained and stopped after the test."""
    started = ThreadRunner(reactor)
    started.start()
    yield started
    pytest_twisted.blockon(defer.ensureDeferred(started.stop()))
