"""Open the configured store: the SQLite file, or PostgreSQL when ``[store] url`` is set."""

from __future__ import annotations

from typing import Protocol

from fastagi_spy.store import schema
from fastagi_spy.store.database import Database
from fastagi_spy.store.errors import StoreError
from fastagi_spy.store.postgres import PostgresDatabase


class StoreConfig(Protocol):
    """The two config fields this reads (config.Config has them; store/ imports nothing
    above it, so it is not named here)."""

    @property
    def database(self) -> str: ...

    @property
    def store_url(self) -> str | None: ...


class SchemaOutdated(StoreError):
    """A PostgreSQL store below this code's schema version: the admin migrates it first."""


def open_database(config: StoreConfig, *, background_checkpoints: bool = False
                  ) -> Database | PostgresDatabase:
    """The store the config names, at the current schema.

    SQLite migrates itself as it opens (an embedded file has one user). PostgreSQL is
    shared by instances that may run different releases during an upgrade, so migrating
    it is an explicit admin step; until then this raises SchemaOutdated.
    """
    if not config.store_url:
        return Database(config.database, background_checkpoints=background_checkpoints)
    db = PostgresDatabase(config.store_url)
    try:
        version = schema.current_version(db)
        if version > schema.LATEST:
            raise StoreError(
                f"database {db.description}: its schema is version {version}, newer than "
                f"this fastagi-spy knows ({schema.LATEST}): upgrade fastagi-spy")
        if version < schema.LATEST:
            state = "has no schema yet" if version == 0 else f"is at schema version {version}"
            raise SchemaOutdated(
                f"database {db.description} {state}; this fastagi-spy needs version "
                f"{schema.LATEST}: run `fastagi-spy migrate --config FILE` first")
    except BaseException:
        db.close()
        raise
    return db
