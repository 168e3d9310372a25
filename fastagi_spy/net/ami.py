"""The AMI client on Twisted: one reconnecting, logged-in connection per Asterisk server.

The protocol frames bytes through the sans-IO parser and correlates replies by ActionID;
the client logs in (MD5 challenge) on every connection, resynchronises the live map on every
(re)connect, keeps a Ping alive to spot half-open connections, retries with backoff, and
never replays an action after a reconnect: a minutes-late spy action would be a privacy
incident.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import cast

from twisted.application.internet import backoffPolicy
from twisted.application.service import Service
from twisted.internet import defer, task
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
    noisy = False  # no "Starting factory" line on every reconnect

    def __init__(self, client: AMIClient) -> None:
        self.client = client

    def buildProtocol(self, addr: object) -> AMIProtocol:
        return AMIProtocol(self.client.clock, self.client.dispatch, self.client.name)


class _Reconnecting(Service):
    """The IService face of an AMIClient, so that a parent service starts and stops it."""

    def __init__(self, client: AMIClient) -> None:
        self.client = client

    def startService(self) -> None:
        Service.startService(self)
        self.client._begin()

    def stopService(self) -> defer.Deferred[None]:
        Service.stopService(self)
        return self.client._end()


@dataclass(frozen=True)
class AMICredentials:
    username: str
    secret: str


class AMIClient:
    """A resilient, logged-in AMI connection to one Asterisk server.

    ``on_ready(client)`` runs after every successful login (the resync hook); listeners get
    every event that is not part of an action's reply; ``on_down`` runs when the link drops.

    The reconnect loop is ours, not ClientService's: ClientService has no transition for a
    connection that closes after its ``prepareConnection`` failed (a refused login), so every
    refusal logged an "Unhandled Error" NoTransition traceback. Here a connection is one
    attempt from TCP connect to close, and every failed attempt is exactly one log line.
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
        login_timeout: float = DEFAULT_ACTION_TIMEOUT,
        on_ready: Callable[[AMIClient], defer.Deferred[None] | None] | None = None,
        on_down: Callable[[AMIClient], None] | None = None,
    ) -> None:
        self.name = name
        self.clock = clock
        self.credentials = credentials
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.login_timeout = login_timeout
        self.on_ready = on_ready
        self.on_down = on_down
        self.listeners: list[EventListener] = []
        self.protocol: AMIProtocol | None = None  # logged in and ready for actions
        self.ami_version = ""
        self._endpoint = endpoint
        self._factory = _AMIFactory(self)
        self._retry_delay = backoffPolicy(
            initialDelay=1.0, maxDelay=max_backoff, factor=1.6, jitter=random.random
        )
        self._open: AMIProtocol | None = None  # the connection, logged in or not yet
        self._loop: defer.Deferred[None] | None = None
        self._run: object | None = None
        self.service: Service = _Reconnecting(self)

    @property
    def ready(self) -> bool:
        return self.protocol is not None and bool(self.protocol.connected)

    def start(self) -> None:
        self.service.startService()

    def stop(self) -> defer.Deferred[None]:
        stopped: defer.Deferred[None] = self.service.stopService()
        return stopped

    def reconfigure(self, endpoint: IStreamClientEndpoint,
                    credentials: AMICredentials) -> defer.Deferred[None]:
        """New address or login (the settings page): the current connection, or the wait
        before the next attempt, ends now and the next attempt uses these. A wrong login
        then shows as the link down, retried with backoff, as at start-up."""
        self._endpoint = endpoint
        self.credentials = credentials
        if self._loop is None:  # not started: the first attempt will use them
            return defer.succeed(None)
        restarted = self._end()
        # Stopped meanwhile (the server shutting down): stay stopped.
        restarted.addCallback(lambda _: self._begin() if self.service.running else None)
        return restarted

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

    # -- the reconnect loop ------------------------------------------------------------------

    def _begin(self) -> None:
        if self._loop is None:
            run = object()  # this run's token: a stop-then-start must not leave two loops
            self._run = run
            loop = defer.ensureDeferred(self._keep_connected(run))
            loop.addErrback(self._loop_failed)
            self._loop = loop

    def _end(self) -> defer.Deferred[None]:
        loop, self._loop, self._run = self._loop, None, None
        if loop is None:
            return defer.succeed(None)
        if self._open is not None:
            # Closing the connection ends whatever the loop awaits on it (login, resync,
            # the session itself); the loop then sees it is stopped.
            self._open.transport.loseConnection()  # type: ignore[union-attr]
        else:
            loop.cancel()  # it waits for a TCP connect or for the backoff timer
        done: defer.Deferred[None] = defer.Deferred()
        loop.addBoth(lambda _: done.callback(None))
        return done

    def _loop_failed(self, failure: Failure) -> None:
        if not failure.check(defer.CancelledError):
            self.log.failure("AMI reconnect loop for {name} stopped", failure, name=self.name)

    async def _keep_connected(self, run: object) -> None:
        failures = 0
        while self._run is run:
            try:
                await self._session()
            except defer.CancelledError:
                raise
            except Exception as exc:
                if self._run is not run:
                    break
                failures += 1
                delay = self._retry_delay(failures)
                self._log_failed_attempt(exc, failures, delay)
            else:
                if self._run is not run:
                    self.log.info("AMI connection to {name} closed", name=self.name)
                    break
                failures = 0
                delay = self._retry_delay(1)
                self.log.warn("AMI connection to {name} lost; reconnecting in {delay:.1f} s",
                              name=self.name, delay=delay)
            await task.deferLater(self.clock, delay, lambda: None)

    def _log_failed_attempt(self, exc: Exception, attempt: int, delay: float) -> None:
        if isinstance(exc, AMILoginRefused):
            self.log.error(
                "AMI login to {name} as {user!r} refused: {message}. Check the asterisk "
                "ami_username / ami_secret in the config. Retry {attempt} in {delay:.1f} s.",
                name=self.name, user=self.credentials.username, message=str(exc),
                attempt=attempt, delay=delay)
        else:
            self.log.warn("AMI connect to {name} failed: {error}. Retry {attempt} in {delay:.1f} s.",
                          name=self.name, error=exc, attempt=attempt, delay=delay)

    async def _session(self) -> None:
        """One connection: connect, log in, resync; returns once it has closed."""
        proto = cast(AMIProtocol, await self._endpoint.connect(self._factory))
        self._open = proto
        try:
            try:
                await self._login(proto)
                self.protocol = proto
                proto.start_keepalive(self.ping_interval, self.ping_timeout)
                self.log.info("AMI connected to {name} (AMI {version})",
                              name=self.name, version=self.ami_version)
                if self.on_ready is not None:
                    await defer.maybeDeferred(self.on_ready, self)
            except BaseException:
                # A failed attempt: the connection is of no further use.
                proto.transport.abortConnection()  # type: ignore[union-attr]
                await proto.lost
                raise
            await proto.lost
        finally:
            if self._open is proto:
                self._open = None
            if self.protocol is proto:
                self.protocol = None
                if self.on_down is not None:
                    self.on_down(self)

    async def _login(self, proto: AMIProtocol) -> None:
        try:
            banner = await proto.banner.addTimeout(self.login_timeout, self.clock)
        except defer.TimeoutError:
            raise AMITimeout(f"no AMI banner within {self.login_timeout:g} s") from None
        self.ami_version = banner.version
        challenge = await proto.call("Challenge", [("AuthType", "MD5")])
        key = md5_key(challenge.response.get("Challenge") or "", self.credentials.secret)
        result = await proto.send_action(
            "Login",
            [("AuthType", "MD5"), ("Username", self.credentials.username), ("Key", key)],
        )
        if not result.success:
            raise AMILoginRefused(result.response.get("Message") or "refused")
