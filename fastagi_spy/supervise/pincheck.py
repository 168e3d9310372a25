"""One PIN attempt in three steps: the quick store reads, the slow hash, the quick writes.

The hash (argon2id, ~40 ms, memory-hard) runs elsewhere (a worker process in the service:
argon2-cffi keeps the GIL, so a thread would stall the reactor). It is always computed, even
for an unknown supervisor or a locked-out caller, so neither the time taken nor the prompt
heard says which it was.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastagi_spy.store.audit import AuditLog, AuthResult
from fastagi_spy.store.database import Database
from fastagi_spy.store.directory import SupervisorEntry
from fastagi_spy.store.lockout import LockoutStore, device_key, supervisor_key
from fastagi_spy.store.pins import PinHasher, PinStore


@dataclass(frozen=True)
class PinVerdict:
    ok: bool
    locked: bool  # locked out before this try, or by it


@dataclass(frozen=True)
class PinAttempt:
    """What the store says before the hash is checked."""

    keys: tuple[str, ...]
    locked: bool
    stored_hash: str | None
    has_failures: bool = True  # failures on record that a success must clear


@dataclass
class PinChecker:
    hasher: PinHasher
    pins: PinStore
    lockouts: LockoutStore
    audit: AuditLog
    db: Database

    def before(self, device: str, claimed: str | None, supervisor: SupervisorEntry | None,
               now: float) -> PinAttempt:
        keys = (device_key(device),) + ((supervisor_key(claimed),) if claimed else ())
        # Two plain reads, no write lock: a lock that another call's failure sets meanwhile
        # applies from the next attempt on, as it would had that call come a moment later.
        standing = self.lockouts.standing(keys, now)
        return PinAttempt(
            keys=keys,
            locked=standing.locked_until is not None,
            stored_hash=self.pins.get_hash(supervisor.number) if supervisor else None,
            has_failures=standing.has_failures,
        )

    def after(self, record: int, attempt: PinAttempt, claimed: str | None,
              supervisor: SupervisorEntry | None, pin: str | None, valid: bool,
              now: float) -> PinVerdict:
        if valid and supervisor is not None and not attempt.locked and not attempt.has_failures:
            # The usual case: no counters to clear, only the audit update, which is one
            # statement and so its own transaction.
            return self._after(record, attempt, claimed, supervisor, pin, valid, now)
        with self.db.transaction():  # counters and audit commit together
            return self._after(record, attempt, claimed, supervisor, pin, valid, now)

    def _after(self, record: int, attempt: PinAttempt, claimed: str | None,
               supervisor: SupervisorEntry | None, pin: str | None, valid: bool,
               now: float) -> PinVerdict:
        if attempt.locked:
            self.audit.update(record, supervisor=claimed, auth_result=AuthResult.LOCKED_OUT.value)
            return PinVerdict(ok=False, locked=True)
        if valid and supervisor is not None:
            if attempt.has_failures:
                self.lockouts.record_success(attempt.keys, now)
            self.audit.update(record, supervisor=claimed, auth_result=AuthResult.OK.value)
            return PinVerdict(ok=True, locked=False)
        # Silence is not a guess; a typed PIN or supervisor number is.
        locked_now = bool(pin or claimed) and self.lockouts.record_failure(attempt.keys, now)
        if locked_now:
            result = AuthResult.LOCKED_OUT
        elif not (pin or claimed):
            result = AuthResult.NO_INPUT
        else:
            result = AuthResult.BAD_PIN if supervisor else AuthResult.UNKNOWN_SUPERVISOR
        self.audit.update(record, supervisor=claimed, auth_result=result.value)
        return PinVerdict(ok=False, locked=locked_now)
