"""People's passwords (the HTTP API): one peppered Argon2id hash per user.

The hash itself is made and checked by `PinHasher.hash_password` / `verify_password` (same
pepper, same cost as PINs), in the hash worker process, never on the reactor.
"""

from __future__ import annotations

from fastagi_spy.store.database import Database


class PasswordStore:
    """The passwords table: one hash per person (their VICIdial `user`)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def set_hash(self, user: str, hash: str, now: float) -> None:
        """Store (or replace) the hash for a user."""
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO passwords (\"user\", hash, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (\"user\") DO UPDATE "
                "SET hash = excluded.hash, updated_at = excluded.updated_at",
                (user, hash, now),
            )

    def get_hash(self, user: str) -> str | None:
        """The stored hash, or None for a user without a password."""
        row = self._db.execute("SELECT hash FROM passwords WHERE \"user\" = ?", (user,)).fetchone()
        return None if row is None else str(row[0])

    def delete(self, user: str) -> bool:
        """Remove a user's password; returns whether there was one."""
        with self._db.transaction() as conn:
            cursor = conn.execute("DELETE FROM passwords WHERE \"user\" = ?", (user,))
        return cursor.rowcount > 0
