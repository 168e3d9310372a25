"""The feature-code flow: who is calling, their PIN, which agent, whether they may, and the spy.

One audit record per attempt (``AuditAttempt`` writes it), on disk before anything can be
heard. Every way out plays a
prompt first: nothing ends in silence. A wrong supervisor number, a wrong PIN and a locked-out
caller all sound the same, so the phone reveals nothing about which one it was.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.internet.defer import CancelledError, TimeoutError, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from fastagi_spy.config import SecurityRules
from fastagi_spy.domain import Directory, Mode, SupervisorEntry, device_of_channel
from fastagi_spy.store.audit import AuditLog, EndReason, Via
from fastagi_spy.store.errors import StoreError
from fastagi_spy.store.runner import InlineRunner, StoreRunner
from fastagi_spy.store.tokens import TokenGrant, TokenRefused, TokenStore
from fastagi_spy.supervise.attempt import AuditAttempt, Stage
from fastagi_spy.supervise.chanspy import chanspy_argument, parse_target_digits, spy_group_for_team
from fastagi_spy.supervise.crossing import Crossing, Handover
from fastagi_spy.supervise.hijack import Hijack, Taken
from fastagi_spy.supervise.line import AGILine, LineGone
from fastagi_spy.supervise.notice import NoticeFailed
from fastagi_spy.supervise.picker import START_KEY, pick_agent
from fastagi_spy.supervise.pincheck import PinChecker, PinCheckUnavailable, PinVerdict
from fastagi_spy.supervise.rights import may_spy, may_switch_modes
from fastagi_spy.supervise.spywatch import SpyWatch, SpyWatches


class Prompts:
    """Asterisk core sounds (asterisk-core-sounds-en) the flow plays."""

    SUPERVISOR = "agent-user"  # "Agent login. Please enter your agent number ... pound key."
    PIN = "agent-pass"  # "Please enter your password followed by the pound key."
    LOGIN_INCORRECT = "vm-incorrect"  # "Login incorrect."
    GOODBYE = "vm-goodbye"
    TARGET = "agent-newlocation"  # "Please enter a new extension, followed by pound."
    NOT_FOUND = "pbx-invalid"  # "I am sorry, that's not a valid extension. Please try again."
    INVALID = "privacy-incorrect"  # "I'm sorry, that number is not valid."
    NOT_LOGGED_IN = "vm-isunavail"  # "... is unavailable"
    NOT_ON_CALL = "number-not-answering"  # "The number is not answering."
    DENIED = "feature-not-avail-line"  # "That feature is not available on this line."
    UNAVAILABLE = "all-circuits-busy-now"  # "All circuits are busy now."


_UNRESOLVED = {
    "not_found": (Prompts.NOT_FOUND, EndReason.NOT_FOUND),
    "not_logged_in": (Prompts.NOT_LOGGED_IN, EndReason.NOT_LOGGED_IN),
    "not_on_call": (Prompts.NOT_ON_CALL, EndReason.NOT_ON_CALL),
    "ambiguous": (Prompts.NOT_FOUND, EndReason.AMBIGUOUS),
}

RESULT_VARIABLE = "FASTAGI_SPY_RESULT"  # "done": the bundle then just hangs up
TARGET_PROMPTS = 3  # silent target prompts before we give up
PIN_TIMEOUT_MS = 10000
# Read at most this many digits at the supervisor and PIN prompts: far longer than any
# PIN (12 digits at most), so an overlong entry is read whole, as one wrong try.
ENTRY_DIGITS = 64
SILENT_PIN_PROMPTS = 3  # silent (or '#' alone) supervisor/PIN prompts before we give up
TARGET_TIMEOUT_MS = 10000
# After ChanSpy returns, how long its ChanSpyStop may take to arrive over AMI.
STOP_GRACE = 1.0
_GUESSED = "AMI lost during the spy: times from ChanSpy's return"


class Resolution(Protocol):
    @property
    def ok(self) -> bool: ...
    @property
    def reason(self) -> str: ...
    @property
    def server(self) -> str | None: ...
    @property
    def agent_number(self) -> str | None: ...
    @property
    def channel(self) -> str | None: ...


class TargetResolver(Protocol):
    def resolve(self, target: str, server: str | None = None) -> Resolution: ...

    def on_call_agents(self, server: str) -> list[tuple[str, float]]:
        """(agent number, answer time) of the agents on a call on ``server``, longest first."""


@dataclass
class FlowDeps:
    directory: Directory
    resolver: TargetResolver
    pin_checker: PinChecker
    audit: AuditLog
    spies: SpyWatches
    security: SecurityRules
    clock: IReactorTime  # the reactor (task.Clock in tests): the time and the timeouts
    # (device, supervisor, pin, stored hash): slow, away from the reactor, queued per device;
    # fails with PinCheckUnavailable when it cannot answer in time.
    verify_pin: Callable[[str, str, str, str | None], Awaitable[bool]]
    notice: Callable[[str, str], Awaitable[None]] | None = None  # (server, channel)
    # notice_mode "required": played to the end before ChanSpy, or NoticeFailed (no spy)
    required_notice: Callable[[str, str], Awaitable[None]] | None = None
    servers: tuple[str, ...] = ()  # every configured server: where else a target may live
    crossing: Crossing | None = None  # [[cross_server]] trunks and their tokens
    tokens: TokenStore | None = None  # blind_monitor's tokens (purpose "api")
    hijack: Hijack | None = None  # blind_monitor's HIJACK stage
    # Where the store calls run: inline (SQLite) or on one worker thread (PostgreSQL, whose
    # round trips must not hold the reactor). The PIN checker must use the same one: one
    # FIFO order for all of an attempt's writes.
    store_runner: StoreRunner = field(default_factory=InlineRunner)

    def now(self) -> float:
        return self.clock.seconds()


@dataclass
class _Call:
    line: AGILine
    mode: Mode
    device: str
    attempt: AuditAttempt
    supervisor: SupervisorEntry | None = None
    stage: Stage = Stage.START

    @property
    def server(self) -> str | None:
        """The Asterisk server the call came from (a FastAGI session knows it from its peer
        and URL); None: not known, so targets are looked up on every server."""
        server = getattr(self.line, "server", None)
        return server if isinstance(server, str) else None


class SupervisionFlow:
    """Runs one feature-code call: ``await flow(line, Mode.LISTEN)``."""

    log = Logger()

    def __init__(self, deps: FlowDeps) -> None:
        if not _same_runner(deps.store_runner, deps.pin_checker.runner):
            raise ValueError("the flow and its PIN checker must share one store runner")
        self.deps = deps

    async def __call__(self, line: AGILine, mode: Mode) -> None:
        await self._serve(line, mode, Via.PHONE, self._run)

    async def crossed(self, line: AGILine) -> None:
        """The ``spy/cross`` route: a supervisor sent over a [[cross_server]] trunk from
        another server, with our token as the only argument (the mode is the token's)."""
        await self._serve(line, Mode.LISTEN, Via.CROSS_SERVER, self._crossed)

    async def launched(self, line: AGILine) -> None:
        """The ``spy/api`` route: a supervisor's phone rung by blind_monitor (launch.py),
        with our token as the only argument; the mode and target are the token's."""
        await self._serve(line, Mode.LISTEN, Via.API, self._launched)

    async def _serve(self, line: AGILine, mode: Mode, via: Via,
                     run: Callable[[_Call], Awaitable[None]]) -> None:
        d = self.deps
        device = device_of_channel(line.env.channel)
        # ANSWER goes out first; the record is on disk before its reply is even read, so
        # before anything can be heard.
        answered = ensureDeferred(line.answer()) if not line.hung_up else None
        try:
            attempt = await AuditAttempt.open(d.audit, d.now, via, channel=line.env.channel,
                                              uniqueid=line.env.uniqueid, device=device,
                                              runner=d.store_runner)
        except Exception:
            # No record, no service: the bundle's fail-closed branch plays the error.
            if answered is not None:
                answered.addErrback(lambda _: None)
            raise
        call = _Call(line, mode, device, attempt)
        try:
            if answered is not None:
                with contextlib.suppress(LineGone):  # the record still gets written and closed
                    await answered
            await run(call)
            await self._done(call)
        except Exception as exc:
            # Whatever failed, and wherever (ANSWER timing out included), the row is closed.
            hung_up = line.hung_up or _is_hangup(exc)
            reason = (EndReason.SUPERVISOR_HANGUP if call.stage is Stage.SPY
                      else EndReason.ABANDONED)
            detail = (f"hung up at {call.stage.value}" if hung_up
                      else f"{type(exc).__name__}: {exc}"[:200])
            await call.attempt.close(reason if hung_up else EndReason.ERROR, detail)
            if not hung_up:
                raise

    # -- the steps ------------------------------------------------------------------------

    async def _run(self, call: _Call) -> None:
        args = call.line.env.args
        raw_target = args[0] if args else ""
        if len(args) > 1 or (raw_target and parse_target_digits(raw_target) is None):
            # A comma in the dialled text adds AGI arguments; anything but digits is hostile.
            await call.attempt.requested(",".join(args)[:64])
            await self._say(call, Prompts.INVALID, Prompts.GOODBYE)
            await call.attempt.refused(EndReason.INVALID_TARGET, "target in the AGI arguments",
                                 go_on=False)
            return
        supervisor = await self._authenticate(call)
        if supervisor is None:
            return
        await self._targets(call, supervisor, parse_target_digits(raw_target) if raw_target else None)

    async def _authenticate(self, call: _Call) -> SupervisorEntry | None:
        """Up to `pin_tries_per_call` typed PINs. A locked-out caller hears exactly what a
        wrong PIN hears (the hash is computed either way); silence or "#" alone is no try."""
        d = self.deps
        known = d.directory.supervisor_for_device(call.device)
        tries = silent = 0
        locked = False
        while tries < d.security.pin_tries_per_call:
            claimed = known.number if known else None
            if known is None:
                call.stage = Stage.SUPERVISOR_PROMPT
                typed = await self._ask(call, Prompts.SUPERVISOR, ENTRY_DIGITS)
                if typed is None:
                    silent += 1
                    if silent >= SILENT_PIN_PROMPTS:
                        break
                    continue
                claimed = parse_target_digits(typed)
            supervisor = d.directory.supervisor(claimed) if claimed else None
            call.stage = Stage.PIN_PROMPT
            pin = await self._ask(call, Prompts.PIN, ENTRY_DIGITS)
            if pin is None:
                silent += 1
                if silent >= SILENT_PIN_PROMPTS:
                    break
                continue
            tries += 1
            verdict = await self._check_pin(call, claimed, supervisor, pin)
            if verdict is None:
                return None
            if verdict.ok and supervisor is not None:
                call.supervisor = supervisor
                call.attempt.signed_in(supervisor.number)
                return supervisor
            locked = locked or verdict.locked
            await self._say(call, Prompts.LOGIN_INCORRECT)
            if len(pin) >= ENTRY_DIGITS:
                # A flood of digits, not a PIN: one try, and the call ends before the rest
                # of it is read as more tries.
                break
        if silent >= SILENT_PIN_PROMPTS:
            await self._no_pin(call)
            return None
        await self._say(call, Prompts.GOODBYE)
        if locked:
            await call.attempt.close(EndReason.LOCKED_OUT, "locked out")
        else:
            await call.attempt.close(EndReason.BAD_PIN, f"{tries} failed tries")
        return None

    async def _check_pin(self, call: _Call, claimed: str | None,
                         supervisor: SupervisorEntry | None, pin: str) -> PinVerdict | None:
        """Count, hash and settle one typed PIN; None when the check itself failed (the
        caller has heard "service unavailable" and the record is closed)."""
        d = self.deps
        checker = d.pin_checker
        attempt = await checker.begin(call.device, claimed, supervisor, d.now())
        try:
            valid = await d.verify_pin(call.device, claimed or "", pin, attempt.stored_hash)
        except PinCheckUnavailable as exc:
            await checker.abandon(attempt)
            self.log.error("PIN check failed: {error}", error=exc,
                           audit_id=call.attempt.record)
            await call.attempt.claimed(claimed)
            await self._say(call, Prompts.UNAVAILABLE, Prompts.GOODBYE)
            await call.attempt.close(EndReason.SERVICE_UNAVAILABLE, f"PIN check: {exc}"[:200])
            return None
        except BaseException:
            await checker.abandon(attempt)
            raise
        return await checker.finish(call.attempt, attempt, supervisor, valid, d.now())

    async def _no_pin(self, call: _Call) -> None:
        await call.attempt.no_pin()
        await self._say(call, Prompts.GOODBYE)
        await call.attempt.close(EndReason.ABANDONED, "no PIN entered")

    async def _targets(self, call: _Call, supervisor: SupervisorEntry, first: str | None) -> None:
        d = self.deps
        silent = 0
        pending = first
        while True:
            if pending is None:
                call.stage = Stage.TARGET_PROMPT
                typed = await self._ask(call, Prompts.TARGET, 10)
                if not typed:
                    silent += 1
                    if silent >= TARGET_PROMPTS:
                        await self._say(call, Prompts.GOODBYE)
                        await call.attempt.close(EndReason.ABANDONED, "no target entered")
                        return
                    continue
                pending = typed
            target, typed_text, pending = parse_target_digits(pending), pending, None
            if target is None:
                await call.attempt.requested(_shorten(typed_text))
                await self._say(call, Prompts.INVALID)
                await call.attempt.refused(EndReason.INVALID_TARGET, "typed target not digits")
                continue
            if target == START_KEY:
                # Choosing by ear ends in the agent's number, and from there on it is as if
                # that number had been typed: one resolve, one rights check, one record.
                call.stage = Stage.PICKING
                target = await pick_agent(call.line, self._offered(call, supervisor))
                if target is None:
                    continue
            found = d.resolver.resolve(target, server=call.server)
            elsewhere = (_lives_elsewhere(d, target, call.server)
                         if found.reason in ("not_found", "not_logged_in", "not_on_call") else None)
            if elsewhere is not None:
                # Over a [[cross_server]] trunk to `elsewhere` when one goes there; else refused.
                call.attempt.aim(target)
                if not await self._elsewhere(call, supervisor, target, elsewhere):
                    return
                continue
            call.attempt.aim(target)
            if found.reason == "stale":
                await self._say(call, Prompts.UNAVAILABLE, Prompts.GOODBYE)
                await call.attempt.close(EndReason.SERVICE_UNAVAILABLE, "AMI down or state stale")
                return
            _aim(call, target, found)
            refused = self._refusal(call, supervisor, target, found)
            if refused is not None:
                prompt, reason, detail = refused
                await self._say(call, prompt)
                await call.attempt.refused(reason, detail)
                continue
            agent = d.directory.agent(found.agent_number or "")
            assert agent is not None and found.channel is not None
            ended = await self._spy(call, supervisor, found.channel, found.server or "",
                                    spy_group_for_team(agent.team))
            if ended is None:
                return
            if ended is EndReason.DENIED:  # refused inside Asterisk (SPYGROUP)
                await call.attempt.refused(ended, None)
            else:
                await call.attempt.next(ended, _GUESSED if call.attempt.times_are_guesses else None)

    async def _elsewhere(self, call: _Call, supervisor: SupervisorEntry, target: str,
                         server: str, go_on: bool = True) -> bool:
        """A target on a call on another server; False when the call is over. Without
        ``go_on`` (blind_monitor) this is the call's only attempt."""
        d = self.deps
        route = d.crossing.route(call.server, server) if d.crossing is not None else None
        if d.crossing is None or route is None or call.server is None:
            await self._say(call, Prompts.DENIED)
            await call.attempt.refused(EndReason.DENIED, f"other_server {server}", go_on=go_on)
            return go_on
        found = d.resolver.resolve(target, server=server)
        _aim(call, target, found)
        refused = self._refusal(call, supervisor, target, found)
        if refused is not None:  # refused here, before any token exists
            prompt, reason, detail = refused
            await self._say(call, prompt)
            await call.attempt.refused(reason, f"{detail}; on {server}", go_on=go_on)
            return go_on
        note = f"cross_server to {server}"
        await call.attempt.spying(call.mode, note)
        call.stage = Stage.SPY
        grant = TokenGrant(call.server, server, supervisor.number, call.mode, target, call.device)
        try:
            handover = await d.crossing.send(call.line, route, grant, runner=d.store_runner)
        except StoreError as exc:
            self.log.error("Cross-server token not issued: {error}", error=exc,
                           audit_id=call.attempt.record)
            await self._say(call, Prompts.UNAVAILABLE, Prompts.GOODBYE)
            await call.attempt.close(EndReason.SERVICE_UNAVAILABLE, f"{note}: token store: {exc}"[:200])
            return False
        except LineGone:
            await call.attempt.close(EndReason.SUPERVISOR_HANGUP, None)  # the detail stays the note
            return False
        if handover.outcome is not Handover.SERVED:
            # The trunk is down, or the other side never presented the token: nobody spied.
            why = ("token never presented" if handover.outcome is Handover.UNUSED
                   else f"trunk {handover.dial_status}")
            await self._say(call, Prompts.UNAVAILABLE, Prompts.GOODBYE)
            await call.attempt.close(EndReason.SERVICE_UNAVAILABLE, f"{note}: {why}")
            return False
        call.stage = Stage.AFTER_SPY
        if not go_on:
            await call.attempt.close(EndReason.COMPLETED, None)
            return False
        await call.attempt.next(EndReason.COMPLETED, None)  # the other server's record says how
        return True

    async def _crossed(self, call: _Call) -> None:
        """Redeem the token, then one target, with the bound supervisor's rights checked
        again here: the server that issued it may have been wrong about this one."""
        d = self.deps
        args = call.line.env.args
        try:
            if d.crossing is None:
                raise TokenRefused("no_route")
            grant = await d.store_runner.run(d.crossing.redeem,
                                             args[0] if len(args) == 1 else "", call.server)
        except TokenRefused as exc:
            await self._say(call, Prompts.DENIED, Prompts.GOODBYE)
            await call.attempt.refused(EndReason.DENIED, f"cross_server token {exc.reason}",
                                 go_on=False)
            return
        except StoreError as exc:
            self.log.error("Cross-server token not checked: {error}", error=exc,
                           audit_id=call.attempt.record)
            await self._say(call, Prompts.UNAVAILABLE, Prompts.GOODBYE)
            await call.attempt.close(EndReason.SERVICE_UNAVAILABLE, f"token store: {exc}"[:200])
            return
        note = f"cross_server from {grant.origin}"
        bound = await self._bind(call, grant, note)
        if bound is None:
            return
        supervisor, target = bound
        found = d.resolver.resolve(target, server=call.server)
        if found.reason == "stale":
            await self._say(call, Prompts.UNAVAILABLE, Prompts.GOODBYE)
            await call.attempt.close(EndReason.SERVICE_UNAVAILABLE, f"{note}; AMI down or state stale")
            return
        _aim(call, target, found)
        refused = self._refusal(call, supervisor, target, found)
        if refused is not None:
            prompt, reason, detail = refused
            await self._say(call, prompt, Prompts.GOODBYE)
            await call.attempt.refused(reason, f"{note}; {detail}", go_on=False)
            return
        agent = d.directory.agent(found.agent_number or "")
        assert agent is not None and found.channel is not None
        ended = await self._spy(call, supervisor, found.channel, found.server or "",
                                spy_group_for_team(agent.team))
        if ended is not None:
            await call.attempt.close(ended, _GUESSED if call.attempt.times_are_guesses else None)

    async def _bind(self, call: _Call, grant: TokenGrant,
                    note: str) -> tuple[SupervisorEntry, str] | None:
        """Take on a redeemed token's supervisor, mode and target (cross-server and API
        entries alike); None, with the call refused, when the directory no longer has them."""
        supervisor = self.deps.directory.supervisor(grant.supervisor)
        target = parse_target_digits(grant.target)
        call.mode = grant.mode
        call.attempt.aim(target)
        await call.attempt.authenticated(grant.supervisor, device=grant.device, detail=note)
        if supervisor is None or target is None:  # taken out of the directory since
            await self._say(call, Prompts.DENIED, Prompts.GOODBYE)
            await call.attempt.close(EndReason.DENIED, f"{note}; supervisor not in directory")
            return None
        call.supervisor = supervisor
        return supervisor, target

    async def _launched(self, call: _Call) -> None:
        """Redeem blind_monitor's token, resolve the session again (the agent's call may have
        ended while the phone rang) and check the person's rights again, then spy, or take
        the customer over (HIJACK), or go over a [[cross_server]] trunk to the agent's
        server. One attempt, one row (via api); the launch's own row is "launch=#<id>"."""
        d = self.deps
        args = call.line.env.args
        try:
            if d.tokens is None:
                raise TokenRefused("forged")
            grant = await d.store_runner.run(d.tokens.redeem, args[0] if len(args) == 1 else "",
                                             d.now(), purpose="api")
            if call.server is None or grant.destination != call.server:
                raise TokenRefused("wrong_server")
        except TokenRefused as exc:
            await self._say(call, Prompts.DENIED, Prompts.GOODBYE)
            await call.attempt.refused(EndReason.DENIED, f"api token {exc.reason}", go_on=False)
            return
        except StoreError as exc:
            self.log.error("blind_monitor token not checked: {error}", error=exc,
                           audit_id=call.attempt.record)
            await self._say(call, Prompts.UNAVAILABLE, Prompts.GOODBYE)
            await call.attempt.close(EndReason.SERVICE_UNAVAILABLE, f"token store: {exc}"[:200])
            return
        note = grant.note or "blind_monitor"
        bound = await self._bind(call, grant, note)
        if bound is None:
            return
        supervisor, target = bound
        spy_server = grant.spy_server or call.server
        if spy_server != call.server:
            await self._elsewhere(call, supervisor, target, spy_server, go_on=False)
            return
        found = d.resolver.resolve(target, server=call.server)
        if found.reason == "stale":
            await self._say(call, Prompts.UNAVAILABLE, Prompts.GOODBYE)
            await call.attempt.close(EndReason.SERVICE_UNAVAILABLE, f"{note}; AMI down or state stale")
            return
        _aim(call, target, found)
        refused = self._refusal(call, supervisor, target, found)
        if refused is not None:
            prompt, reason, detail = refused
            if reason in (EndReason.NOT_ON_CALL, EndReason.NOT_LOGGED_IN, EndReason.NOT_FOUND):
                # The launch saw the agent on a call in this session: it ended since.
                prompt, reason = Prompts.NOT_ON_CALL, EndReason.NOT_ON_CALL
                detail = f"the agent's call ended before the phone answered ({detail})"
            await self._say(call, prompt, Prompts.GOODBYE)
            await call.attempt.refused(reason, f"{note}; {detail}", go_on=False)
            return
        agent = d.directory.agent(found.agent_number or "")
        assert agent is not None and found.channel is not None
        if grant.stage == "HIJACK":
            await self._hijack(call, found.channel, found.server or "", note)
            return
        ended = await self._spy(call, supervisor, found.channel, found.server or "",
                                spy_group_for_team(agent.team))
        if ended is not None:
            await call.attempt.close(ended, _GUESSED if call.attempt.times_are_guesses else None)

    async def _hijack(self, call: _Call, agent_channel: str, server: str, note: str) -> None:
        """Take the customer over (hijack.py); the row is the spy's, detail "hijack"."""
        d = self.deps
        record = await call.attempt.spying(call.mode, f"{note}; hijack")
        if d.hijack is None:
            await self._say(call, Prompts.DENIED, Prompts.GOODBYE)
            await call.attempt.close(EndReason.DENIED, f"{note}; hijack not available")
            return
        call.stage = Stage.SPY
        result = await d.hijack.take_over(call.line, server, agent_channel, d.now)
        if result.outcome is not Taken.ENDED:
            if not call.line.hung_up:
                await self._say(call, Prompts.DENIED, Prompts.GOODBYE)
            await call.attempt.close(EndReason.DENIED, f"{note}; hijack {result.outcome.value}: "
                               f"{result.detail}"[:200])
            return
        assert result.taken_at is not None
        call.attempt.spy_started(record, result.taken_at)
        call.attempt.spy_stopped(record, d.now())
        call.stage = Stage.AFTER_SPY
        ended = EndReason.SUPERVISOR_HANGUP if result.supervisor_left else EndReason.COMPLETED
        await call.attempt.close(ended, f"{note}; hijack: {result.detail}"[:200])

    def _refusal(self, call: _Call, supervisor: SupervisorEntry, target: str,
                 found: Resolution) -> tuple[str, EndReason, str] | None:
        """Why ``found`` gets no spy (prompt, end reason, audit detail), or None to spy.

        Rights come before status: an agent this supervisor may not spy on in this mode is
        "not allowed" whether talking, idle or logged out, so the phone says nothing about
        other teams or never-spy agents. Only a target naming no agent at all is "not found".
        The audit keeps what the caller is not told.
        """
        d = self.deps
        number = found.agent_number
        if number is None and found.reason == "not_found" and d.directory.agent(target):
            number = target  # a directory agent the map does not hold: still theirs to refuse
        if number is None:
            prompt, reason = _UNRESOLVED.get(found.reason, _UNRESOLVED["not_found"])
            return prompt, reason, found.reason
        agent = d.directory.agent(number)
        decision = (may_spy(supervisor, agent, call.mode, d.directory.never_spy)
                    if agent is not None else None)
        if decision is None or not decision.allowed:
            why = decision.reason if decision is not None else "agent not in directory"
            return Prompts.DENIED, EndReason.DENIED, (
                why if found.ok else f"{why}; agent {found.reason}")
        if not found.ok or found.channel is None:
            prompt, reason = _UNRESOLVED.get(found.reason, _UNRESOLVED["not_found"])
            return prompt, reason, found.reason
        return None

    def _offered(self, call: _Call, supervisor: SupervisorEntry) -> list[str]:
        """The agents this supervisor may spy on in this mode who are on a call now, longest
        call first (ties by number): the same order every time."""
        d = self.deps
        # Targets resolve on the call's own server; a call from no known server sees all.
        servers = (call.server,) if call.server is not None else d.servers
        calls: dict[str, float] = {}
        for name in servers:
            for number, answered_at in d.resolver.on_call_agents(name):
                calls[number] = min(answered_at, calls.get(number, answered_at))
        offered = []
        for number, answered_at in calls.items():
            agent = d.directory.agent(number)
            if agent is not None and may_spy(
                    supervisor, agent, call.mode, d.directory.never_spy).allowed:
                offered.append((answered_at, number))
        return [number for _, number in sorted(offered)]

    async def _spy(self, call: _Call, supervisor: SupervisorEntry, channel: str, server: str,
                   group: str) -> EndReason | None:
        """Run ChanSpy; returns how it ended when the supervisor is still on the line."""
        d = self.deps
        switching = may_switch_modes(supervisor)
        argument = chanspy_argument(
            channel, call.mode, allow_switch=switching,
            spy_group=group if d.security.enforce_spy_group else None)
        attempt = call.attempt
        record = await attempt.spying(call.mode)
        if d.required_notice is not None and not await self._notice_first(call, server, channel):
            return None

        def started(at: float, _spyee: str) -> None:
            attempt.spy_started(record, at)
            if d.notice is not None:
                self._background_async(d.notice, server, channel)

        watch = SpyWatch(
            call.line.env.uniqueid,
            on_start=started,
            on_stop=lambda at: attempt.spy_stopped(record, at),
            on_mode=lambda mode, at: attempt.mode(record, mode, at),
            switching=switching,
            server=server,
        )
        unwatch = d.spies.watch(watch)
        call.stage = Stage.SPY
        sent = d.now()
        try:
            reply = await call.line.exec("ChanSpy", argument)
        finally:
            returned = d.now()
            if watch.started_at is not None and watch.stopped_at is None:
                await self._until_stopped(watch)
            unwatch()
            guessed = self._guess_times(watch, record, attempt, sent, returned)
        if watch.started_at is None and not guessed and not call.line.hung_up:
            # With S, ChanSpy returns at once when it may spy on nothing: SPYGROUP refused
            # the channel inside Asterisk, or the call ended just now. (If the supervisor
            # hung up instead, this prompt fails and the record says so.) Our AMI link was
            # up all along, so a ChanSpyStart would have been seen.
            await self._say(call, Prompts.DENIED)
            return EndReason.DENIED
        if reply.result == "-1" or call.line.hung_up:
            await attempt.close(EndReason.SUPERVISOR_HANGUP, _GUESSED if guessed else None)
            return None
        call.stage = Stage.AFTER_SPY
        return EndReason.AGENT_HANGUP

    async def _notice_first(self, call: _Call, server: str, channel: str) -> bool:
        """The required notice, played to the end before any ChanSpy; False when it could
        not be (the supervisor has heard why, the record is closed: no spy)."""
        assert self.deps.required_notice is not None
        call.stage = Stage.NOTICE
        try:
            await self.deps.required_notice(server, channel)
        except NoticeFailed as exc:
            self.log.error("Required notice not played, no spy: {error}", error=exc,
                           audit_id=call.attempt.record)
            await call.attempt.notice(f"failed: {exc}")
            await self._say(call, Prompts.UNAVAILABLE, Prompts.GOODBYE)
            await call.attempt.close(EndReason.NOTICE_FAILED, str(exc)[:200])
            return False
        await call.attempt.notice("played")
        if call.line.hung_up:  # gone while it played: no spy, and the record says where
            raise LineGone("hung up during the notice")
        return True

    def _guess_times(self, watch: SpyWatch, record: int, attempt: AuditAttempt,
                     sent: float, returned: float) -> bool:
        """When the AMI link dropped during the spy, the events may be missing: ChanSpy's
        own return is the word then (it runs for as long as it spies), never "refused".
        Returns whether the record's times are guesses."""
        if self.deps.spies.saw_everything(watch) and (
                watch.started_at is not None or watch.stopped_at is None):
            return False  # every event arrived (a stop without its start: the link broke)
        attempt.times_guessed(record, sent if watch.started_at is None else None,
                              returned if watch.stopped_at is None else None)
        return True

    async def _until_stopped(self, watch: SpyWatch) -> None:
        """ChanSpy has returned: give its ChanSpyStop a moment to arrive over AMI."""
        waiting = watch.when_stopped()
        waiting.addTimeout(STOP_GRACE, self.deps.clock)
        with contextlib.suppress(TimeoutError, CancelledError):
            await waiting

    # -- helpers ----------------------------------------------------------------------------

    async def _ask(self, call: _Call, prompt: str, max_digits: int) -> str | None:
        timeout = PIN_TIMEOUT_MS if prompt == Prompts.PIN else TARGET_TIMEOUT_MS
        digits = await call.line.get_data(prompt, timeout, max_digits)
        return digits or None

    async def _say(self, call: _Call, *prompts: str) -> None:
        for prompt in prompts:
            await call.line.stream_file(prompt)

    async def _done(self, call: _Call) -> None:
        if not call.line.hung_up:
            await call.line.set_variable(RESULT_VARIABLE, "done")

    def _background_async(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        async def run() -> None:
            await fn(*args)

        ensureDeferred(run()).addErrback(
            lambda f: self.log.failure("background notice step failed", f))


def _aim(call: _Call, target: str, found: Resolution) -> None:
    """Remember what ``target`` resolved to, when it named an agent."""
    if found.agent_number is not None:
        call.attempt.aim(target, found.agent_number, found.channel, found.server)


def _lives_elsewhere(d: FlowDeps, target: str, here: str | None) -> str | None:
    """Another server on which ``target`` is on a call now, when the call came from ``here``."""
    if here is None:
        return None
    return next((name for name in d.servers
                 if name != here and d.resolver.resolve(target, server=name).ok), None)


def _same_runner(a: StoreRunner, b: StoreRunner) -> bool:
    return a is b or (isinstance(a, InlineRunner) and isinstance(b, InlineRunner))


def _is_hangup(exc: BaseException) -> bool:
    return isinstance(exc, LineGone)


def _shorten(text: str) -> str:
    return text[:32]
