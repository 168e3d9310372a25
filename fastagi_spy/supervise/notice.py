"""A required notice: played to the monitored call, to the end, before the supervisor's spy.

Asterisk 22 has no way to hold a running ChanSpy's audio back until something else has
played (its only mode switch is the spy's own 4/5/6 keys), so the notice comes first: the
server originates the bundle's ``Local/notice@fastagi-spy-notice`` with ``ChanSpy(<agent's
channel>,quBES)`` on the other half, which barges the sound into both legs of the call,
and only when that ChanSpy has stopped does the supervisor's own ChanSpy start.

It counts as played only when Asterisk says so over AMI: the notice's ChanSpy started on the
agent's exact channel, and Playback set ``PLAYBACKSTATUS=SUCCESS`` on the playing half
(a VarSet event; the AMI account already reads the ``dialplan`` class). Anything else
(AMI down, Originate refused, a missing sound, the call gone) is :class:`NoticeFailed`.
Both halves get uniqueids we choose (Originate's ChannelId/OtherChannelId), so the events
are matched exactly.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.interfaces import IReactorTime

from fastagi_spy.domain import Mode
from fastagi_spy.supervise.chanspy import chanspy_argument

NOTICE_CONTEXT_CHANNEL = "Local/notice@fastagi-spy-notice/n"
NOTICE_VARIABLE = "FASTAGI_SPY_NOTICE"  # the sound, read by the bundle's notice context


class NoticeFailed(Exception):
    """The notice could not be played (the message says why): the spy must not go on."""


class Event(Protocol):
    def get(self, name: str, default: str | None = None) -> str | None: ...

    @property
    def event(self) -> str | None: ...


# (server, action, headers): one AMI action; (server, listener): listen to every event of
# that server until the returned callable is called.
Originate = Callable[[str, str, list[tuple[str, str]]], Awaitable[object]]
Listen = Callable[[str, Callable[[Sequence[Event]], None]], Callable[[], None]]


@dataclass
class _Progress:
    """What Asterisk has said about one notice so far."""

    spyer: str  # uniqueid of the half running ChanSpy
    player: str  # uniqueid of the half running Playback
    channel: str  # the agent's channel it must attach to
    done: Deferred[None] = field(default_factory=Deferred)
    attached: bool = False
    status: str | None = None

    def feed(self, events: Sequence[Event]) -> None:
        for event in events:
            if not self.done.called:
                self._one(event)

    def _one(self, event: Event) -> None:
        name = event.event
        if name == "ChanSpyStart" and event.get("SpyerUniqueid") == self.spyer:
            self.attached = event.get("SpyeeChannel") == self.channel
        elif (name == "VarSet" and event.get("Uniqueid") == self.player
              and event.get("Variable") == "PLAYBACKSTATUS"):
            self.status = event.get("Value")
        elif ((name == "ChanSpyStop" and event.get("SpyerUniqueid") == self.spyer)
              or (name == "Hangup" and event.get("Uniqueid") in (self.spyer, self.player))):
            self._finish()

    def _finish(self) -> None:
        if not self.attached:
            self.done.errback(NoticeFailed("the notice never reached the call"))
        elif self.status != "SUCCESS":
            self.done.errback(NoticeFailed(f"playback {self.status or 'did not finish'}"))
        else:
            self.done.callback(None)


@dataclass
class RequiredNotice:
    """``await notice.play(server, channel)``: returns once the whole notice has played to
    ``channel``'s call; raises NoticeFailed otherwise."""

    sound: str
    originate: Originate
    listen: Listen
    clock: IReactorTime
    timeout: float = 30.0  # the whole notice, from Originate to its ChanSpy's stop

    async def play(self, server: str, channel: str) -> None:
        tag = f"fsp-notice-{secrets.token_hex(8)}"
        progress = _Progress(f"{tag}-1", f"{tag}-2", channel)
        stop_listening = self.listen(server, progress.feed)
        try:
            try:
                await self.originate(server, "Originate", [
                    ("Channel", NOTICE_CONTEXT_CHANNEL),
                    ("ChannelId", progress.spyer),
                    ("OtherChannelId", progress.player),
                    ("Application", "ChanSpy"),
                    ("Data", chanspy_argument(channel, Mode.BARGE)),
                    ("Variable", f"{NOTICE_VARIABLE}={self.sound}"),
                    ("Async", "true"),
                ])
            except Exception as exc:  # AMI down, refused, timed out: all mean "not played"
                raise NoticeFailed(f"originate: {exc}"[:200]) from exc
            progress.done.addTimeout(self.timeout, self.clock)
            try:
                await progress.done
            except (TimeoutError, CancelledError):
                raise NoticeFailed(f"not played within {self.timeout:g} s") from None
        finally:
            stop_listening()
