"""One PIN attempt in three steps: count it, hash it (elsewhere), then settle it.

The attempt is counted in the store before its hash is known (`begin`), and the lock is
checked again when a right PIN would be granted (`finish`): N calls at once get no more
guesses than the threshold. The hash (argon2id, ~40 ms, memory-hard) runs in a worker
process and is always computed, even for an unknown supervisor or a locked-out caller, so
neither the time taken nor the prompt heard says which it was.

Scope: failures count against the calling device and the (device, supervisor) pair; against
the supervisor number itself only from phones other than the supervisor's own, with a much
higher threshold that raises an alert. Nobody can lock a supervisor out of their own phone
from elsewhere in the building.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from twisted.logger import Logger

from fastagi_spy.domain import SupervisorEntry
from fastagi_spy.store.audit import AuditLog, AuthResult, EndReason
from fastagi_spy.store.database import Database
from fastagi_spy.store.lockout import (
    SUPERVISOR_PREFIX,
    Admission,
    LockoutStore,
    device_key,
    pair_key,
    supervisor_key,
)
from fastagi_spy.store.pins import PinStore
from fastagi_spy.store.runner import InlineRunner, StoreRunner
from fastagi_spy.supervise.attempt import AuditAttempt, closed_row


class PinCheckUnavailable(Exception):
    """The PIN could not be checked (the hash worker is stuck, gone or overloaded)."""


@dataclass(frozen=True)
class PinVerdict:
    ok: bool
    locked: bool  # refused as locked: before this try, at grant time, or by it


@dataclass
class PinAttempt:
    """What `begin` counted, for `finish` or `abandon` to settle."""

    device: str
    claimed: str | None
    keys: tuple[str, ...]
    admission: Admission
    stored_hash: str | None
    slots: tuple[str, ...] = ()  # in-flight slots held until the attempt is settled


def attempt_keys(device: str, claimed: str | None,
                 supervisor: SupervisorEntry | None) -> tuple[str, ...]:
    """The lockout keys one attempt counts against."""
    if not claimed:
        return (device_key(device),)
    keys = (device_key(device), pair_key(device, claimed))
    return keys if _own_phone(device, supervisor) else (*keys, supervisor_key(claimed))


def _own_phone(device: str, supervisor: SupervisorEntry | None) -> bool:
    return supervisor is not None and device in supervisor.devices


@dataclass
class PinChecker:
    pins: PinStore
    lockouts: LockoutStore
    audit: AuditLog
    db: Database
    max_in_flight: int = 2  # admitted attempts at once, per device and per supervisor
    in_flight: Counter[str] = field(default_factory=Counter)
    # Where the store calls run (inline for SQLite, one worker thread for PostgreSQL).
    runner: StoreRunner = field(default_factory=InlineRunner)

    log = Logger()

    async def begin(self, device: str, claimed: str | None,
                    supervisor: SupervisorEntry | None, now: float) -> PinAttempt:
        """Count the attempt before its hash is checked (refused when locked, over the
        threshold with those in flight, or over the in-flight cap)."""
        keys = attempt_keys(device, claimed, supervisor)
        # The supervisor's slot is only taken from other phones: a flood from elsewhere must
        # not keep the supervisor's own phone waiting for a slot.
        slots = tuple(k for k in keys if not k.startswith("pair:"))
        full = any(self.in_flight[slot] >= self.max_in_flight for slot in slots)
        # The slots are held while the store counts the attempt (the in-flight counters live
        # on the reactor; the store call may not): a burst cannot slip past the cap meanwhile.
        held = () if full else slots
        self.in_flight.update(held)
        number = supervisor.number if supervisor else None

        def count() -> tuple[str | None, Admission]:
            stored_hash = self.pins.get_hash(number) if number else None
            admission = Admission(False) if full else self.lockouts.admit(keys, now)
            return stored_hash, admission

        try:
            stored_hash, admission = await self.runner.run(count)
        except BaseException:
            self._drop(held)
            raise
        if not admission.admitted:
            self._drop(held)
            held = ()
        return PinAttempt(device, claimed, keys, admission, stored_hash, held)

    async def finish(self, record: AuditAttempt, attempt: PinAttempt,
                     supervisor: SupervisorEntry | None, valid: bool,
                     now: float) -> PinVerdict:
        """Settle the attempt with its hash result; the audit record says how it went."""
        self._release(attempt)
        record_id = record.record
        verdict, alerts = await self.runner.run(
            self._settle, record, record_id, attempt, supervisor is not None, valid, now)
        for text in alerts:
            self.log.error("PIN lockout {text}", text=text)
        return verdict

    def _settle(self, record: AuditAttempt, record_id: int, attempt: PinAttempt, known: bool,
                valid: bool, now: float) -> tuple[PinVerdict, list[str]]:
        """Every statement of the settlement in one transaction, in one runner call (so on
        one thread): the counters and the audit row commit together or not at all."""
        alerts: list[str] = []
        with self.db.transaction():
            if not attempt.admission.admitted:
                verdict, result = PinVerdict(False, True), AuthResult.LOCKED_OUT
            elif valid and known:
                granted = self.lockouts.grant(attempt.keys, now)  # the lock, checked again
                verdict = PinVerdict(granted, not granted)
                result = AuthResult.OK if granted else AuthResult.LOCKED_OUT
            else:
                outcome = self.lockouts.settle_failure(attempt.keys, now)
                verdict = PinVerdict(False, outcome.locked)
                result = (AuthResult.LOCKED_OUT if outcome.locked
                          else AuthResult.BAD_PIN if known else AuthResult.UNKNOWN_SUPERVISOR)
                for key in outcome.newly_locked:
                    if key.startswith(SUPERVISOR_PREFIX):
                        alerts.append(self._alert(key.removeprefix(SUPERVISOR_PREFIX),
                                                  attempt.device, now))
            record.pin_result(record_id, attempt.claimed, result, now)
        return verdict, alerts

    async def abandon(self, attempt: PinAttempt) -> None:
        """The hash never answered: no guess was judged, so the attempt is not counted."""
        self._release(attempt)
        await self.runner.run(self.lockouts.refund, attempt.admission.rows)

    def _release(self, attempt: PinAttempt) -> None:
        self._drop(attempt.slots)
        attempt.slots = ()

    def _drop(self, slots: tuple[str, ...]) -> None:
        self.in_flight.subtract(slots)
        self.in_flight += Counter()  # drop the zeros

    def _alert(self, number: str, device: str, now: float) -> str:
        """The alert row (in the settlement's transaction); returns the text to log."""
        threshold = self.lockouts.policy.supervisor_max_failures
        text = (f"alert: {threshold} failed PINs for supervisor {number} from phones other "
                f"than their own (the last from {device}); the number is locked on other "
                f"phones, the supervisor's own phone still works")
        closed_row(self.audit, now, EndReason.LOCKED_OUT, text, supervisor=number,
                   device=device, auth_result=AuthResult.LOCKED_OUT)
        return text
