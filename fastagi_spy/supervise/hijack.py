"""HIJACK: the supervisor takes the agent's customer over, and the agent's leg is released.

The supervisor's channel (running our AGI) executes ``Bridge(<customer's uniqueid>,x)``:
Asterisk 22's Bridge application moves the customer out of the agent's bridge into a new
one with the supervisor (``x``: when the supervisor hangs up, the customer is hung up too,
not sent back into the dialplan). The customer is given by uniqueid, never by name: Bridge
also accepts a name prefix. Once AMI shows both in one bridge (two BridgeEnter events with
the same BridgeUniqueid) the agent's leg, now alone, is hung up over AMI. The Bridge
application returns when either side hangs up; ``BRIDGERESULT`` says whether it bridged.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from twisted.internet.defer import ensureDeferred
from twisted.logger import Logger

from fastagi_spy.supervise.line import AGILine, LineGone
from fastagi_spy.wire.names import CHANNEL_NAME

log = Logger()


class Event(Protocol):
    @property
    def event(self) -> str | None: ...

    def get(self, name: str, default: str | None = None) -> str | None: ...


# (server, action, headers): one AMI action; (server, listener) -> stop listening.
Action = Callable[[str, str, list[tuple[str, str]]], Awaitable[object]]
Listen = Callable[[str, Callable[[Sequence[Event]], None]], Callable[[], None]]
# (server, channel name) -> (name, uniqueid) of the channels bridged with it (the live map).
Peers = Callable[[str, str], tuple[tuple[str, str], ...]]


class Taken(enum.Enum):
    NO_CUSTOMER = "no_customer"  # the agent's leg is not in a two-party call
    FAILED = "failed"  # Bridge did not bridge (BRIDGERESULT says why)
    ENDED = "ended"  # taken over, and then one side hung up


@dataclass(frozen=True)
class HijackResult:
    outcome: Taken
    detail: str
    taken_at: float | None = None  # when the customer joined the supervisor
    supervisor_left: bool = False  # the supervisor hung up (else the customer did)


@dataclass
class _Watch:
    """Which bridge the supervisor's and the customer's channels entered, from AMI."""

    supervisor: str
    customer: str
    on_taken: Callable[[], None]
    bridges: dict[str, str] = field(default_factory=dict)
    taken: bool = False

    def feed(self, events: Sequence[Event]) -> None:
        for event in events:
            name = event.get("Channel")
            if event.event != "BridgeEnter" or name not in (self.supervisor, self.customer):
                continue
            self.bridges[name] = event.get("BridgeUniqueid") or ""
            if (not self.taken and len(self.bridges) == 2
                    and len(set(self.bridges.values())) == 1):
                self.taken = True
                self.on_taken()


@dataclass
class Hijack:
    """``await hijack.take_over(line, server, agent_channel, now)``."""

    action: Action
    listen: Listen
    peers: Peers

    async def take_over(self, line: AGILine, server: str, agent_channel: str,
                        now: Callable[[], float]) -> HijackResult:
        found = self.peers(server, agent_channel)
        if len(found) != 1 or any(CHANNEL_NAME.fullmatch(part) is None for part in found[0]):
            return HijackResult(Taken.NO_CUSTOMER, f"{len(found)} parties with the agent")
        customer, customer_id = found[0]
        taken_at: list[float] = []

        def release_agent() -> None:
            taken_at.append(now())
            self._hang_up(server, agent_channel)

        watch = _Watch(line.env.channel, customer, release_agent)
        stop = self.listen(server, watch.feed)
        try:
            await line.exec("Bridge", f"{customer_id},x")
        finally:
            stop()
        # One more command: Asterisk sends its HANGUP line before this reply when the
        # supervisor is the one who left, so ``line.hung_up`` is settled afterwards.
        result = None
        with contextlib.suppress(LineGone):
            result = await line.get_variable("BRIDGERESULT")
        if not taken_at:
            return HijackResult(Taken.FAILED, f"BRIDGERESULT={result or 'unknown'}")
        return HijackResult(Taken.ENDED, f"customer {customer} taken over", taken_at[0],
                            supervisor_left=line.hung_up)

    def _hang_up(self, server: str, channel: str) -> None:
        """Release the agent's leg; a leg already gone is as good."""
        if channel.startswith("/"):  # AMI would read it as a regular expression
            return

        async def send() -> None:
            try:
                await self.action(server, "Hangup", [("Channel", channel), ("Cause", "16")])
            except Exception as exc:
                log.warn("HIJACK: the agent's leg {channel} not hung up: {error}",
                         channel=channel, error=exc)

        ensureDeferred(send())
