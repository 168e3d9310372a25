"""The one error the storage layer raises for storage failures."""

from __future__ import annotations


class StoreError(Exception):
    """The database could not be opened, read or written."""
