"""The AMI client on Twisted: one ClientService per Asterisk server.

The protocol frames bytes through the sans-IO parser and correlates replies by ActionID;
the client logs in (MD5 challenge) inside ``prepareConnection``, resynchronises the live map
on every (re)connect, keeps a Ping alive to spot half-open connections, and never replays an
action after a reconnect: a minutes-late spy action would be a privacy incident.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from fastagi_spy.wire.ami import (
    ActionCorrelator,
    ActionResult,
    AMIBanner,
    AMIMessage,
    AMIParser,
    encode_action,
    md5_key,
)
from fastagi_spy.wire.errors import ProtocolError

# Called once per read with the events it completed, in arrival order: the live map applies
# a burst in one step and tells its subscribers once.
EventListener = Callable[[Sequence[AMIMessage]], None]

DEFAULT_ACTION_TIMEOUT = 10.0


class AMIError(Exception):
    """An AMI action failed."""


class AMIActionFailed(AMIError):
    """Asterisk answered ``Response: Error``."""

    def __init__(self, action: str, result: ActionResult) -> None:
        self.result = result
        super().__init__(f"{action}: {result.response.get('Message', 'error')}")


class AMIConnectionLost(AMIError):
    """The connection closed before the reply arrived; the action is not replayed."""


class AMITimeout(AMIError):
    """No reply in time."""


class AMINotConnected(AMIError):
    """There is no logged-in AMI connection right now."""


class AMILoginRefused(AMIError):
    """Asterisk refused our credentials."""


class AMIProtocol(Protocol):
    """Frames one AMI connection; replies are matched to actions by ActionID."""

    log = Logger()

    def __init__(self, clock: IReactorTime, on_events: EventListener, prefix: str) -> None:
        self.clock = clock
        self.on_events = on_events
        self.banner: defer.Deferred[AMIBanner] = defer.Deferred()
        self.lost: defer.Deferred[None] = defer.Deferred()
        self._parser = AMIParser()
        self._correlator = ActionCorrelator()
        self._waiting: dict[str, tuple[str, defer.Deferred[ActionResult], IDelayedCall | None]] = {}
        self._ids = (f"{prefix}-{n}" for n in itertools.count(1))
        self._keepalive: LoopingCall | None = None
        self.connected = False

    def connectionMade(self) -> None:
        self.connected = True

    def dataReceived(self, data: bytes) -> None:
        try:
            items = self._parser.feed(data)
        except ProtocolError as exc:
            self.log.error("AMI protocol error: {error}; dropping the connection", error=exc)
            self.transport.abortConnection()  # type: ignore[union-attr]
            return
        events: list[AMIMessage] = []
        for item in items:
            if isinstance(item, AMIBanner):
                if not self.banner.called:
                    self.banner.callback(item)
                continue
            consumed, finished = self._correlator.feed(item)
            if finished is not None:
                # Whoever waits for the action sees every event that came before its end.
                self._dispatch(events)
                events = []
                self._finish(finished)
            elif not consumed:
                events.append(item)
        self._dispatch(events)

    def _dispatch(self, events: list[AMIMessage]) -> None:
        if not events:
            return
        try:
            self.on_events(events)
        except Exception:  # a listener bug must not kill the connection
            self.log.failure("AMI event listener failed on {count} events", count=len(events))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.connected = False
        self.stop_keepalive()
        self._correlator.clear()
        waiting, self._waiting = self._waiting, {}
        for action, d, timer in waiting.values():
            if timer is not None and timer.active():
                timer.cancel()
            d.errback(AMIConnectionLost(f"{action}: connection lost; not replayed"))
        if not self.banner.called:
            self.banner.errback(AMIConnectionLost("closed before the banner"))
        self.lost.callback(None)

    def send_action(
        self,
        action: str,
        headers: Iterable[tuple[str, str]] = (),
        timeout: float | None = DEFAULT_ACTION_TIMEOUT,
    ) -> defer.Deferred[ActionResult]:
        """Send an action; fires with its (list) result, or fails with an AMIError."""
        if not self.connected:
            return defer.fail(AMINotConnected(f"{action}: not connected"))
        action_id = next(self._ids)
        data = encode_action(action, headers, action_id)  # LocalProtocolError on CR/LF
        d: defer.Deferred[ActionResult] = defer.Deferred()
        timer = None
        if timeout is not None:
            timer = self.clock.callLater(timeout, self._timed_out, action_id)
        self._waiting[action_id] = (action, d, timer)
        self._correlator.expect(action_id)
        self.transport.write(data)  # type: ignore[union-attr]
        return d

    async def call(
        self,
        action: str,
        headers: Iterable[tuple[str, str]] = (),
        timeout: float | None = DEFAULT_ACTION_TIMEOUT,
    ) -> ActionResult:
        """send_action, raising AMIActionFailed on ``Response: Error``."""
        result = await self.send_action(action, headers, timeout)
        if not result.success:
            raise AMIActionFailed(action, result)
        return result

    def start_keepalive(self, interval: float, timeout: float) -> None:
        """Ping every ``interval``; no Pong within ``timeout`` means a half-open connection."""

        def ping() -> None:
            d = self.send_action("Ping", timeout=timeout)
            d.addErrback(self._ping_failed)

        self._keepalive = LoopingCall(ping)
        self._keepalive.clock = self.clock
        self._keepalive.start(interval, now=False)

    def stop_keepalive(self) -> None:
        if self._keepalive is not None and self._keepalive.running:
            self._keepalive.stop()
        self._keepalive = None

    def _ping_failed(self, failure: Failure) -> None:
        if failure.check(AMITimeout):
            self.log.warn("AMI Ping got no Pong: the connection is half-open; reconnecting")
            self.transport.abortConnection()  # type: ignore[union-attr]
        elif not failure.check(AMIConnectionLost, AMINotConnected):
            self.log.failure("AMI Ping failed", failure)

    def _finish(self, result: ActionResult) -> None:
        entry = self._waiting.pop(result.action_id, None)
        if entry is None:
            return
        _, d, timer = entry
        if timer is not None and timer.active():
            timer.cancel()
        d.callback(result)

    def _timed_out(self, action_id: str) -> None:
        entry = self._waiting.pop(action_id, None)
        self._correlator.forget(action_id)
        if entry is not None:
            action, d, _ = entry
            d.errback(AMITimeout(f"{action}: no reply"))


class _AMIFactory(Factory):
    def __init__(self, client: AMIClient) -> None:
        self.client = client

    def buildProtocol(self, addr: object) -> AMIProtocol:
        return AMIProtocol(self.client.clock, self.client.dispatch, self.client.name)


@dataclass(frozen=True)
class AMICredentials:
    username: str
    secret: str


class AMIClient:
    """A resilient, logged-in AMI connection to one Asterisk server.

    ``on_ready(client)`` runs after every successful login (the resync hook); listeners get
    every event that is not part of an action's reply; ``on_down`` runs when the link drops.
    """

    log = Logger()

    def __init__(
        self,
        name: str,
        endpoint: IStreamClientEndpoint,
        credentials: AMICredentials,
        clock: IReactorTime,
        *,
        ping_interval: float = 10.0,
        ping_timeout: float = 5.0,
        max_backoff: float = 30.0,
        on_ready: Callable[[AMIClient], defer.Deferred[None] | None] | None = None,
        on_down: Callable[[AMIClient], None] | None = None,
    ) -> None:
        self.name = name
        self.clock = clock
        self.credentials = credentials
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.on_ready = on_ready
        self.on_down = on_down
        self.listeners: list[EventListener] = []
        self.protocol: AMIProtocol | None = None
        self.ami_version = ""
        self._login_refusals = 0
        self.service = ClientService(
            endpoint,
            _AMIFactory(self),
            retryPolicy=backoffPolicy(
                initialDelay=1.0, maxDelay=max_backoff, factor=1.6, jitter=random.random
            ),
            clock=clock,
            prepareConnection=self._prepare,  # type: ignore[arg-type]  # always our AMIProtocol
        )

    @property
    def ready(self) -> bool:
        return self.protocol is not None and bool(self.protocol.connected)

    def start(self) -> None:
        self.service.startService()

    def stop(self) -> defer.Deferred[None]:
        stopped: defer.Deferred[None] = self.service.stopService()
        return stopped

    def add_listener(self, listener: EventListener) -> Callable[[], None]:
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener)

    async def call(
        self,
        action: str,
        headers: Iterable[tuple[str, str]] = (),
        timeout: float | None = DEFAULT_ACTION_TIMEOUT,
    ) -> ActionResult:
        """Run an action on the current connection; fails fast when not logged in."""
        if self.protocol is None or not self.protocol.connected:
            raise AMINotConnected(f"{action}: AMI to {self.name} is down")
        return await self.protocol.call(action, headers, timeout)

    def dispatch(self, messages: Sequence[AMIMessage]) -> None:
        for message in messages:
            if message.event == "Shutdown":
                self.log.warn("Asterisk {name} is shutting down", name=self.name)
        for listener in list(self.listeners):
            try:
                listener(messages)
            except Exception:
                self.log.failure("AMI listener failed on {count} events", count=len(messages))

    async def _login(self, proto: AMIProtocol) -> None:
        banner = await proto.banner
        self.ami_version = banner.version
        challenge = await proto.call("Challenge", [("AuthType", "MD5")])
        key = md5_key(challenge.response.get("Challenge") or "", self.credentials.secret)
        result = await proto.send_action(
            "Login",
            [("AuthType", "MD5"), ("Username", self.credentials.username), ("Key", key)],
        )
        if not result.success:
            self._login_refusals += 1
            message = result.response.get("Message") or "refused"
            if self._login_refusals == 1:
                # Logged once, loudly; the backoff then retries quietly (no hot loop).
                self.log.error(
                    "AMI login to {name} as {user!r} refused: {message}. Check the "
                    "asterisk ami_username / ami_secret in the config. Retrying with backoff.",
                    name=self.name,
                    user=self.credentials.username,
                    message=message,
                )
            raise AMILoginRefused(message)
        if self._login_refusals:
            self.log.info("AMI login to {name} accepted after earlier refusals", name=self.name)
        self._login_refusals = 0

    def _prepare(self, proto: AMIProtocol) -> defer.Deferred[None]:
        async def prepare() -> None:
            await self._login(proto)
            self.protocol = proto
            proto.lost.addCallback(lambda _: self._lost(proto))
            proto.start_keepalive(self.ping_interval, self.ping_timeout)
            self.log.info("AMI connected to {name} (AMI {version})", name=self.name, version=self.ami_version)
            if self.on_ready is not None:
                await defer.maybeDeferred(self.on_ready, self)

        d = defer.ensureDeferred(prepare())

        def failed(failure: Failure) -> Failure:
            if not failure.check(AMILoginRefused):
                self.log.warn("AMI connect to {name} failed: {error}", name=self.name, error=failure.value)
            proto.transport.loseConnection()  # type: ignore[union-attr]
            return failure

        return d.addErrback(failed)

    def _lost(self, proto: AMIProtocol) -> None:
        if self.protocol is proto:
            self.protocol = None
            # Stopped by stop(), or by a parent service stopping ours (SpyService does):
            # either way the ClientService is no longer running.
            if not self.service.running:
                self.log.info("AMI connection to {name} closed", name=self.name)
            else:
                self.log.warn("AMI connection to {name} lost; reconnecting with backoff",
                              name=self.name)
            if self.on_down is not None:
                self.on_down(self)
