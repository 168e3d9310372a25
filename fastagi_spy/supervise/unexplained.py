"""Spying nobody asked us for: every ChanSpy on a configured server that no authorised attempt
of ours explains becomes an ``unexplained`` audit row and an error in the log.

That turns the audit log from "what our server did" into "who listened on this PBX": a
ChanSpy in another dialplan, one an admin originated, one from the CLI. A spy is ours when
a flow of ours watches its spyer now (``SpyWatches``), or when an authorised attempt on
record explains it (its own channel on the channel it resolved: the record is written before
EXEC ChanSpy, so an AMI event arriving after the flow stopped watching is still ours), or
when it is the bundle's join notice barging into a call one of our attempts is spying on.

One row per spyer and spyee: ChanSpyStart opens it (server, spyer channel and caller id,
spyee channel and the agent the live map says it belongs to, Asterisk's start time) and the
matching ChanSpyStop closes it with Asterisk's stop time.

The audit reads and writes go through the store runner (on the store thread with PostgreSQL:
this runs from an AMI listener, which must not wait on the network). One spyer's events are
handled one after the other, each after the previous one's store calls have come back, so a
ChanSpyStop never looks for a row its ChanSpyStart has not opened yet. With SQLite (inline)
each event is handled completely before ``feed`` returns, as before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from fastagi_spy.domain import device_of_channel
from fastagi_spy.store.audit import AuditLog, EndReason, Via
from fastagi_spy.store.runner import InlineRunner, StoreRunner
from fastagi_spy.supervise.spywatch import Event

# The channel the bundle's [fastagi-spy-notice] context gives the notice's ChanSpy.
NOTICE_SPYER = "Local/notice@fastagi-spy-notice-"
_CALLERID_LEN = 40
# (server, spyer uniqueid, spyee channel, time, is the notice) -> an attempt of ours explains it
Explains = Callable[[str, str, str, float, bool], bool]


@dataclass
class _Open:
    record: int
    spyee: str


def _printable(text: str | None) -> str:
    """Caller id is the caller's own text: printable characters only, bounded."""
    return "".join(c for c in (text or "") if c.isprintable())[:_CALLERID_LEN]


class UnexplainedSpies:
    """Fed every AMI event of every server, by server name."""

    log = Logger()

    def __init__(self, audit: AuditLog, explains: Explains,
                 agent_of: Callable[[str, str], str | None], now: Callable[[], float],
                 watched: Callable[[str], bool] = lambda _uniqueid: False,
                 runner: StoreRunner | None = None) -> None:
        self._audit = audit
        self._explains = explains  # reads the store: called through the runner
        self._agent_of = agent_of  # (server, spyee uniqueid) -> agent number
        self._now = now
        self._watched = watched
        self._runner: StoreRunner = runner or InlineRunner()
        self._open: dict[tuple[str, str], _Open] = {}  # (server, spyer uniqueid) -> row
        # (server, spyer uniqueid) -> fires when that spyer's last event handed in is done
        self._turns: dict[tuple[str, str], defer.Deferred[None]] = {}

    def feed(self, server: str, event: Event) -> None:
        name = event.event
        if name not in ("ChanSpyStart", "ChanSpyStop"):
            return
        key = (server, event.get("SpyerUniqueid") or "")
        at = self._time(event)
        if name == "ChanSpyStart":
            # What the reactor knows now (our watches, the live map) is read now, at the
            # event; only the store is asked later, in this spyer's turn.
            ours = self._watched(key[1])
            agent = self._agent_of(server, event.get("SpyeeUniqueid") or "")
            self._in_turn(key, lambda: self._started(key, event, at, ours, agent))
        else:
            self._in_turn(key, lambda: self._stopped(key, at))

    def _in_turn(self, key: tuple[str, str], step: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``step`` once the spyer's earlier events are done (at once if none is pending)."""
        done: defer.Deferred[None] = defer.Deferred()
        previous = self._turns.get(key)
        self._turns[key] = done

        def finished(_: object) -> None:
            if self._turns.get(key) is done:
                del self._turns[key]
            done.callback(None)

        def go(_: object = None) -> None:
            d: defer.Deferred[None] = defer.ensureDeferred(step())
            d.addErrback(lambda f: self.log.failure(
                "unexplained ChanSpy check failed for {key}", f, key=key))
            d.addBoth(finished)

        if previous is None:
            go()
        else:
            previous.addCallback(go)

    async def _started(self, key: tuple[str, str], event: Event, at: float, ours: bool,
                       agent: str | None) -> None:
        server, spyer = key
        channel = event.get("SpyerChannel") or ""
        spyee = event.get("SpyeeChannel") or ""
        run = self._runner.run
        if ours or await run(self._explains, server, spyer, spyee, at,
                             channel.startswith(NOTICE_SPYER)):
            return
        earlier = self._open.pop(key, None)
        if earlier is not None:  # ChanSpy moved on to another channel without a stop we saw
            await run(self._audit.close, earlier.record, at, EndReason.COMPLETED, None,
                      spy_stopped_at=at)
        number = _printable(event.get("SpyerCallerIDNum"))
        caller = f"{number} {_printable(event.get('SpyerCallerIDName'))}".strip()
        # Every instance watching this Asterisk sees the event: one row between them. The
        # others keep its id too, so whichever is still running closes it at ChanSpyStop.
        record, opened = await run(
            self._audit.open_once,
            at, Via.UNEXPLAINED.value, channel=channel or None, uniqueid=spyer or None,
            device=device_of_channel(channel), auth_result=None, agent=agent,
            resolved_channel=spyee or None, server=server, spy_started_at=at,
            detail=f"ChanSpy not started by us; spyer caller id {caller or '-'}")
        self._open[key] = _Open(record, spyee)
        if not opened:
            return
        self.log.error(
            "Unexplained ChanSpy on {server}: {spyer} (caller id {caller}) is spying on "
            "{spyee} (agent {agent}); audit record {record}", server=server, spyer=channel,
            caller=caller or "-", spyee=spyee, agent=agent or "unknown", record=record)

    async def _stopped(self, key: tuple[str, str], at: float) -> None:
        found = self._open.pop(key, None)
        if found is not None:
            await self._runner.run(self._audit.close, found.record, at, EndReason.COMPLETED,
                                   None, spy_stopped_at=at)

    def _time(self, event: Event) -> float:
        # manager.conf timestampevents=yes adds "Timestamp: 1732165000.123456".
        try:
            at = float(event.get("Timestamp") or "")
        except ValueError:
            return self._now()
        return at if math.isfinite(at) else self._now()
