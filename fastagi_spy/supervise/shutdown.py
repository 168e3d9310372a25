"""On shutdown, end every spy of ours before the server goes: nobody keeps listening unaudited.

Each running spy's record is claimed ``server_shutdown`` first (so the flow's own close, when
its line then hangs up, keeps that reason), its spying channel is hung up over AMI on its
server, and the record is closed with the stop time from ``ChanSpyStop``, or the time we hung
up when none came in time. A spy that starts while we stop (a call that was past its PIN) is ended
the same way. What could not be hung up is logged at error level and said in the record.
The record's reads and writes go through the store runner (the store thread with PostgreSQL),
which service.py stops only after this has finished.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from fastagi_spy.store.audit import AuditLog, EndReason
from fastagi_spy.store.runner import InlineRunner, StoreRunner
from fastagi_spy.supervise.hangup import AMICaller, HangupOutcome, hang_up_spy
from fastagi_spy.supervise.running import RunningSpies, RunningSpy

SHUTDOWN_WAIT = 2.0  # seconds for each Hangup action, and again for its ChanSpyStop
HUNG_UP = "server stopped: spy hung up"


class SpyShutdown:
    log = Logger()

    def __init__(self, running: RunningSpies, audit: AuditLog,
                 ami: Callable[[str], AMICaller | None], clock: IReactorTime,
                 now: Callable[[], float], wait: float = SHUTDOWN_WAIT,
                 runner: StoreRunner | None = None) -> None:
        self._running = running
        self._runner: StoreRunner = runner or InlineRunner()
        self._audit = audit
        self._ami = ami
        self._clock = clock
        self._now = now
        self._wait = wait
        self._ending: dict[tuple[str, str], defer.Deferred[None]] = {}

    async def stop_all(self) -> None:
        """End every running spy of ours (and any that starts from now on); bounded."""
        self._running.on_start = self._started_while_stopping
        for spy in self._running.running():
            self._end(spy)
        await defer.DeferredList(list(self._ending.values()))

    def _started_while_stopping(self, spy: RunningSpy) -> None:
        self._end(spy)

    def _end(self, spy: RunningSpy) -> None:
        key = (spy.server, spy.uniqueid)
        if key not in self._ending:
            self._ending[key] = defer.ensureDeferred(self._end_one(spy)).addErrback(
                lambda f: self.log.failure("Ending spy {channel} failed", f, channel=spy.channel))

    async def _end_one(self, spy: RunningSpy) -> None:
        record = await self._claim(spy)
        asked = self._now()
        outcome = await hang_up_spy(self._ami(spy.server), self._running, self._clock,
                                    spy.server, spy.channel, spy.uniqueid, self._wait)
        if outcome.error is not None:
            self.log.error(
                "Shutdown: could not hang up spy {channel} on {server} ({error}); the "
                "supervisor may still be listening", channel=spy.channel, server=spy.server,
                error=outcome.error)
        else:
            self.log.info("Shutdown: spy {channel} on {server} ended", channel=spy.channel,
                          server=spy.server)
        if record is not None:
            await self._close(record, outcome, asked)

    def _claim_in_store(self, spy: RunningSpy) -> int | None:
        record = self._audit.open_record_of(spy.uniqueid, spy.channel)
        if record is not None:
            # Before the hang-up: the flow's own close, when its line drops, then keeps
            # this reason (its stop time is written while the record is still open).
            self._audit.claim_end(record, EndReason.SERVER_SHUTDOWN, HUNG_UP)
        return record

    async def _claim(self, spy: RunningSpy) -> int | None:
        try:
            return await self._runner.run(self._claim_in_store, spy)
        except Exception:
            # The hang-up matters more than the record: go on without it (logged).
            self.log.failure("Shutdown: audit record of {channel} not claimed",
                             channel=spy.channel)
            return None

    async def _close(self, record: int, outcome: HangupOutcome, asked: float) -> None:
        reason = EndReason.SERVER_SHUTDOWN
        close = self._audit.close
        try:
            if outcome.stopped_at is not None:
                at = outcome.stopped_at
                await self._runner.run(close, record, at, reason, HUNG_UP, spy_stopped_at=at)
            elif outcome.hung_up:
                await self._runner.run(
                    close, record, asked, reason, f"{HUNG_UP}; no ChanSpyStop seen, stop "
                    "time is when we hung up (uncertain)", spy_stopped_at=asked,
                    times_uncertain=1)
            else:
                await self._runner.run(
                    close, record, self._now(), reason,
                    f"server stopped: spy NOT hung up ({outcome.error})"[:200],
                    times_uncertain=1)
        except Exception:
            self.log.failure("Shutdown: audit record {record} not closed", record=record)
