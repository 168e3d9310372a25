"""The feature-code flow: who is calling, their PIN, which agent, whether they may, and the spy.

One audit record per attempt, written before anything can be heard. Every way out plays a
prompt first: nothing ends in silence. A wrong supervisor number, a wrong PIN and a locked-out
caller all sound the same, so the phone reveals nothing about which one it was.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet.defer import ensureDeferred
from twisted.logger import Logger

from fastagi_spy.config import SecurityRules
from fastagi_spy.domain import Directory, Mode, SupervisorEntry, device_of_channel
from fastagi_spy.store.audit import AuditLog, AuthResult, EndReason, Via
from fastagi_spy.store.errors import StoreError
from fastagi_spy.store.tokens import TokenGrant, TokenRefused
from fastagi_spy.supervise.chanspy import chanspy_argument, parse_target_digits, spy_group_for_team
from fastagi_spy.supervise.crossing import Crossing, Handover
from fastagi_spy.supervise.line import AGILine, LineGone
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
    now: Callable[[], float]
    # (device, supervisor, pin, stored hash): slow, away from the reactor, queued per device;
    # fails with PinCheckUnavailable when it cannot answer in time.
    verify_pin: Callable[[str, str, str, str | None], Awaitable[bool]]
    sleep: Callable[[float], Awaitable[None]]
    notice: Callable[[str, str], Awaitable[None]] | None = None  # (server, channel)
    servers: tuple[str, ...] = ()  # every configured server: where else a target may live
    crossing: Crossing | None = None  # [[cross_server]] trunks and their tokens


@dataclass
class _Call:
    line: AGILine
    mode: Mode
    device: str
    record: int = 0
    supervisor: SupervisorEntry | None = None
    stage: str = "start"
    target: str | None = None  # the digits of the current attempt
    found: Resolution | None = None  # what they resolved to

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
        self.deps = deps

    async def __call__(self, line: AGILine, mode: Mode) -> None:
        await self._serve(line, mode, Via.PHONE, self._run)

    async def crossed(self, line: AGILine) -> None:
        """The ``spy/cross`` route: a supervisor sent over a [[cross_server]] trunk from
        another server, with our token as the only argument (the mode is the token's)."""
        await self._serve(line, Mode.LISTEN, Via.CROSS_SERVER, self._crossed)

    async def _serve(self, line: AGILine, mode: Mode, via: Via,
                     run: Callable[[_Call], Awaitable[None]]) -> None:
        d = self.deps
        call = _Call(line, mode, device_of_channel(line.env.channel))
        # ANSWER goes out first; the record is on disk before its reply is even read, so
        # before anything can be heard.
        answered = ensureDeferred(line.answer()) if not line.hung_up else None
        try:
            call.record = d.audit.open(
                d.now(), via.value, channel=line.env.channel,
                uniqueid=line.env.uniqueid, device=call.device)
        except Exception:
            # No record, no service: the bundle's fail-closed branch plays the error.
            if answered is not None:
                answered.addErrback(lambda _: None)
            raise
        if answered is not None:
            with contextlib.suppress(LineGone):  # the record still gets written and closed
                await answered
        try:
            await run(call)
            await self._done(call)
        except Exception as exc:
            hung_up = line.hung_up or _is_hangup(exc)
            reason = EndReason.SUPERVISOR_HANGUP if call.stage == "spy" else EndReason.ABANDONED
            detail = f"hung up at {call.stage}" if hung_up else f"{type(exc).__name__}: {exc}"
            self._close(call, reason if hung_up else EndReason.ERROR, detail)
            if not hung_up:
                raise

    # -- the steps ------------------------------------------------------------------------

    async def _run(self, call: _Call) -> None:
        args = call.line.env.args
        raw_target = args[0] if args else ""
        if len(args) > 1 or (raw_target and parse_target_digits(raw_target) is None):
            # A comma in the dialled text adds AGI arguments; anything but digits is hostile.
            self.deps.audit.update(call.record, requested_target=",".join(args)[:64])
            await self._say(call, Prompts.INVALID, Prompts.GOODBYE)
            self._close(call, EndReason.INVALID_TARGET, "target in the AGI arguments")
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
                call.stage = "supervisor prompt"
                typed = await self._ask(call, Prompts.SUPERVISOR, ENTRY_DIGITS)
                if typed is None:
                    silent += 1
                    if silent >= SILENT_PIN_PROMPTS:
                        break
                    continue
                claimed = parse_target_digits(typed)
            supervisor = d.directory.supervisor(claimed) if claimed else None
            call.stage = "pin prompt"
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
            self._close(call, EndReason.LOCKED_OUT, "locked out")
        else:
            self._close(call, EndReason.BAD_PIN, f"{tries} failed tries")
        return None

    async def _check_pin(self, call: _Call, claimed: str | None,
                         supervisor: SupervisorEntry | None, pin: str) -> PinVerdict | None:
        """Count, hash and settle one typed PIN; None when the check itself failed (the
        caller has heard "service unavailable" and the record is closed)."""
        d = self.deps
        checker = d.pin_checker
        attempt = checker.begin(call.device, claimed, supervisor, d.now())
        try:
            valid = await d.verify_pin(call.device, claimed or "", pin, attempt.stored_hash)
        except PinCheckUnavailable as exc:
            checker.abandon(attempt)
            self.log.error("PIN check failed: {error}", error=exc)
            d.audit.update(call.record, supervisor=claimed)
            await self._say(call, Prompts.UNAVAILABLE, Prompts.GOODBYE)
            self._close(call, EndReason.SERVICE_UNAVAILABLE, f"PIN check: {exc}"[:200])
            return None
        except BaseException:
            checker.abandon(attempt)
            raise
        return checker.finish(call.record, attempt, supervisor, valid, d.now())

    async def _no_pin(self, call: _Call) -> None:
        self.deps.audit.update(call.record, auth_result=AuthResult.NO_INPUT.value)
        await self._say(call, Prompts.GOODBYE)
        self._close(call, EndReason.ABANDONED, "no PIN entered")

    async def _targets(self, call: _Call, supervisor: SupervisorEntry, first: str | None) -> None:
        d = self.deps
        silent = 0
        pending = first
        while True:
            if pending is None:
                call.stage = "target prompt"
                typed = await self._ask(call, Prompts.TARGET, 10)
                if not typed:
                    silent += 1
                    if silent >= TARGET_PROMPTS:
                        await self._say(call, Prompts.GOODBYE)
                        self._close(call, EndReason.ABANDONED, "no target entered")
                        return
                    continue
                pending = typed
            target, typed_text, pending = parse_target_digits(pending), pending, None
            if target is None:
                d.audit.update(call.record, requested_target=_shorten(typed_text))
                await self._say(call, Prompts.INVALID)
                self._next_record(call, EndReason.INVALID_TARGET, "typed target not digits")
                continue
            if target == START_KEY:
                # Choosing by ear ends in the agent's number, and from there on it is as if
                # that number had been typed: one resolve, one rights check, one record.
                call.stage = "picking"
                target = await pick_agent(call.line, self._offered(call, supervisor))
                if target is None:
                    continue
            found = d.resolver.resolve(target, server=call.server)
            elsewhere = (_lives_elsewhere(d, target, call.server)
                         if found.reason in ("not_found", "not_logged_in", "not_on_call") else None)
            if elsewhere is not None:
                # Over a [[cross_server]] trunk to `elsewhere` when one goes there; else refused.
                call.target = target
                if not await self._elsewhere(call, supervisor, target, elsewhere):
                    return
                continue
            call.target = target
            if found.reason == "stale":
                await self._say(call, Prompts.UNAVAILABLE, Prompts.GOODBYE)
                self._close(call, EndReason.SERVICE_UNAVAILABLE, "AMI down or state stale")
                return
            if found.agent_number is not None:
                call.found = found
            refused = self._refusal(call, supervisor, target, found)
            if refused is not None:
                prompt, reason, detail = refused
                await self._say(call, prompt)
                self._next_record(call, reason, detail)
                continue
            agent = d.directory.agent(found.agent_number or "")
            assert agent is not None and found.channel is not None
            ended = await self._spy(call, supervisor, found.channel, found.server or "",
                                    spy_group_for_team(agent.team))
            if ended is None:
                return
            self._next_record(call, ended, None)

    async def _elsewhere(self, call: _Call, supervisor: SupervisorEntry, target: str,
                         server: str) -> bool:
        """A target on a call on another server; False when the call is over."""
        d = self.deps
        route = d.crossing.route(call.server, server) if d.crossing is not None else None
        if d.crossing is None or route is None or call.server is None:
            await self._say(call, Prompts.DENIED)
            self._next_record(call, EndReason.DENIED, f"other_server {server}")
            return True
        found = d.resolver.resolve(target, server=server)
        if found.agent_number is not None:
            call.found = found
        refused = self._refusal(call, supervisor, target, found)
        if refused is not None:  # refused here, before any token exists
            prompt, reason, detail = refused
            await self._say(call, prompt)
            self._next_record(call, reason, f"{detail}; on {server}")
            return True
        note = f"cross_server to {server}"
        d.audit.update(call.record, **self._target_fields(call), modes=call.mode.value,
                       detail=note)
        call.stage = "spy"
        grant = TokenGrant(call.server, server, supervisor.number, call.mode, target, call.device)
        try:
            handover = await d.crossing.send(call.line, route, grant)
        except StoreError as exc:
            self.log.error("Cross-server token not issued: {error}", error=exc)
            await self._say(call, Prompts.UNAVAILABLE, Prompts.GOODBYE)
            self._close(call, EndReason.SERVICE_UNAVAILABLE, f"{note}: token store: {exc}"[:200])
            return False
        except LineGone:
            self._close(call, EndReason.SUPERVISOR_HANGUP, None)  # the detail stays the note
            return False
        if handover.outcome is not Handover.SERVED:
            # The trunk is down, or the other side never presented the token: nobody spied.
            why = ("token never presented" if handover.outcome is Handover.UNUSED
                   else f"trunk {handover.dial_status}")
            await self._say(call, Prompts.UNAVAILABLE, Prompts.GOODBYE)
            self._close(call, EndReason.SERVICE_UNAVAILABLE, f"{note}: {why}")
            return False
        call.stage = "after spy"
        self._next_record(call, EndReason.COMPLETED, None)  # the other server's record says how
        return True

    async def _crossed(self, call: _Call) -> None:
        """Redeem the token, then one target, with the bound supervisor's rights checked
        again here: the server that issued it may have been wrong about this one."""
        d = self.deps
        args = call.line.env.args
        try:
            if d.crossing is None:
                raise TokenRefused("no_route")
            grant = d.crossing.redeem(args[0] if len(args) == 1 else "", call.server)
        except TokenRefused as exc:
            await self._say(call, Prompts.DENIED, Prompts.GOODBYE)
            self._close(call, EndReason.DENIED, f"cross_server token {exc.reason}")
            return
        except StoreError as exc:
            self.log.error("Cross-server token not checked: {error}", error=exc)
            await self._say(call, Prompts.UNAVAILABLE, Prompts.GOODBYE)
            self._close(call, EndReason.SERVICE_UNAVAILABLE, f"token store: {exc}"[:200])
            return
        note = f"cross_server from {grant.origin}"
        supervisor = d.directory.supervisor(grant.supervisor)
        target = parse_target_digits(grant.target)
        call.mode, call.target = grant.mode, target
        d.audit.update(call.record, supervisor=grant.supervisor, device=grant.device,
                       auth_result=AuthResult.OK.value, detail=note)
        if supervisor is None or target is None:  # taken out of the directory since
            await self._say(call, Prompts.DENIED, Prompts.GOODBYE)
            self._close(call, EndReason.DENIED, f"{note}; supervisor not in directory")
            return
        call.supervisor = supervisor
        found = d.resolver.resolve(target, server=call.server)
        if found.reason == "stale":
            await self._say(call, Prompts.UNAVAILABLE, Prompts.GOODBYE)
            self._close(call, EndReason.SERVICE_UNAVAILABLE, f"{note}; AMI down or state stale")
            return
        if found.agent_number is not None:
            call.found = found
        refused = self._refusal(call, supervisor, target, found)
        if refused is not None:
            prompt, reason, detail = refused
            await self._say(call, prompt, Prompts.GOODBYE)
            self._close(call, reason, f"{note}; {detail}")
            return
        agent = d.directory.agent(found.agent_number or "")
        assert agent is not None and found.channel is not None
        ended = await self._spy(call, supervisor, found.channel, found.server or "",
                                spy_group_for_team(agent.team))
        if ended is not None:
            self._close(call, ended, None)

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
        record = call.record
        # One write with everything the record needs, on disk before ChanSpy starts.
        d.audit.update(record, **self._target_fields(call), modes=call.mode.value)

        def started(at: float, _spyee: str) -> None:
            self._background(d.audit.mark_spy_started, record, at)
            if d.notice is not None:
                self._background_async(d.notice, server, channel)

        watch = SpyWatch(
            call.line.env.uniqueid,
            on_start=started,
            on_stop=lambda at: self._background(d.audit.mark_spy_stopped, record, at),
            on_mode=lambda mode, _at: self._background(d.audit.add_mode, record, mode.value),
            switching=switching,
        )
        unwatch = d.spies.watch(watch)
        call.stage = "spy"
        try:
            reply = await call.line.exec("ChanSpy", argument)
        finally:
            if watch.started_at is not None and watch.stopped_at is None:
                await self._wait(lambda: watch.stopped_at is not None, 1.0)
            unwatch()
        if watch.started_at is None and not call.line.hung_up:
            # With S, ChanSpy returns at once when it may spy on nothing: SPYGROUP refused
            # the channel inside Asterisk, or the call ended just now. (If the supervisor
            # hung up instead, this prompt fails and the record says so.)
            await self._say(call, Prompts.DENIED)
            return EndReason.DENIED
        if reply.result == "-1" or call.line.hung_up:
            self._close(call, EndReason.SUPERVISOR_HANGUP, None)
            return None
        call.stage = "after spy"
        return EndReason.AGENT_HANGUP

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

    @staticmethod
    def _target_fields(call: _Call) -> dict[str, str | None]:
        fields: dict[str, str | None] = {}
        if call.target is not None:
            fields["requested_target"] = call.target
        if call.found is not None:
            fields.update(agent=call.found.agent_number, resolved_channel=call.found.channel,
                          server=call.found.server)
        return fields

    def _close(self, call: _Call, reason: EndReason, detail: str | None) -> None:
        # Whatever was learnt about the target goes in with the close: one write, not three.
        fields = self._target_fields(call)
        call.target = call.found = None
        self.deps.audit.close(call.record, self.deps.now(), reason, detail, **fields)

    def _next_record(self, call: _Call, reason: EndReason, detail: str | None) -> None:
        """Close this attempt and open the next one for the same authenticated caller."""
        d = self.deps
        self._close(call, reason, detail)
        call.record = d.audit.open(
            d.now(), Via.PHONE.value, channel=call.line.env.channel,
            uniqueid=call.line.env.uniqueid, device=call.device,
            supervisor=call.supervisor.number if call.supervisor else None,
            auth_result=AuthResult.OK)

    def _background(self, fn: Callable[..., Any], *args: Any) -> None:
        """A store step that no caller waits for (AMI-driven marks): logged if it fails."""
        try:
            fn(*args)
        except Exception:
            self.log.failure("background audit step failed")

    def _background_async(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        async def run() -> None:
            await fn(*args)

        ensureDeferred(run()).addErrback(
            lambda f: self.log.failure("background notice step failed", f))

    async def _wait(self, ready: Callable[[], bool], timeout: float) -> None:
        waited = 0.0
        while not ready() and waited < timeout:
            await self.deps.sleep(0.05)
            waited += 0.05


def _lives_elsewhere(d: FlowDeps, target: str, here: str | None) -> str | None:
    """Another server on which ``target`` is on a call now, when the call came from ``here``."""
    if here is None:
        return None
    return next((name for name in d.servers
                 if name != here and d.resolver.resolve(target, server=name).ok), None)


def _is_hangup(exc: BaseException) -> bool:
    return isinstance(exc, LineGone)


def _shorten(text: str) -> str:
    return text[:32]
