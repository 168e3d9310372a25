"""Start-up after a crash: the records a previous run left open, set against the live channels.

A run killed with ``kill -9`` leaves its open records behind, and Asterisk keeps running the
ChanSpy of any spy that was going on (it only notices the dead AGI when ChanSpy returns).
Once a server's AMI link is up and its map synced, each left-open record whose call is still
alive there (same uniqueid and channel, in ``CoreShowChannels``) is hung up and closed
``interrupted`` with ``ChanSpyStop``'s time. Records found on no server are closed once every
server has been looked at, with the time of reconciliation, said to be uncertain: the spy
ended while nobody was watching. A server whose AMI is not up yet keeps its records waiting;
nothing else waits for it.

Several instances may share one database (and one Asterisk): an open record is then not
necessarily left by a crash, it may be another live instance's attempt. Two guards:

- each audit row names the instance that opened it (``AuditLog(instance=...)``), so
  :meth:`Reconciler.begin` takes only this instance's rows and rows from before names;
- every FastAGI session marks its channel with its instance's name (:data:`OWNER_VARIABLE`,
  set by ``net/fastagi.py`` before anything else), so a left-open record whose call is
  still up is hung up only when its channel carries this instance's name (a crashed run of
  this very instance), or no name or the bare "1" of a single instance; another instance's
  live call (an unnamed row of an older release, say) is left to that instance.

The closes go through the store runner (the store thread with PostgreSQL: they run while the
service serves calls). :meth:`Reconciler.begin` reads inline: it runs once in start-up,
before the store thread starts and before anything is served.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from fastagi_spy.store.audit import AuditLog, AuditRecord, EndReason, Via
from fastagi_spy.store.runner import InlineRunner, StoreRunner
from fastagi_spy.supervise.hangup import AMICaller, hang_up_spy
from fastagi_spy.supervise.running import RunningSpies

RECONCILE_WAIT = 5.0  # seconds for each Hangup action, and again for its ChanSpyStop
# The channel variable every FastAGI session sets first (net/fastagi.py REACHED_VARIABLE):
# the bundle's fail-over reads it, and its value names the instance that began the call.
OWNER_VARIABLE = "FASTAGI_SPY_REACHED"
# What a single instance, or one with no name, marks its calls with.
ANONYMOUS = "1"
_NAME_LEN = 120


def instance_name(agi_listen: str, host: str | None = None) -> str:
    """This instance's name: the host and the FastAGI endpoint it listens on. Stable across
    restarts (so a restarted instance knows its crashed run's calls) and distinct between
    instances on one host (their ports differ) or on several hosts."""
    printable = "".join(c for c in f"{host or socket.gethostname()}/{agi_listen}"
                        if c.isprintable())
    return printable[:_NAME_LEN]


UNCERTAIN = "left open by a previous run, no spy running at start-up: stop time uncertain " \
            "(time of reconciliation)"


class Reconciler:
    log = Logger()

    def __init__(self, audit: AuditLog, running: RunningSpies, servers: tuple[str, ...],
                 clock: IReactorTime, now: Callable[[], float],
                 wait: float = RECONCILE_WAIT, instance: str | None = None,
                 runner: StoreRunner | None = None) -> None:
        """``instance``: this instance's name (:func:`instance_name`), to leave other
        instances' live calls alone; None hangs up every live left-open call (one instance)."""
        self._audit = audit
        self._runner: StoreRunner = runner or InlineRunner()
        self._instance = instance
        self._running = running
        self._servers = frozenset(servers)
        self._clock = clock
        self._now = now
        self._wait = wait
        self._pending: dict[int, AuditRecord] = {}
        self._checked: set[str] = set()
        self._busy: set[str] = set()

    def begin(self) -> int:
        """Take the records left open, before this run opens any; returns how many."""
        self._pending = {r.id: r for r in self._audit.open_records()}
        self._checked = set()
        return len(self._pending)

    @property
    def instance(self) -> str:
        """The name this instance marks its calls with (the FastAGI session-start mark)."""
        return self._instance or ANONYMOUS

    @property
    def pending(self) -> int:
        return len(self._pending)

    def server_up(self, server: str, ami: AMICaller) -> defer.Deferred[None]:
        """``server``'s map is synced: reconcile its part (once), in the background."""
        if not self._pending or server in self._checked or server in self._busy:
            return defer.succeed(None)
        return defer.ensureDeferred(self._reconcile(server, ami)).addErrback(
            lambda f: self.log.failure("Reconciling left-open records on {server} failed", f,
                                       server=server))

    async def _reconcile(self, server: str, ami: AMICaller) -> None:
        self._busy.add(server)  # a reconnect meanwhile does not start a second pass
        try:
            await self._pass(server, ami)
        finally:
            self._busy.discard(server)

    async def _pass(self, server: str, ami: AMICaller) -> None:
        try:
            listed = await ami.call("CoreShowChannels", timeout=30)
        except Exception as exc:  # tried again at the next reconnect
            self.log.warn("Reconcile on {server}: channels not listed ({error})",
                          server=server, error=exc)
            return
        alive = {(e.get("Uniqueid"), e.get("Channel")) for e in listed.events
                 if e.event == "CoreShowChannel"}
        found = [r for r in self._pending.values()
                 if r.uniqueid and r.channel and (r.uniqueid, r.channel) in alive
                 and r.via != Via.UNEXPLAINED]  # a spy we only audited is not ours to end
        for record in found:
            del self._pending[record.id]  # ours now: no other server's pass closes it
        if self._instance is not None:
            owners = await defer.DeferredList(
                [defer.ensureDeferred(self._owner(ami, r)) for r in found])
            found = [r for r, (_, owner) in zip(found, owners, strict=True)
                     if self._ours(server, r, owner)]
        await defer.DeferredList([defer.ensureDeferred(self._hang_up(server, ami, r))
                                  for r in found])
        self._checked.add(server)
        if self._checked >= self._servers:
            await self._close_the_rest()

    @staticmethod
    async def _owner(ami: AMICaller, record: AuditRecord) -> str | None:
        """The instance name on the record's channel; None when it cannot be read."""
        assert record.channel is not None
        try:
            result = await ami.call("Getvar", [("Channel", record.channel),
                                               ("Variable", OWNER_VARIABLE)], timeout=10)
        except Exception:
            return None  # gone meanwhile, or AMI trouble: the next lines decide
        value = result.response.get("Value")
        return value if isinstance(value, str) else ""

    def _ours(self, server: str, record: AuditRecord, owner: str | None) -> bool:
        if owner is None:
            # Unreadable: hang up only what is surely ours; the record stays open for the
            # next start-up (or its own instance) rather than cutting another's call.
            self.log.warn("Reconcile: could not read {variable} on {channel} ({server}); "
                          "audit record {id} left open", variable=OWNER_VARIABLE,
                          channel=record.channel, server=server, id=record.id,
                          audit_id=record.id)
            return False
        if owner in ("", ANONYMOUS, self._instance):
            return True
        self.log.info("Reconcile: {channel} on {server} (audit record {id}) is instance "
                      "{owner}'s live call; left to it", channel=record.channel, server=server,
                      id=record.id, audit_id=record.id, owner=owner)
        return False

    async def _hang_up(self, server: str, ami: AMICaller, record: AuditRecord) -> None:
        assert record.uniqueid is not None and record.channel is not None
        asked = self._now()
        outcome = await hang_up_spy(ami, self._running, self._clock, server, record.channel,
                                    record.uniqueid, self._wait)
        if outcome.stopped_at is not None:
            at, detail = outcome.stopped_at, "left open by a previous run: spy still running " \
                "at start-up, hung up"
        elif outcome.hung_up:
            at, detail = asked, "left open by a previous run: call still up at start-up, " \
                "hung up; no ChanSpyStop seen, stop time uncertain"
        else:
            self.log.error("Reconcile: could not hang up {channel} on {server} ({error}); a "
                           "spy a previous run started may still be running",
                           channel=record.channel, server=server, error=outcome.error)
            at, detail = asked, f"left open by a previous run: still up at start-up, NOT " \
                f"hung up ({outcome.error}); stop time uncertain"[:200]
        self.log.warn("Reconcile: {channel} on {server} (audit record {id}) {what}",
                      channel=record.channel, server=server, id=record.id,
                      audit_id=record.id, what="hung up" if outcome.hung_up else "not hung up")
        ended = outcome.stopped_at is not None or (
            outcome.hung_up and record.spy_started_at is not None)
        fields: dict[str, float | int] = {"spy_stopped_at": at} if ended else {}
        if outcome.stopped_at is None:
            fields["times_uncertain"] = 1  # the stop time is ours, not Asterisk's
        await self._runner.run(self._audit.close, record.id, at, EndReason.INTERRUPTED, detail,
                               **fields)

    async def _close_the_rest(self) -> None:
        now = self._now()
        pending, self._pending = self._pending, {}
        await self._runner.run(self._close_all, list(pending.values()), now)
        if pending:
            self.log.warn("Closed {count} audit records left open by a previous run as "
                          "interrupted", count=len(pending))

    def _close_all(self, records: list[AuditRecord], now: float) -> None:
        """On the store thread: one hop for all of them."""
        for record in records:
            fields: dict[str, float | int] = {"times_uncertain": 1}
            if record.spy_started_at is not None and record.spy_stopped_at is None:
                fields["spy_stopped_at"] = now
            self._audit.close(record.id, now, EndReason.INTERRUPTED, UNCERTAIN, **fields)
