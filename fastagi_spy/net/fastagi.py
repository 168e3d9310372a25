"""The FastAGI server on Twisted: framing and sequencing only; handlers hold the logic.

One command in flight per call, each with a timeout. ``HANGUP`` is an out-of-band notice
(res_agi.c run_agi writes it between commands), never the reply to a command: when it
arrives the pending command fails with :class:`AGIHangup`, the reply Asterisk still owes
is swallowed, and later commands are refused without touching the socket.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from twisted.internet import defer, error
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from fastagi_spy.supervise.line import LineGone
from fastagi_spy.wire.agi import (
    AGIEnvironment,
    AGIParser,
    AGIReply,
    HangupNotice,
    encode_command,
)
from fastagi_spy.wire.errors import ProtocolError

Handler = Callable[["AGISession"], Awaitable[Any]]

DEFAULT_COMMAND_TIMEOUT = 30.0


class AGIError(Exception):
    """A FastAGI command could not be completed."""


class AGIHangup(AGIError, LineGone):
    """The channel hung up: the command failed or was refused."""


class AGICommandTimeout(AGIError):
    """Asterisk did not answer a command in time; the connection was aborted."""


class AGIConnectionLost(AGIError, LineGone):
    """The connection closed before the command's reply arrived."""


class AGIUnavailable(AGIError):
    """The server is draining for shutdown."""


class AGISession:
    """One FastAGI call, as a handler sees it: the env block and a command channel."""

    def __init__(self, protocol: FastAGIProtocol, env: AGIEnvironment) -> None:
        self._protocol = protocol
        self.env = env
        self.hung_up = False

    @property
    def peer(self) -> IAddress:
        return self._protocol.transport.getPeer()  # type: ignore[union-attr]

    def command(
        self, command: str, *args: str, timeout: float | None = DEFAULT_COMMAND_TIMEOUT
    ) -> defer.Deferred[AGIReply]:
        """Send one command; fires with its reply. ``timeout=None`` for blocking apps."""
        return self._protocol.send_command(command, args, timeout)

    # A few typed helpers over command(): the only ones the supervision flow needs.

    async def answer(self) -> AGIReply:
        return await self.command("ANSWER")

    async def get_data(self, prompt: str, timeout_ms: int, max_digits: int) -> str | None:
        """Digits typed during/after the prompt; None on hangup (``result=-1``)."""
        reply = await self.command("GET DATA", prompt, str(timeout_ms), str(max_digits))
        if not reply.ok or reply.result is None or reply.result == "-1":
            raise AGIHangup(f"GET DATA failed: {reply.text}")
        return reply.result

    async def stream_file(self, name: str) -> AGIReply:
        reply = await self.command("STREAM FILE", name, "")
        if reply.result == "-1" and reply.endpos == 0 and self.hung_up:
            raise AGIHangup("hung up during STREAM FILE")
        return reply

    async def set_variable(self, name: str, value: str) -> AGIReply:
        return await self.command("SET VARIABLE", name, value)

    async def get_variable(self, name: str) -> str | None:
        reply = await self.command("GET VARIABLE", name)
        return reply.data if reply.result == "1" else None

    async def exec(self, app: str, data: str, timeout: float | None = None) -> AGIReply:
        """Run a dialplan application; by default with no timeout (ChanSpy blocks for long)."""
        return await self.command("EXEC", app, data, timeout=timeout)

    async def verbose(self, message: str, level: int = 3) -> AGIReply:
        return await self.command("VERBOSE", message, str(level))

    def when_hung_up(self) -> defer.Deferred[None]:
        return self._protocol.when_hung_up()

    def close(self) -> None:
        """End the AGI: Asterisk continues the dialplan."""
        self._protocol.transport.loseConnection()  # type: ignore[union-attr]


