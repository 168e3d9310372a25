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
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from twisted.logger import Logger

from fastagi_spy.domain import device_of_channel
from fastagi_spy.store.audit import AuditLog, EndReason, Via
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
                 watched: Callable[[str], bool] = lambda _uniqueid: False) -> None:
        self._audit = audit
        self._explains = explains
        self._agent_of = agent_of  # (server, spyee uniqueid) -> agent number
        self._now = now
        self._watched = watched
        self._open: dict[tuple[str, str], _Open] = {}  # (server, spyer uniqueid) -> row

    def feed(self, server: str, event: Event) -> None:
        name = event.event
        if name == "ChanSpyStart":
            self._started(server, event)
        elif name == "ChanSpyStop":
            self._stopped(server, event)

    def _started(self, server: str, event: Event) -> None:
        spyer = event.get("SpyerUniqueid") or ""
        channel = event.get("SpyerChannel") or ""
        spyee = event.get("SpyeeChannel") or ""
        at = self._time(event)
        if self._watched(spyer) or self._explains(server, spyer, spyee, at,
                                                  channel.startswith(NOTICE_SPYER)):
            return
        key = (server, spyer)
        earlier = self._open.pop(key, None)
        if earlier is not None:  # ChanSpy moved on to another channel without a stop we saw
            self._audit.close(earlier.record, at, EndReason.COMPLETED, None, spy_stopped_at=at)
        agent = self._agent_of(server, event.get("SpyeeUniqueid") or "")
        number = _printable(event.get("SpyerCallerIDNum"))
        caller = f"{number} {_printable(event.get('SpyerCallerIDName'))}".strip()
        # Every instance watching this Asterisk sees the event: one row between them. The
        # others keep its id too, so whichever is still running closes it at ChanSpyStop.
        record, opened = self._audit.open_once(
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

    def _stopped(self, server: str, event: Event) -> None:
        found = self._open.pop((server, event.get("SpyerUniqueid") or ""), None)
        if found is not None:
            at = self._time(event)
            self._audit.close(found.record, at, EndReason.COMPLETED, None, spy_stopped_at=at)

    def _time(self, event: Event) -> float:
        # manager.conf timestampevents=yes adds "Timestamp: 1732165000.123456".
        try:
            at = float(event.get("Timestamp") or "")
        except ValueError:
            return self._now()
        return at if math.isfinite(at) else self._now()
