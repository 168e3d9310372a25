"""The FastAGI server on Twisted: framing and sequencing only; handlers hold the logic.

One command in flight per call, each with a timeout. ``HANGUP`` is an out-of-band notice
(res_agi.c run_agi writes it between commands), never the reply to a command: when it
arrives the pending command fails with :class:`AGIHangup`, the reply Asterisk still owes
is swallowed, and later commands are refused without touching the socket.

FastAGI has no authentication, so the port refuses what is not a configured Asterisk: a
peer address no server lists is closed before a byte is read; the environment block must
arrive within :attr:`AGILimits.env_timeout`; a call may name its server in the AGI URL
(``agi://host/spy/listen?server=pbx1``), and the name must be one the peer is listed for;
calls beyond :attr:`AGILimits.max_sessions` are closed without a command, so the dialplan
bundle plays its fail-closed prompt.

Fail-over: a session's first command sets :data:`REACHED_VARIABLE` on the channel (to this
instance's name), before the handler runs. The bundle tries the next server in ``FASTAGI_SPY_SERVERS`` only while that
variable is empty: a call refused before any command (unreachable, draining, full) may go
on to another instance, a call this server began never does (no second PIN prompt, no
second spy).
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
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
    check_say_digits,
    dtmf_key,
    encode_command,
)
from fastagi_spy.wire.errors import ProtocolError

Handler = Callable[["AGISession"], Awaitable[Any]]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# The longest one sound file may play. Asterisk answers STREAM FILE and GET DATA only after
# the sound ends, so their reply timeout is the command timeout plus this per sound (Asterisk
# core prompts last a few seconds; this only bounds an Asterisk that stopped answering).
PROMPT_ALLOWANCE = 30.0
# The query key that names the server in the AGI URL; names as in [[asterisk]] name.
SERVER_KEY = "server"
_SERVER_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# Set by every session's first command to the instance's name ("1" when it has none): the
# bundle's fail-over reads it, and so does a restarted instance's reconciliation.
REACHED_VARIABLE = "FASTAGI_SPY_REACHED"


@dataclass(frozen=True)
class AGILimits:
    """What one connection (Asterisk, or anything posing as it) may make the port hold."""

    command_timeout: float = 30.0  # Asterisk's time to answer one command (server.command_timeout)
    env_timeout: float = 5.0  # connect to end of environment block (Asterisk sends it at once)
    max_sessions: int = 100  # calls handled at once (server.max_agi_sessions)


class _Timeout(enum.Enum):
    COMMAND = "the factory's command timeout"


COMMAND_TIMEOUT = _Timeout.COMMAND


class PeerRefused(Exception):
    """A connection may not speak for the server it claims, or for any; says why."""


class PeerServers:
    """Which configured Asterisk servers may open FastAGI connections, and from where."""

    def __init__(self, peers: Mapping[str, Iterable[IPNetwork]]) -> None:
        self._peers = {name: tuple(networks) for name, networks in peers.items()}

    def servers_at(self, host: str) -> tuple[str, ...]:
        """Names of the servers that list ``host`` among their ``agi_peers``."""
        address = _address(host)
        if address is None:
            return ()
        return tuple(name for name, networks in self._peers.items()
                     if any(address in network for network in networks))

    def choose(self, host: str, named: str | None) -> str:
        """The server a call from ``host`` speaks for, named in its URL or not.

        Several servers may share one address (one host, or tests on loopback): the URL's
        name picks among them, and without one the call is refused, never guessed.
        """
        servers = self.servers_at(host)
        if not servers:
            raise PeerRefused(f"peer {host} is not in any [[asterisk]] agi_peers")
        if named is not None:
            if named not in servers:
                raise PeerRefused(f"server {named[:64]!r} named in the AGI URL does not match "
                                  f"peer {host} (its servers: {', '.join(servers)})")
            return named
        if len(servers) > 1:
            raise PeerRefused(f"peer {host} is listed for servers {', '.join(servers)}: the AGI "
                              f"URL must name one (?{SERVER_KEY}=<name>)")
        return servers[0]


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # an IPv4 Asterisk reaching a dual-stack listener
    return address


def _host(addr: IAddress | None) -> str | None:
    host = getattr(addr, "host", None)
    return host if isinstance(host, str) else None


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

    def __init__(
        self, protocol: FastAGIProtocol, env: AGIEnvironment, server: str | None = None
    ) -> None:
        self._protocol = protocol
        self.env = env
        self.hung_up = False
        # The configured Asterisk server this call came from (None: the factory knows none).
        self.server = server

    @property
    def peer(self) -> IAddress:
        return self._protocol.transport.getPeer()  # type: ignore[union-attr]

    def command(
        self, command: str, *args: str, timeout: float | _Timeout | None = COMMAND_TIMEOUT
    ) -> defer.Deferred[AGIReply]:
        """Send one command; fires with its reply. By default Asterisk has the factory's
        command timeout to answer; ``timeout=None`` for blocking apps."""
        seconds: float | None = (self._protocol.factory.limits.command_timeout
                                 if isinstance(timeout, _Timeout) else timeout)
        return self._protocol.send_command(command, args, seconds)

    def _prompt_timeout(self, prompt: str, waiting: float = 0.0) -> float:
        """The command timeout, plus the time ``prompt`` (sounds joined by '&') plays, plus
        ``waiting``: a reply due only after the sound cannot come sooner."""
        sounds = max(1, len(prompt.split("&")))
        command_timeout: float = self._protocol.factory.limits.command_timeout
        return command_timeout + sounds * PROMPT_ALLOWANCE + waiting

    # A few typed helpers over command(): the only ones the supervision flow needs.

    async def answer(self) -> AGIReply:
        return await self.command("ANSWER")

    async def get_data(self, prompt: str, timeout_ms: int, max_digits: int) -> str | None:
        """Digits typed during/after the prompt; None on hangup (``result=-1``)."""
        if timeout_ms <= 0 or max_digits <= 0:
            # 0 would mean the PBX's own timeouts, and <0 none at all: always say how long.
            raise ValueError("GET DATA needs a positive timeout and digit count")
        # Asterisk waits up to timeout_ms for each digit (ast_app_getdata: the first-digit
        # and the between-digits timeouts are both timeout_ms), after the prompt has played.
        typing = max_digits * timeout_ms / 1000
        reply = await self.command("GET DATA", prompt, str(timeout_ms), str(max_digits),
                                   timeout=self._prompt_timeout(prompt, typing))
        if not reply.ok or reply.result is None or reply.result == "-1":
            raise AGIHangup(f"GET DATA failed: {reply.text}")
        return reply.result

    async def stream_file(self, name: str) -> AGIReply:
        reply = await self.command("STREAM FILE", name, "", timeout=self._prompt_timeout(name))
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

    async def say_digits(self, digits: str, escape: str) -> str | None:
        """Say ``digits`` in Asterisk's digit sounds; the ``escape`` key that cut it short."""
        check_say_digits(digits, escape)
        # One sound's allowance covers them all: a digit lasts well under a second.
        reply = await self.command("SAY DIGITS", digits, escape,
                                   timeout=self._prompt_timeout(digits))
        return self._key(reply, "SAY DIGITS")

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        """The key pressed within ``timeout_ms``, or None."""
        if timeout_ms <= 0:
            raise ValueError("WAIT FOR DIGIT needs a positive timeout")  # -1 waits for ever
        reply = await self.command("WAIT FOR DIGIT", str(timeout_ms),
                                   timeout=self._prompt_timeout("", timeout_ms / 1000))
        return self._key(reply, "WAIT FOR DIGIT")

    @staticmethod
    def _key(reply: AGIReply, command: str) -> str | None:
        if not reply.ok or reply.result == "-1":
            raise AGIHangup(f"{command} failed: {reply.text}")
        return dtmf_key(reply)

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
        self._env_timer: IDelayedCall | None = None
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
        self._env_timer = self.factory.clock.callLater(
            self.factory.limits.env_timeout, self._env_timed_out)

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
        self._cancel_env_timer()
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

    def _env_timed_out(self) -> None:
        self._env_timer = None
        self.log.warn("FastAGI: no environment block from {peer} within {timeout}s; closing",
                      peer=self._peer(), timeout=self.factory.limits.env_timeout)
        self.transport.abortConnection()  # type: ignore[union-attr]

    def _cancel_env_timer(self) -> None:
        timer, self._env_timer = self._env_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _start(self, env: AGIEnvironment) -> None:
        self._cancel_env_timer()
        try:
            server = self.factory.server_for(_host(self.transport.getPeer()), env)  # type: ignore[union-attr]
        except PeerRefused as exc:
            # The bundle hears no reply and plays its fail-closed prompt.
            self.log.warn("FastAGI: refusing {channel}: {reason}", channel=env.channel, reason=exc)
            self.factory.refused(env, str(exc))
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        session = self._session = AGISession(self, env, server)
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
        if self.factory.running >= self.factory.limits.max_sessions:
            # Not a single command: the bundle's fail-closed branch plays "all circuits
            # busy", the same prompt as for a server that is down.
            self.log.warn(
                "FastAGI: {running} calls in progress (server.max_agi_sessions); refusing {channel}",
                running=self.factory.running, channel=env.channel)
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        self._handler_running = True
        self.factory.running += 1
        d = defer.ensureDeferred(self._run(handler, session))
        d.addErrback(self._handler_failed)
        d.addBoth(lambda _: self._finish())

    async def _run(self, handler: Handler, session: AGISession) -> None:
        if self.factory.mark_reached:
            # The one place every session starts: from here on the bundle must not fail
            # over to another server, whatever happens to this call.
            await session.set_variable(REACHED_VARIABLE, self.factory.instance)
        await handler(session)

    def _handler_failed(self, failure: Failure) -> None:
        if failure.check(AGIHangup, AGIConnectionLost, error.ConnectionDone):
            self.log.info("FastAGI call {channel} ended by hangup", channel=self._channel())
            return
        self.log.failure("FastAGI handler failed for {channel}", failure, channel=self._channel())

    def _finish(self) -> None:
        self._handler_running = False
        self.factory.running -= 1
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
    """Routes FastAGI calls by script path and tracks them for a graceful shutdown.

    ``peers`` says which addresses speak for which server; without it (tests, benchmarks)
    any loopback peer is accepted and calls carry no server. ``on_refused(env, why)`` hears
    of every call refused for its server after its environment was read (to audit it).
    The session-start mark (:data:`REACHED_VARIABLE`) carries ``instance``, this instance's
    name, so a restarted instance's reconciliation tells its own crashed run's calls from
    another live instance's. ``mark_reached=False`` leaves the mark out: only for tests that
    read a session's exact bytes; the bundle's fail-over needs the mark.
    """

    log = Logger()

    def __init__(
        self,
        routes: Mapping[str, Handler],
        clock: IReactorTime,
        peers: PeerServers | None = None,
        limits: AGILimits | None = None,
        on_refused: Callable[[AGIEnvironment, str], None] | None = None,
        mark_reached: bool = True,
        instance: str = "1",
    ) -> None:
        if not instance or not instance.isprintable():
            raise ValueError("the FastAGI instance name must be printable text")
        self.routes = dict(routes)
        self.mark_reached = mark_reached
        self.instance = instance
        self.clock = clock
        self.peers = peers
        self.limits = limits or AGILimits()
        self.on_refused = on_refused
        self.sessions: set[FastAGIProtocol] = set()
        self.running = 0  # handlers running now, against limits.max_sessions
        self.draining = False

    def buildProtocol(self, addr: IAddress | None) -> FastAGIProtocol | None:
        host = _host(addr)
        if not self._may_connect(host):
            # None: Twisted closes the socket before reading anything from it.
            self.log.warn("FastAGI: refused a connection from {peer}: not a configured "
                          "Asterisk ([[asterisk]] agi_peers)", peer=host or addr)
            return None
        return FastAGIProtocol(self)

    def _may_connect(self, host: str | None) -> bool:
        if host is None:
            return False
        if self.peers is None:
            address = _address(host)
            return address is not None and address.is_loopback
        return bool(self.peers.servers_at(host))

    def server_for(self, host: str | None, env: AGIEnvironment) -> str | None:
        """The server a call speaks for: from its peer and the URL's ``?server=``."""
        named = env.query.get(SERVER_KEY)
        if named is not None and not _SERVER_NAME.fullmatch(named):
            raise PeerRefused(f"bad server name {named[:64]!r} in the AGI URL")
        if self.peers is None:
            if named is not None:
                raise PeerRefused("the AGI URL names a server, and none is configured")
            return None
        if host is None:
            raise PeerRefused("the peer has no IP address")
        return self.peers.choose(host, named)

    def refused(self, env: AGIEnvironment, why: str) -> None:
        if self.on_refused is None:
            return
        try:
            self.on_refused(env, why)
        except Exception:
            self.log.failure("FastAGI: recording a refused call failed")

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
