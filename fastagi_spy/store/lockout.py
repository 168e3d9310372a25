"""Failed-PIN counters and lockouts that span calls, processes and restarts.

Per-call retry limits do nothing against redialling, so every failure is a row in the
database, keyed by calling device, by (device, supervisor) pair and, from phones other than
the supervisor's own, by supervisor number. Counters live only in the DB so several instances
sharing it (later through PostgreSQL) see the same state.

An attempt is counted when it starts (`admit`), before its hash is known, and refused if it
would take any key past its threshold: N calls at once get no more tries than the threshold.
Its row stays as a failure unless the PIN was right (`grant`, which checks the lock again)
or was never judged (`refund`).
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


SUPERVISOR_PREFIX, DEVICE_PREFIX, PAIR_PREFIX = "supervisor:", "device:", "pair:"


def pair_key(device: str, supervisor: str) -> str:
    """The lockout key for one supervisor number tried from one device.

    The number comes first: it is digits only, so the first "@" always ends it, even for a
    device such as "Local/2001@phones".
    """
    return f"{PAIR_PREFIX}{supervisor}@{device}"


@dataclass(frozen=True)
class LockoutPolicy:
    """Lock a key for `lock_s` once it has `max_failures` failures within `window_s`.

    A supervisor number (tried from phones other than its own) has its own, higher threshold:
    a few guesses from anywhere in the building must not lock a supervisor out.
    """

    max_failures: int = 5
    window_s: float = 900.0
    lock_s: float = 900.0
    supervisor_max_failures: int = 50

    def __post_init__(self) -> None:
        if (self.max_failures < 1 or self.supervisor_max_failures < 1 or self.window_s <= 0
                or self.lock_s <= 0):
            raise ValueError("lockout policy values must be positive")

    def threshold(self, key: str) -> int:
        return self.supervisor_max_failures if key.startswith(SUPERVISOR_PREFIX) else self.max_failures


@dataclass(frozen=True)
class Admission:
    """An attempt as counted before its hash: refused (locked, or over some key's budget
    with the attempts already in flight), or admitted with the failure rows it added."""

    admitted: bool
    rows: tuple[int, ...] = ()


@dataclass(frozen=True)
class FailureOutcome:
    locked: bool  # some key of the attempt is locked now
    newly_locked: tuple[str, ...]  # keys this failure locked


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


PRUNE_EVERY = 60.0  # seconds between deletions of expired failures and lockouts


class LockoutStore:
    """Sliding-window failure counting with persistent lockouts."""

    def __init__(self, db: Database, policy: LockoutPolicy) -> None:
        self._db = db
        self.policy = policy
        self._pruned_at = float("-inf")

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

    def admit(self, keys: Iterable[str], now: float) -> Admission:
        """Count an attempt before its hash is checked; refused if any key is locked or the
        attempt would take a key past its threshold (failures plus attempts in flight)."""
        wanted = _keys(keys)
        if not wanted:
            raise ValueError("an attempt needs at least one key")
        window_start = now - self.policy.window_s
        marks = _placeholders(len(wanted))
        with self._db.transaction() as conn:  # BEGIN IMMEDIATE: one admission at a time
            self._prune_now_and_then(conn, now)
            # One read for the lock and every key's count: this runs on every PIN typed.
            rows = conn.execute(
                f"SELECT '', MAX(until) FROM lockouts WHERE until > ? AND key IN ({marks}) "
                f"UNION ALL SELECT key, COUNT(*) FROM auth_failures "
                f"WHERE at > ? AND key IN ({marks}) GROUP BY key",
                (now, *wanted, window_start, *wanted),
            ).fetchall()
            counts = dict(rows)
            if counts.pop("", None) is not None:
                return Admission(False)
            for key in wanted:
                if counts.get(key, 0) + 1 > self.policy.threshold(key):
                    return Admission(False)
            values = ", ".join("(?, ?)" for _ in wanted)
            ids = tuple(int(row_id) for row_id, in conn.execute(
                f"INSERT INTO auth_failures (key, at) VALUES {values} RETURNING id",
                [value for key in wanted for value in (key, now)]).fetchall())
        return Admission(True, ids)

    def settle_failure(self, keys: Iterable[str], now: float) -> FailureOutcome:
        """An admitted attempt failed: its rows stay; lock every key now at its threshold."""
        wanted = _keys(keys)
        window_start = now - self.policy.window_s
        newly: list[str] = []
        with self._db.transaction() as conn:
            already = {key for key, in conn.execute(
                f"SELECT key FROM lockouts WHERE until > ? AND key IN ({_placeholders(len(wanted))})",
                (now, *wanted))}
            for key in wanted:
                if self._count(conn, key, window_start) >= self.policy.threshold(key):
                    self._lock(conn, key, now + self.policy.lock_s)
                    if key not in already:
                        newly.append(key)
            locked = self._locked_until(conn, wanted, now) is not None
        return FailureOutcome(locked, tuple(newly))

    def grant(self, keys: Iterable[str], now: float) -> bool:
        """The PIN was right: True, and the keys' failures forgotten, unless a key was locked
        meanwhile (by an attempt that failed while this one was being checked)."""
        wanted = _keys(keys)
        marks = _placeholders(len(wanted))
        with self._db.transaction() as conn:
            # The usual case in one statement: the failures go unless a lock stands. Nothing
            # deleted is either a lock, or a concurrent success that took these rows already.
            deleted = conn.execute(
                f"DELETE FROM auth_failures WHERE key IN ({marks}) AND NOT EXISTS "
                f"(SELECT 1 FROM lockouts WHERE until > ? AND key IN ({marks}))",
                (*wanted, now, *wanted)).rowcount
            return deleted > 0 or self._locked_until(conn, wanted, now) is None

    def refund(self, rows: Iterable[int]) -> None:
        """Drop an admitted attempt's rows: its hash never answered, so no guess was judged."""
        wanted = tuple(rows)
        if wanted:
            self._db.execute(
                f"DELETE FROM auth_failures WHERE id IN ({_placeholders(len(wanted))})", wanted)

    def record_failure(self, keys: Iterable[str], now: float) -> bool:
        """Count one failure for each key; returns True if any of the keys is now locked."""
        wanted = _keys(keys)
        if not wanted:
            raise ValueError("a failure needs at least one key")
        policy = self.policy
        window_start = now - policy.window_s
        with self._db.transaction() as conn:
            self._prune(conn, now)
            conn.executemany(
                "INSERT INTO auth_failures (key, at) VALUES (?, ?)",
                [(key, now) for key in wanted],
            )
            for key in wanted:
                if self._count(conn, key, window_start) >= policy.threshold(key):
                    self._lock(conn, key, now + policy.lock_s)
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
        """Admin unlock: drop the key's lockout and failures; returns whether any existed.

        Unlocking a supervisor or a device also unlocks every pair it is part of.
        """
        with self._db.transaction() as conn:
            pairs = [k for (k,) in conn.execute(
                "SELECT key FROM lockouts WHERE key LIKE 'pair:%' "
                "UNION SELECT key FROM auth_failures WHERE key LIKE 'pair:%'")
                if _pair_belongs_to(k, key)]
            removed = 0
            for one in (key, *pairs):
                removed += conn.execute("DELETE FROM lockouts WHERE key = ?", (one,)).rowcount
                removed += conn.execute("DELETE FROM auth_failures WHERE key = ?", (one,)).rowcount
        return removed > 0

    def list_locked(self, now: float) -> list[tuple[str, float]]:
        """Every key locked at `now`, with its `until`, sorted by key."""
        with self._db.transaction() as conn:
            rows = conn.execute(
                "SELECT key, until FROM lockouts WHERE until > ? ORDER BY key", (now,)
            ).fetchall()
        return [(str(key), float(until)) for key, until in rows]

    def _prune_now_and_then(self, conn: sqlite3.Connection, now: float) -> None:
        # Every read already ignores expired rows; deleting them is housekeeping, so it
        # runs at most once a minute rather than with every PIN typed.
        if now - self._pruned_at >= PRUNE_EVERY or now < self._pruned_at:
            self._prune(conn, now)
            self._pruned_at = now

    def _prune(self, conn: sqlite3.Connection, now: float) -> None:
        # Everyone's old rows, so the tables stay as small as the window.
        conn.execute("DELETE FROM auth_failures WHERE at <= ?", (now - self.policy.window_s,))
        conn.execute("DELETE FROM lockouts WHERE until <= ?", (now,))

    @staticmethod
    def _count(conn: sqlite3.Connection, key: str, window_start: float) -> int:
        (count,) = conn.execute(
            "SELECT COUNT(*) FROM auth_failures WHERE key = ? AND at > ?", (key, window_start)
        ).fetchone()
        return int(count)

    @staticmethod
    def _lock(conn: sqlite3.Connection, key: str, until: float) -> None:
        # Never shorten a lock that is already longer.
        conn.execute(
            "INSERT INTO lockouts (key, until) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET until = CASE "
            "WHEN excluded.until > lockouts.until THEN excluded.until "
            "ELSE lockouts.until END",
            (key, until),
        )

    @staticmethod
    def _locked_until(conn: sqlite3.Connection, keys: tuple[str, ...], now: float) -> float | None:
        (until,) = conn.execute(
            f"SELECT MAX(until) FROM lockouts WHERE until > ? "
            f"AND key IN ({_placeholders(len(keys))})",
            (now, *keys),
        ).fetchone()
        return None if until is None else float(until)


def _pair_belongs_to(pair: str, key: str) -> bool:
    """Whether pair key "pair:<number>@<device>" names the supervisor or device of `key`."""
    number, _, device = pair.removeprefix(PAIR_PREFIX).partition("@")
    if key.startswith(SUPERVISOR_PREFIX):
        return number == key.removeprefix(SUPERVISOR_PREFIX)
    if key.startswith(DEVICE_PREFIX):
        return device == key.removeprefix(DEVICE_PREFIX)
    return False