class FastAGIProtocol(Protocol):
    """Frames one FastAGI connection and runs the handler routed by its script path."""

    log = Logger()

    def __init__(self, factory: FastAGIFactory) -> None:
        self.factory = factory
        self._parser = AGIParser()
        self._session: AGISession | None = None
        self._pending: tuple[defer.Deferred[AGIReply], IDelayedCall | None] | None = None
        self._owed_replies = 0  # replies still due for commands we gave up on after HANGUP
        self._hangup_waiters: list[defer.Deferred[None]] = []
        self._hangup_handled = False
        self._closed = False
        self._handler_running = False
        # Fires when the call is over for us: the connection closed and the handler finished
        # (it may still write its audit record after the hangup).
        self.done: defer.Deferred[None] = defer.Deferred()

    # -- Twisted callbacks --------------------------------------------------------------

    def connectionMade(self) -> None:
        self.factory.sessions.add(self)

    def dataReceived(self, data: bytes) -> None:
        try:
            events = self._parser.feed(data)
        except ProtocolError as exc:
            self.log.warn("FastAGI protocol error from {peer}: {error}", peer=self._peer(), error=exc)
            self.transport.abortConnection()  # type: ignore[union-attr]
            return
        if self._session is not None and any(isinstance(e, HangupNotice) for e in events):
            # "200 result=-1" and HANGUP often arrive together: by the time the handler sees
            # the reply, the channel is already gone, so it must not try another prompt.
            self._session.hung_up = True
        for event in events:
            if isinstance(event, AGIEnvironment):
                self._start(event)
            elif isinstance(event, HangupNotice):
                self._hangup()
            else:
                self._reply(event)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._closed = True
        self._fail_pending(AGIConnectionLost("connection closed"))
        self._hangup()
        self._maybe_done()

    # -- commands -------------------------------------------------------------------------

    def send_command(
        self, command: str, args: tuple[str, ...], timeout: float | None
    ) -> defer.Deferred[AGIReply]:
        if self._closed:
            return defer.fail(AGIConnectionLost("connection closed"))
        if self._session is not None and self._session.hung_up:
            return defer.fail(AGIHangup(f"{command} refused: the channel hung up"))
        if self._pending is not None:
            return defer.fail(AGIError(f"{command} refused: another command is in flight"))
        line = encode_command(command, *args)  # LocalProtocolError on CR/LF/NUL
        d: defer.Deferred[AGIReply] = defer.Deferred()
        timer = None
        if timeout is not None:
            timer = self.factory.clock.callLater(timeout, self._timed_out, command, timeout)
        self._pending = (d, timer)
        self.transport.write(line)  # type: ignore[union-attr]
        return d

    def when_hung_up(self) -> defer.Deferred[None]:
        if self._hangup_handled:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._hangup_waiters.append(d)
        return d

    def _reply(self, reply: AGIReply) -> None:
        if self._owed_replies:
            self._owed_replies -= 1
            return
        pending = self._take_pending()
        if pending is None:
            self.log.warn("FastAGI reply with no command pending: {text!r}", text=reply.text)
            return
        pending.callback(reply)

    def _take_pending(self) -> defer.Deferred[AGIReply] | None:
        if self._pending is None:
            return None
        d, timer = self._pending
        self._pending = None
        if timer is not None and timer.active():
            timer.cancel()
        return d

    def _fail_pending(self, exc: Exception) -> None:
        pending = self._take_pending()
        if pending is not None:
            pending.errback(exc)

    def _timed_out(self, command: str, timeout: float) -> None:
        # The reply may still come; we cannot resynchronise, so drop the connection.
        self.log.warn(
            "FastAGI {command} got no reply in {timeout}s; aborting {channel}",
            command=command,
            timeout=timeout,
            channel=self._channel(),
        )
        self._fail_pending(AGICommandTimeout(f"{command}: no reply in {timeout}s"))
        self.transport.abortConnection()  # type: ignore[union-attr]

    def _hangup(self) -> None:
        if self._session is None or self._hangup_handled:
            return
        self._hangup_handled = True
        self._session.hung_up = True
        if self._pending is not None and not self._closed:
            self._owed_replies += 1  # Asterisk still answers it, in dead mode
        self._fail_pending(AGIHangup("the channel hung up"))
        waiters, self._hangup_waiters = self._hangup_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    # -- the handler ------------------------------------------------------------------------

    def _start(self, env: AGIEnvironment) -> None:
        session = self._session = AGISession(self, env)
        handler = self.factory.route(env.script)
        if handler is None:
            self.log.warn(
                "FastAGI: no route for script {script!r} from {channel}; refusing",
                script=env.script,
                channel=env.channel,
            )
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        if self.factory.draining:
            self.log.info("FastAGI: draining for shutdown, refusing {channel}", channel=env.channel)
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        self._handler_running = True
        d = defer.ensureDeferred(handler(session))
        d.addErrback(self._handler_failed)
        d.addBoth(lambda _: self._finish())

    def _handler_failed(self, failure: Failure) -> None:
        if failure.check(AGIHangup, AGIConnectionLost, error.ConnectionDone):
            self.log.info("FastAGI call {channel} ended by hangup", channel=self._channel())
            return
        self.log.failure("FastAGI handler failed for {channel}", failure, channel=self._channel())

    def _finish(self) -> None:
        self._handler_running = False
        if not self._closed:
            self.transport.loseConnection()  # type: ignore[union-attr]
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self._closed and not self._handler_running and not self.done.called:
            self.factory.sessions.discard(self)
            self.done.callback(None)

    def _channel(self) -> str:
        return self._session.env.channel if self._session else "?"

    def _peer(self) -> str:
        return str(self.transport.getPeer()) if self.transport else "?"


class FastAGIFactory(Factory):
    """Routes FastAGI calls by script path and tracks them for a graceful shutdown."""

    log = Logger()

    def __init__(self, routes: Mapping[str, Handler], clock: IReactorTime) -> None:
        self.routes = dict(routes)
        self.clock = clock
        self.sessions: set[FastAGIProtocol] = set()
        self.draining = False

    def buildProtocol(self, addr: IAddress | None) -> FastAGIProtocol:
        return FastAGIProtocol(self)

    def route(self, script: str) -> Handler | None:
        return self.routes.get(script.strip("/"))

    def drain(self, timeout: float) -> defer.Deferred[None]:
        """Refuse new calls, wait for those in flight up to ``timeout``, then cut the rest."""
        self.draining = True
        waiting = [p.done for p in self.sessions]
        if not waiting:
            return defer.succeed(None)
        all_done = defer.DeferredList(waiting, consumeErrors=True)
        timer = self.clock.callLater(timeout, self._cut_remaining)
        all_done.addBoth(lambda _: timer.cancel() if timer.active() else None)
        return all_done.addCallback(lambda _: None)

    def _cut_remaining(self) -> None:
        for proto in list(self.sessions):
            self.log.warn("FastAGI: shutdown drain timed out; closing {channel}", channel=proto._channel())
            proto.transport.abortConnection()  # type: ignore[union-attr]
