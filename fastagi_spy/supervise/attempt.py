"""One object owns an attempt's audit record: every write about it goes through here.

A feature-code call is one or more attempts (one per target asked for); each is one audit
row. The row is opened before anything can be heard, learns who called and what they asked
for, when ChanSpy started and stopped and in which modes, and is closed exactly once. Knowing
the whole story in one place is what keeps the record without holes: no step of the flow
writes to the audit table behind this object's back.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from twisted.logger import Logger

from fastagi_spy.domain import Mode
from fastagi_spy.store.audit import AuditLog, AuthResult, EndReason, EventKind, Via
from fastagi_spy.store.runner import InlineRunner, StoreRunner


class Stage(enum.Enum):
    """Where a call is; the value is what a hang-up there reads like in the audit detail."""

    START = "start"
    SUPERVISOR_PROMPT = "supervisor prompt"
    PIN_PROMPT = "pin prompt"
    TARGET_PROMPT = "target prompt"
    PICKING = "picking"
    NOTICE = "notice"
    SPY = "spy"
    AFTER_SPY = "after spy"


class AuditAttempt:
    """The audit record of the current attempt of one call (and, via :meth:`next`, of the
    attempts after it).

    Every write goes through the store runner (inline for SQLite, one worker thread for
    PostgreSQL); the writes the flow waits for are coroutines. This object's own state
    (the record id, what was learnt of the target) is only touched on the reactor thread:
    each write takes its values when it is handed over, not when it runs.
    """

    log = Logger()

    def __init__(self, audit: AuditLog, now: Callable[[], float], record: int, *,
                 channel: str | None, uniqueid: str | None, device: str | None,
                 runner: StoreRunner) -> None:
        """Use :meth:`open`: the record must be on disk before the object exists."""
        self._audit = audit
        self._now = now
        self._runner = runner
        self._channel, self._uniqueid, self._device = channel, uniqueid, device
        self.supervisor: str | None = None  # set once the caller is authenticated
        self.record = record
        self._target: dict[str, str | None] = {}
        self._uncertain = False

    @classmethod
    async def open(cls, audit: AuditLog, now: Callable[[], float], via: Via, *,
                   channel: str | None, uniqueid: str | None, device: str | None,
                   runner: StoreRunner | None = None) -> AuditAttempt:
        """Open the attempt's record (written before this returns)."""
        runner = runner if runner is not None else InlineRunner()
        record = await runner.run(audit.open, now(), via.value, channel=channel,
                                  uniqueid=uniqueid, device=device)
        return cls(audit, now, record, channel=channel, uniqueid=uniqueid, device=device,
                   runner=runner)

    # -- who is calling ---------------------------------------------------------------------

    async def claimed(self, supervisor: str | None) -> None:
        """The supervisor number the caller gave, before it could be checked."""
        await self._runner.run(self._audit.update, self.record, supervisor=supervisor)

    def pin_result(self, record: int, claimed: str | None, result: AuthResult,
                   at: float) -> None:
        """One typed PIN, judged: the row keeps the last, the events every one. Synchronous
        on purpose: the PIN check runs it inside its own transaction, on the store's thread,
        so ``record`` is taken on the reactor beforehand."""
        self._audit.update(record, supervisor=claimed, auth_result=result.value)
        self._audit.add_event(record, at, EventKind.PIN, f"{claimed or '-'} {result}")

    async def no_pin(self) -> None:
        await self._runner.run(self._audit.update, self.record,
                               auth_result=AuthResult.NO_INPUT.value)

    async def authenticated(self, supervisor: str, **fields: str | None) -> None:
        """Known by other means than a PIN (a cross-server token)."""
        self.supervisor = supervisor
        await self._runner.run(self._audit.update, self.record, supervisor=supervisor,
                               auth_result=AuthResult.OK.value, **fields)

    def signed_in(self, supervisor: str) -> None:
        """The PIN was right (already written by :meth:`pin_result`)."""
        self.supervisor = supervisor

    # -- what they asked for ----------------------------------------------------------------

    async def requested(self, text: str) -> None:
        """A target as typed that names nobody (not digits, several AGI arguments)."""
        self._target["requested_target"] = text
        await self._runner.run(self._audit.update, self.record, requested_target=text)

    def aim(self, target: str | None, agent: str | None = None, channel: str | None = None,
            server: str | None = None) -> None:
        """What the target resolved to; written with the next write, not on its own."""
        if target is not None:
            self._target["requested_target"] = target
        if agent is not None:
            self._target.update(agent=agent, resolved_channel=channel, server=server)

    async def spying(self, mode: Mode, detail: str | None = None) -> int:
        """One write with everything the record needs, on disk before ChanSpy starts;
        returns the record the spy's events belong to."""
        fields: dict[str, str | None] = {**self._target, "modes": mode.value}
        if detail is not None:
            fields["detail"] = detail
        record = self.record
        await self._runner.run(self._audit.update, record, **fields)
        return record

    # -- what Asterisk says (AMI-driven: nobody waits for these, so failures are logged) -----
    # They name the record the spy ran in: a late event must not land in the next attempt's.
    # The runner keeps them in order behind the writes handed over before them.

    def spy_started(self, record: int, at: float) -> None:
        self._quietly(record, self._audit.mark_spy_started, record, at)

    def spy_stopped(self, record: int, at: float) -> None:
        self._quietly(record, self._audit.mark_spy_stopped, record, at)

    def mode(self, record: int, mode: Mode, at: float) -> None:
        audit = self._audit

        def both() -> None:
            audit.add_mode(record, mode.value)
            audit.add_event(record, at, EventKind.MODE, mode.value)

        self._quietly(record, both)

    async def notice(self, outcome: str) -> None:
        """The required notice to the monitored call: played, or why not."""
        await self._runner.run(self._audit.add_event, self.record, self._now(),
                               EventKind.NOTICE, outcome)

    @property
    def times_are_guesses(self) -> bool:
        """Whether this attempt's spy times were guessed (see :meth:`times_guessed`)."""
        return self._uncertain

    def times_guessed(self, record: int, started: float | None, stopped: float | None) -> None:
        """AMI was lost during the spy: what its events did not say is taken from EXEC
        ChanSpy (sent at ``started``, returned at ``stopped``), and the row says so."""
        if started is not None:
            self.spy_started(record, started)
        if stopped is not None:
            self.spy_stopped(record, stopped)
        self._uncertain = True

    # -- the end ----------------------------------------------------------------------------

    async def close(self, reason: EndReason, detail: str | None = None) -> None:
        """End this attempt once; what was learnt about the target goes in with the close."""
        fields: dict[str, str | float | None] = {**self._target}
        if self._uncertain:
            fields["times_uncertain"] = 1
        self._target, self._uncertain = {}, False
        record = self.record
        await self._runner.run(self._audit.close, record, self._now(), reason, detail,
                               **fields)
        # The reason only: the detail may hold what the caller typed.
        self.log.info("Attempt ended: {reason}", reason=reason.value, audit_id=record)

    async def refused(self, reason: EndReason, detail: str | None, *,
                      go_on: bool = True) -> None:
        """The target asked for is refused: on record as an event too, then the next
        attempt (``go_on``) or the end of the call."""
        target = self._target.get("requested_target") or "-"
        await self._runner.run(self._audit.add_event, self.record, self._now(),
                               EventKind.REFUSED,
                               f"{target} {reason}: {detail or ''}".rstrip(": "))
        if go_on:
            await self.next(reason, detail)
        else:
            await self.close(reason, detail)

    async def next(self, reason: EndReason, detail: str | None = None) -> None:
        """Close this attempt and open the next one for the same authenticated caller."""
        await self.close(reason, detail)
        self.record = await self._runner.run(
            self._audit.open, self._now(), Via.PHONE.value, channel=self._channel,
            uniqueid=self._uniqueid, device=self._device, supervisor=self.supervisor,
            auth_result=AuthResult.OK)

    def _quietly(self, record: int, step: Callable[..., object], *args: object) -> None:
        """Fire and forget, in turn with the other writes; a failure is logged naming the
        record (the runner's ``submit``, with the audit id in the log line)."""
        self._runner.run(step, *args).addErrback(
            lambda f: self.log.failure("background audit step failed", f, audit_id=record))


def closed_row(audit: AuditLog, at: float, reason: EndReason, detail: str, *,
               supervisor: str | None = None, device: str | None = None,
               auth_result: AuthResult = AuthResult.PENDING) -> int:
    """A row that is over as soon as it is written (an alert, a refused connection)."""
    record = audit.open(at, Via.PHONE.value, supervisor=supervisor, device=device,
                        auth_result=auth_result)
    audit.close(record, at, reason, detail)
    return record
