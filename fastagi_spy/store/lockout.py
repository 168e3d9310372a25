"""Failed-PIN counters and lockouts that span calls, processes and restarts.

Per-call retry limits do nothing against redialling, so every failure is a row in the
database, keyed both by supervisor and by calling device. Counters live only in the DB so
several instances sharing it (later through PostgreSQL) see the same state.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from fastagi_spy.store.database import Database


def supervisor_key(number: str) -> str:
    """The lockout key for a supervisor number."""
    return f"supervisor:{number}"


def device_key(device: str) -> str:
    """The lockout key for a calling device such as "PJSIP/2001"."""
    return f"device:{device}"


@dataclass(frozen=True)
class LockoutPolicy:
    """Lock a key for `lock_s` once it has `max_failures` failures within `window_s`."""

    max_failures: int = 5
    window_s: float = 900.0
    lock_s: float = 900.0

    def __post_init__(self) -> None:
        if self.max_failures < 1 or self.window_s <= 0 or self.lock_s <= 0:
            raise ValueError("lockout policy values must be positive")


@dataclass(frozen=True)
class KeyStanding:
    """What the store holds against some keys right now."""

    locked_until: float | None  # the latest lock in force, if any
    has_failures: bool  # failures on record (in or before the window)


def _keys(keys: Iterable[str]) -> tuple[str, ...]:
    # dict.fromkeys drops duplicates but keeps order, so one failure counts once per key.
    unique = tuple(dict.fromkeys(keys))
    if any(not key for key in unique):
        raise ValueError("lockout keys must be non-empty")
    return unique


def _placeholders(count: int) -> str:
    return ", ".join("?" * count)


class LockoutStore:
    """Sliding-window failure counting with persistent lockouts."""

    def __init__(self, db: Database, policy: LockoutPolicy) -> None:
        self._db = db
        self.policy = policy

    def is_locked(self, keys: Iterable[str], now: float) -> float | None:
        """The latest `until` among the keys locked at `now`, or None if none is locked."""
        return self.standing(keys, now).locked_until

    def standing(self, keys: Iterable[str], now: float) -> KeyStanding:
        """Whether the keys are locked at `now`, and whether any has failures on record.

        One read; a success only needs to clear failures when there are some.
        """
        wanted = _keys(keys)
        if not wanted:
            return KeyStanding(None, False)
        marks = _placeholders(len(wanted))
        until, failed = self._db.execute(
            f"SELECT (SELECT MAX(until) FROM lockouts WHERE until > ? AND key IN ({marks})), "
            f"EXISTS (SELECT 1 FROM auth_failures WHERE key IN ({marks}))",
            (now, *wanted, *wanted),
        ).fetchone()
        return KeyStanding(None if until is None else float(until), bool(failed))

    def record_failure(self, keys: Iterable[str], now: float) -> bool:
        """Count one failure for each key; returns True if any of the keys is now locked."""
        wanted = _keys(keys)
        if not wanted:
            raise ValueError("a failure needs at least one key")
        policy = self.policy
        window_start = now - policy.window_s
        with self._db.transaction() as conn:
            # Prune everyone's old rows, so the table stays as small as the window.
            conn.execute("DELETE FROM auth_failures WHERE at <= ?", (window_start,))
            conn.execute("DELETE FROM lockouts WHERE until <= ?", (now,))
            conn.executemany(
                "INSERT INTO auth_failures (key, at) VALUES (?, ?)",
                [(key, now) for key in wanted],
            )
            for key in wanted:
                (count,) = conn.execute(
                    "SELECT COUNT(*) FROM auth_failures WHERE key = ? AND at > ?",
                    (key, window_start),
                ).fetchone()
                if count >= policy.max_failures:
                    # Never shorten a lock that is already longer.
                    conn.execute(
                        "INSERT INTO lockouts (key, until) VALUES (?, ?) "
                        "ON CONFLICT (key) DO UPDATE SET until = CASE "
                        "WHEN excluded.until > lockouts.until THEN excluded.until "
                        "ELSE lockouts.until END",
                        (key, now + policy.lock_s),
                    )
            return self._locked_until(conn, wanted, now) is not None

    def record_success(self, keys: Iterable[str], now: float) -> None:
        """Forget the failures of these keys (a lockout already in force stays)."""
        wanted = _keys(keys)
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM auth_failures WHERE at <= ?", (now - self.policy.window_s,))
            if wanted:
                conn.execute(
                    f"DELETE FROM auth_failures WHERE key IN ({_placeholders(len(wanted))})",
                    wanted,
                )

    def unlock(self, key: str) -> bool:
        """Admin unlock: drop the key's lockout and failures; returns whether any existed."""
        with self._db.transaction() as conn:
            locks = conn.execute("DELETE FROM lockouts WHERE key = ?", (key,)).rowcount
            fails = conn.execute("DELETE FROM auth_failures WHERE key = ?", (key,)).rowcount
        return locks + fails > 0

    def list_locked(self, now: float) -> list[tuple[str, float]]:
        """Every key locked at `now`, with its `until`, sorted by key."""
        with self._db.transaction() as conn:
            rows = conn.execute(
                "SELECT key, until FROM lockouts WHERE until > ? ORDER BY key", (now,)
            ).fetchall()
        return [(str(key), float(until)) for key, until in rows]

    @staticmethod
    def _locked_until(conn: sqlite3.Connection, keys: tuple[str, ...], now: float) -> float | None:
        (until,) = conn.execute(
            f"SELECT MAX(until) FROM lockouts WHERE until > ? "
            f"AND key IN ({_placeholders(len(keys))})",
            (now, *keys),
        ).fetchone()
        return None if until is None else float(until)
