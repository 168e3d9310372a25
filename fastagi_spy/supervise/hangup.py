"""Hang a spying channel up over AMI and wait, bounded, for Asterisk's ChanSpyStop."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

from fastagi_spy.supervise.running import RunningSpies


class AMICaller(Protocol):
    """What we need of one server's AMI link (``net.ami.AMIClient`` is one)."""

    async def call(self, action: str, headers: Iterable[tuple[str, str]] = (),
                   timeout: float | None = ...) -> Any: ...


@dataclass(frozen=True)
class HangupOutcome:
    hung_up: bool
    stopped_at: float | None  # ChanSpyStop's time, when it came within the wait
    error: str | None = None  # why it was not hung up


async def hang_up_spy(ami: AMICaller | None, running: RunningSpies, clock: IReactorTime,
                      server: str, channel: str, uniqueid: str, wait: float) -> HangupOutcome:
    """AMI ``Hangup`` of ``channel`` on ``server``; at most ``wait`` seconds for the action
    and as long again for the ChanSpyStop it causes."""
    if ami is None:
        return HangupOutcome(False, None, f"no AMI link to {server}")
    if not channel or channel.startswith("/"):
        # Hangup reads "/.../" as a regular expression over every channel: never send one.
        return HangupOutcome(False, None, f"refused channel name {channel!r}")
    stop = running.stopped(server, uniqueid)  # before the hang-up: its stop may come first
    try:
        await ami.call("Hangup", [("Channel", channel)], timeout=wait)
    except Exception as exc:
        if not stop.called:
            stop.cancel()
        stopped_at: float | None = await stop.addErrback(lambda _: None)
        if stopped_at is not None:  # it stopped by itself meanwhile: nothing left to end
            return HangupOutcome(False, stopped_at)
        return HangupOutcome(False, None, f"{type(exc).__name__}: {exc}"[:160])
    stop.addTimeout(wait, clock)
    try:
        return HangupOutcome(True, await stop)
    except defer.TimeoutError:
        return HangupOutcome(True, None)
