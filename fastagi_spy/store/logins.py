"""VICIdial's login lockout: 10 failed logins in a row lock the user for 15 minutes.

Kept per submitted user name, known or not, so that "locked" never tells an unknown name
from a real one. An attempt is counted when it starts (`admit`), before its hash is known,
in one IMMEDIATE transaction: ten logins at once get no more guesses than ten. A right
password then clears the count (`grant`, which checks the lock again); an attempt whose hash
never answered is taken back (`refund`). A streak is forgotten `window_s` after its last
failure, which also bounds the table to the names tried in the last 15 minutes.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastagi_spy.store.database import Database

PRUNE_EVERY = 60.0  # seconds between deletions of forgotten rows


@dataclass(frozen=True)
class LoginPolicy:
    """VICIdial's numbers ($LOCK_trigger_attempts, $LOCK_over in functions.php)."""

    max_failures: int = 10
    lock_s: float = 900.0
    window_s: float = 900.0  # a failure older than this no longer counts

    def __post_init__(self) -> None:
        if self.max_failures < 1 or self.lock_s <= 0 or self.window_s <= 0:
            raise ValueError("login lockout values must be positive")


class LoginLockout:
    """Failed logins per user, with the lock, in the login_failures table."""

    def __init__(self, db: Database, policy: LoginPolicy = LoginPolicy()) -> None:
        self._db = db
        self.policy = policy
        self._pruned_at = float("-inf")

    def admit(self, user: str, now: float) -> bool:
        """Count an attempt as a failure before its hash is checked; False (and nothing
        counted) when the user is locked or the attempts in flight use up the budget."""
        with self._db.transaction() as conn:
            if now - self._pruned_at >= PRUNE_EVERY or now < self._pruned_at:
                conn.execute("DELETE FROM login_failures WHERE last_at <= ? AND "
                             "(locked_until IS NULL OR locked_until <= ?)",
                             (now - self.policy.window_s, now))
                self._pruned_at = now
            row = conn.execute("SELECT failures, last_at, locked_until FROM login_failures "
                               "WHERE \"user\" = ?", (user,)).fetchone()
            failures = 0
            if row is not None:
                count, last_at, locked_until = int(row[0]), float(row[1]), row[2]
                if locked_until is not None and float(locked_until) > now:
                    return False
                # A streak ends when its lock has run out or it has gone quiet.
                expired = locked_until is not None or last_at <= now - self.policy.window_s
                failures = 0 if expired else count
            if failures >= self.policy.max_failures:
                return False
            conn.execute(
                "INSERT INTO login_failures (\"user\", failures, last_at, locked_until) "
                "VALUES (?, ?, ?, NULL) ON CONFLICT (\"user\") DO UPDATE SET "
                "failures = excluded.failures, last_at = excluded.last_at, locked_until = NULL",
                (user, failures + 1, now))
        return True

    def settle_failure(self, user: str, now: float) -> bool:
        """An admitted attempt failed (it is counted already): lock the user when this was
        the last failure allowed. Returns whether the user is locked now."""
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE login_failures SET locked_until = ? WHERE \"user\" = ? AND failures >= ? "
                "AND (locked_until IS NULL OR locked_until <= ?)",
                (now + self.policy.lock_s, user, self.policy.max_failures, now))
            return self._locked(user, now)

    def grant(self, user: str, now: float) -> bool:
        """The password was right: True and the count cleared, unless the user was locked
        meanwhile (by attempts that failed while this one was checked)."""
        with self._db.transaction() as conn:
            if self._locked(user, now):
                return False
            conn.execute("DELETE FROM login_failures WHERE \"user\" = ?", (user,))
        return True

    def refund(self, user: str) -> None:
        """Take back an admitted attempt whose hash never answered: no guess was judged."""
        self._db.execute("UPDATE login_failures SET failures = failures - 1 "
                         "WHERE \"user\" = ? AND failures > 0", (user,))

    def locked_until(self, user: str, now: float) -> float | None:
        """When the user's lock ends, or None when not locked."""
        row = self._db.execute("SELECT locked_until FROM login_failures WHERE \"user\" = ? "
                               "AND locked_until > ?", (user, now)).fetchone()
        return None if row is None else float(row[0])

    def unlock(self, user: str) -> bool:
        """Admin unlock: forget the user's failures and lock; returns whether there were any."""
        with self._db.transaction() as conn:
            return conn.execute("DELETE FROM login_failures WHERE \"user\" = ?", (user,)).rowcount > 0

    def list_locked(self, now: float) -> list[tuple[str, float]]:
        """Every user locked at `now`, with the end of the lock, sorted by user."""
        rows = self._db.execute("SELECT \"user\", locked_until FROM login_failures "
                                "WHERE locked_until > ? ORDER BY \"user\"", (now,)).fetchall()
        return [(str(user), float(until)) for user, until in rows]

    def _locked(self, user: str, now: float) -> bool:
        return self.locked_until(user, now) is not None
