"""Drives the sandbox Asterisk like the Asterisk testsuite does (for the demo and the tests):
AMI Originate of Local channels, events awaited by predicate, DTMF typed by SendDTMF.

The reactor is passed in, never imported: importing this module (the demo does, from an
installed wheel) has no side effect. The tests' global-reactor wrapper is
tests/integration/driver.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IReactorTime

from fastagi_spy.net.ami import AMIClient, AMICredentials
from fastagi_spy.sandbox import TESTER_SECRET, TESTER_USER, AsteriskSandbox
from fastagi_spy.wire.ami import ActionResult, AMIMessage

Predicate = Callable[[AMIMessage], bool]


@dataclass
class _Waiter:
    predicate: Predicate
    deferred: defer.Deferred[AMIMessage]


@dataclass
class Driver:
    """A privileged AMI connection (the sandbox's fsp-tester account) plus an event log."""

    sandbox: AsteriskSandbox
    reactor: Any  # IReactorTCP and IReactorTime: the one the caller runs
    client: AMIClient | None = None
    events: list[AMIMessage] = field(default_factory=list)
    _waiters: list[_Waiter] = field(default_factory=list)

    async def connect(self) -> None:
        ready: defer.Deferred[None] = defer.Deferred()
        self.client = AMIClient(
            "tester",
            TCP4ClientEndpoint(self.reactor, "127.0.0.1", self.sandbox.ami_port),
            AMICredentials(TESTER_USER, TESTER_SECRET),
            self.reactor,
            max_backoff=1.0,
            on_ready=lambda _c: None if ready.called else ready.callback(None),
        )
        self.client.add_listener(self._events)
        self.client.start()
        await with_timeout(self.reactor, ready, 30, "tester AMI login")

    async def reconnected(self) -> None:
        """After an Asterisk restart: wait until the tester is logged in again."""
        assert self.client is not None
        for _ in range(300):
            if self.client.ready:
                try:
                    await self.client.call("Ping")
                    return
                except Exception:  # noqa: S110 - the old connection may still be dying
                    pass
            await sleep(self.reactor, 0.1)
        raise AssertionError("tester AMI did not reconnect")

    async def close(self) -> None:
        if self.client is not None:
            await self.client.stop()

    def _events(self, messages: Sequence[AMIMessage]) -> None:
        for message in messages:
            self._event(message)

    def _event(self, message: AMIMessage) -> None:
        self.events.append(message)
        for waiter in list(self._waiters):
            if waiter.predicate(message):
                self._waiters.remove(waiter)
                waiter.deferred.callback(message)

    async def wait_for(self, predicate: Predicate, timeout: float = 15.0, what: str = "event",
                       since: int = 0) -> AMIMessage:
        """The first event (from index ``since`` of the log) matching ``predicate``."""
        for message in self.events[since:]:
            if predicate(message):
                return message
        d: defer.Deferred[AMIMessage] = defer.Deferred()
        waiter = _Waiter(predicate, d)
        self._waiters.append(waiter)
        try:
            return await with_timeout(self.reactor, d, timeout, what)
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def mark(self) -> int:
        return len(self.events)

    def seen(self, predicate: Predicate, since: int = 0) -> list[AMIMessage]:
        return [m for m in self.events[since:] if predicate(m)]

    async def action(self, name: str, headers: Iterable[tuple[str, str]] = ()) -> ActionResult:
        assert self.client is not None
        return await self.client.call(name, list(headers), timeout=20)

    async def originate(self, channel: str, context: str, exten: str,
                        variables: dict[str, str] | None = None,
                        caller_id: str | None = None) -> None:
        headers = [("Channel", channel), ("Context", context), ("Exten", exten),
                   ("Priority", "1"), ("Async", "true"), ("Timeout", "10000")]
        if caller_id:
            headers.append(("CallerID", caller_id))
        for key, value in (variables or {}).items():
            headers.append(("Variable", f"{key}={value}"))
        await self.action("Originate", headers)

    async def channels(self) -> list[AMIMessage]:
        result = await self.action("CoreShowChannels")
        return list(result.events)

    async def new_channel(self, prefix: str, suffix: str, since: int, timeout: float = 10.0) -> str:
        """The first channel created after ``since`` whose name has this prefix and suffix."""
        event = await self.wait_for(
            lambda m: m.event == "Newchannel" and (m.get("Channel") or "").startswith(prefix)
            and (m.get("Channel") or "").endswith(suffix),
            since=since, timeout=timeout, what=f"new channel {prefix}*{suffix}")
        return event.get("Channel") or ""

    async def channel_named(self, prefix: str, suffix: str = "", timeout: float = 10.0) -> str:
        """The live channel whose name starts with prefix and ends with suffix."""
        for _ in range(int(timeout * 10)):
            for item in await self.channels():
                name = item.get("Channel") or ""
                if name.startswith(prefix) and name.endswith(suffix):
                    return name
            await sleep(self.reactor, 0.1)
        raise AssertionError(f"no channel {prefix}*{suffix}")

    async def hangup(self, channel: str) -> None:
        await self.action("Hangup", [("Channel", channel)])

    async def type_digits(self, handset_channel: str, role: str, digits: str) -> None:
        """SendDTMF on a handset (the testsuite's SetVar + Redirect), then back to its tone."""
        await self.action("Setvar", [("Channel", handset_channel), ("Variable", "DTMF_TO_SEND"),
                                     ("Value", digits)])
        await self.action("Redirect", [("Channel", handset_channel), ("Context", "fsp-sendkeys"),
                                       ("Exten", role), ("Priority", "1")])

    async def hangup_all(self) -> None:
        for item in await self.channels():
            name = item.get("Channel")
            if name:
                with contextlib.suppress(Exception):  # it may have gone already
                    await self.hangup(name)


def is_event(name: str, **fields: str) -> Predicate:
    def match(message: AMIMessage) -> bool:
        return message.event == name and all(message.get(k) == v for k, v in fields.items())

    return match


R = TypeVar("R")


async def with_timeout(clock: IReactorTime, d: defer.Deferred[R], seconds: float,
                       what: str) -> R:
    d.addTimeout(seconds, clock)
    try:
        return await d
    except defer.TimeoutError:
        raise AssertionError(f"timed out after {seconds}s waiting for {what}") from None


def sleep(clock: IReactorTime, seconds: float) -> defer.Deferred[None]:
    d: defer.Deferred[None] = defer.Deferred()
    clock.callLater(seconds, d.callback, None)
    return d
