"""blind_monitor's launcher: ring the supervisor's phone into the bundle with a one-time token.

The HTTP endpoint (web/vicidial.py) runs VICIdial's checks 1-5 and then calls
:meth:`MonitorLauncher.launch`, which checks our own rights (teams, never-spy, the stage's
mode) on the agent in that session, writes the launch's audit row, issues a token
(store/tokens.py, purpose "api") and sends an async AMI ``Originate`` of the phone's device
on the phone's server into the bundle's ``[fastagi-spy-api]`` context, with the token as the
extension. Only our own digits reach Asterisk: the token, the 7-digit session, the stage's
name from our enum. On answer the bundle hands the token to the ``spy/api`` route, where the
flow redeems it, resolves the session again and spies (``SupervisionFlow.launched``).

Stages and the rights they need:

- ``MONITOR`` listen (the listen right), ``WHISPER`` whisper (whisper), ``BARGE`` barge (barge).
- ``BARGESWAP``: in VICIdial it swaps who is rung first on a barge. Here the supervisor's
  phone is always rung first and the spy starts on answer, so it is a barge (barge right).
- ``HIJACK``: the supervisor takes the customer over: the customer is bridged to the
  supervisor's phone and the agent's leg is hung up (barge right). It needs the phone on the
  agent's server (a customer cannot be bridged over a trunk).

A refusal after VICIdial's checks is :class:`LaunchRefused`; its ``reason`` is one of the
``REFUSED_*`` strings, which the endpoint prints as ``ERROR: blind_monitor <reason> - ...``.
Fail closed: a stale live map, a store that cannot write, an AMI link down or an Originate
refused all end in ``REFUSED_UNAVAILABLE`` with no token left alive.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from twisted.logger import Logger

from fastagi_spy.config import AsteriskServer
from fastagi_spy.domain import Directory, Mode, PhoneEntry, SupervisorEntry
from fastagi_spy.store.audit import AuditLog, AuthResult, EndReason, Via
from fastagi_spy.store.errors import StoreError
from fastagi_spy.store.runner import InlineRunner, StoreRunner
from fastagi_spy.store.tokens import TokenGrant, TokenStore
from fastagi_spy.supervise.rights import may_spy
from fastagi_spy.wire.names import DEVICE_NAME

log = Logger()

API_CONTEXT = "fastagi-spy-api"  # the bundle context the phone is originated into
TOKEN_TTL = 60.0  # seconds: the phone's ring time (ORIGINATE_TIMEOUT) and a margin
ORIGINATE_TIMEOUT_MS = 30000  # how long the supervisor's phone rings
SESSION = re.compile(r"[0-9]{7}")
TARGET = re.compile(r"[0-9]{1,20}")  # a session id or an agent number: digits only
SOURCE = re.compile(r"[0-9A-Za-z]{0,20}")  # VICIdial strips everything else from source

# LaunchRefused reasons (VICIdial has no such cases: these are ours).
REFUSED_RIGHTS = "USER MAY NOT MONITOR THIS AGENT"  # team, never-spy or the stage's mode
REFUSED_NOT_ON_CALL = "AGENT IS NOT ON A CALL"
REFUSED_NO_ROUTE = "NO ROUTE FROM THE PHONE'S SERVER TO THE AGENT'S SERVER"
REFUSED_HIJACK_ELSEWHERE = "HIJACK NEEDS THE PHONE ON THE AGENT'S SERVER"
REFUSED_UNAVAILABLE = "SERVICE UNAVAILABLE, TRY AGAIN LATER"
REFUSED_INVALID = "INVALID REQUEST"


class Stage(enum.StrEnum):
    """VICIdial's blind_monitor stages."""

    MONITOR = "MONITOR"
    BARGE = "BARGE"
    WHISPER = "WHISPER"
    BARGESWAP = "BARGESWAP"
    HIJACK = "HIJACK"


# The ChanSpy mode (and so the right) each stage needs; HIJACK's spy is its takeover.
STAGE_MODE = {
    Stage.MONITOR: Mode.LISTEN,
    Stage.WHISPER: Mode.WHISPER,
    Stage.BARGE: Mode.BARGE,
    Stage.BARGESWAP: Mode.BARGE,
    Stage.HIJACK: Mode.BARGE,
}


# A Live Monitor button's mode as the stage the bundle's token carries.
MODE_STAGE = {Mode.LISTEN: Stage.MONITOR, Mode.WHISPER: Stage.WHISPER, Mode.BARGE: Stage.BARGE}


class LaunchRefused(Exception):
    """No phone is rung; ``reason`` is one of the REFUSED_* strings."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Launched:
    """What VICIdial's SUCCESS line needs: ``man_id`` (our launch audit row's id),
    ``dialstring`` (the agent server's IPv4 address VICIdial-style, "010*010*010*017*", or
    its server_ip and "*" otherwise; the endpoint appends the session) and
    ``dialplan_number`` (the phone's number: the device's resource before any "@", e.g.
    "350a" for PJSIP/350a)."""

    man_id: str
    dialstring: str
    dialplan_number: str


class Found(Protocol):
    @property
    def reason(self) -> str: ...
    @property
    def agent_number(self) -> str | None: ...
    @property
    def session_id(self) -> str | None: ...


class Resolver(Protocol):
    """What the launcher reads of the live map (LiveMap satisfies it)."""

    def resolve(self, target: str, server: str | None = None) -> Found: ...


# (server, headers) -> the Originate's reply; raises when AMI is down or refuses it.
Originate = Callable[[str, list[tuple[str, str]]], Awaitable[object]]


class MonitorLauncher:
    """Checks, audits, issues the token and rings the phone; see the module docstring."""

    def __init__(self, directory: Directory, phones: Iterable[PhoneEntry],
                 servers: Iterable[AsteriskServer], resolver: Resolver, tokens: TokenStore,
                 audit: AuditLog, originate: Originate, now: Callable[[], float],
                 route: Callable[[str, str], bool] = lambda origin, destination: False,
                 ttl: float = TOKEN_TTL, runner: StoreRunner | None = None) -> None:
        self._directory = directory
        # Store calls (the launch row, the token) go through it: on the store thread with
        # PostgreSQL, so a slow database holds this launch, not the reactor.
        self._runner: StoreRunner = runner or InlineRunner()
        self._phones = {p.login: p for p in phones}
        self._servers = tuple(servers)
        self._resolver = resolver
        self._tokens = tokens
        self._audit = audit
        self._originate = originate
        self._now = now
        self._route = route  # whether a [[cross_server]] trunk goes origin -> destination
        self._ttl = ttl

    def server_for_ip(self, server_ip: str) -> str | None:
        """The configured server whose server_ip is exactly ``server_ip`` (the config keeps
        them unique once phones are configured); None when none or several match."""
        found = [s.name for s in self._servers if s.server_ip == server_ip]
        return found[0] if len(found) == 1 else None

    def session_exists(self, server: str, session_id: str) -> bool:
        """Whether ``session_id`` is a live 7-digit session of a logged-in agent on
        ``server``. A server whose live map is stale has none (fail closed)."""
        if SESSION.fullmatch(session_id) is None:
            return False
        found = self._resolver.resolve(session_id, server)
        return found.agent_number is not None and found.session_id == session_id

    def phone(self, login: str) -> PhoneEntry | None:
        return self._phones.get(login)

    async def launch(self, person: SupervisorEntry, phone: PhoneEntry, server: str,
                     session_id: str, stage: Stage, source: str) -> Launched:
        """Ring ``phone`` to spy on ``session_id`` on ``server`` in ``stage``'s mode; returns
        once AMI has taken the Originate. LaunchRefused says why not."""
        if SESSION.fullmatch(session_id) is None or SOURCE.fullmatch(source) is None:
            raise LaunchRefused(REFUSED_INVALID)  # the endpoint sanitised them: not ours
        mode = STAGE_MODE[stage]
        agent_number = self._check(person, phone, server, session_id, stage, mode)
        note = f"blind_monitor {stage.value} source={source or '-'} phone={phone.login}"
        record = await self._ring(person, phone, server, session_id, agent_number, stage, note,
                                  Via.API)
        return Launched(str(record), dialstring(self._server_ip(server)), dialplan_number(phone))

    async def launch_agent(self, person: SupervisorEntry, phone: PhoneEntry,
                           agent_number: str, mode: Mode) -> int:
        """A Live Monitor button: ring ``phone`` to spy on agent ``agent_number`` in ``mode``
        on whichever server the agent's call is. The same rights, token and Originate as
        :meth:`launch`; the launch row is via web. Returns the launch row's id."""
        if TARGET.fullmatch(agent_number) is None:
            raise LaunchRefused(REFUSED_INVALID)
        agent = self._directory.agent(agent_number)
        # Rights before status, as on the phones: no hint whether a forbidden agent is busy.
        if agent is None or not may_spy(person, agent, mode, self._directory.never_spy).allowed:
            raise LaunchRefused(REFUSED_RIGHTS)
        server = self._agent_server(agent_number)
        if phone.server != server and not self._route(phone.server, server):
            raise LaunchRefused(REFUSED_NO_ROUTE)
        stage = MODE_STAGE[mode]
        note = f"web {mode.value} phone={phone.login}"
        return await self._ring(person, phone, server, agent_number, agent_number, stage, note,
                                Via.WEB)

    def _agent_server(self, agent_number: str) -> str:
        """The server where the agent is on a call; fail closed when a stale server could
        hold it."""
        stale = False
        for server in self._servers:
            found = self._resolver.resolve(agent_number, server.name)
            if found.reason == "ok" and found.agent_number == agent_number:
                return server.name
            stale = stale or found.reason == "stale"
        raise LaunchRefused(REFUSED_UNAVAILABLE if stale else REFUSED_NOT_ON_CALL)

    async def _ring(self, person: SupervisorEntry, phone: PhoneEntry, server: str, target: str,
                    agent_number: str, stage: Stage, note: str, via: Via) -> int:
        """The launch row, the token and the Originate; returns the row's id."""
        mode = STAGE_MODE[stage]
        now = self._now()

        def row_and_token() -> tuple[int, str]:  # one hop to the store thread for all three
            record = self._audit.open(now, via.value, supervisor=person.number,
                                      device=phone.dial, auth_result=AuthResult.OK)
            self._audit.update(record, requested_target=target, agent=agent_number,
                               server=server, modes=mode.value, detail=note)
            grant = TokenGrant(phone.server, phone.server, person.number, mode, target,
                               phone.dial, purpose="api", stage=stage.value, spy_server=server,
                               note=f"{note} launch=#{record}")
            return record, self._tokens.issue(grant, now, self._ttl)

        try:
            record, token = await self._runner.run(row_and_token)
        except StoreError as exc:
            log.error("blind_monitor not launched, store down: {error}", error=exc)
            raise LaunchRefused(REFUSED_UNAVAILABLE) from exc
        try:
            await self._originate(phone.server, originate_headers(phone, token, target, stage))
        except Exception as exc:
            # AMI down or the Originate refused: the token dies now, the row says why.
            log.error("blind_monitor Originate failed on {server}: {error}",
                      server=phone.server, error=exc)
            failed_at = self._now()  # read here, on the reactor, not on the store thread
            await self._quietly(lambda: self._tokens.revoke(token, failed_at))
            why = f"{note}: originate failed: {exc}"[:200]
            await self._quietly(lambda: self._audit.close(
                record, failed_at, EndReason.SERVICE_UNAVAILABLE, why))
            raise LaunchRefused(REFUSED_UNAVAILABLE) from exc
        # The launch is done; the phone's answer is its own row (via api, "launch=#<id>").
        # Awaited: the launch's status (web/actions.py) reads this close.
        rung_at = self._now()
        await self._quietly(lambda: self._audit.close(record, rung_at, EndReason.COMPLETED,
                                                      f"{note}: phone rung"))
        return record

    def _check(self, person: SupervisorEntry, phone: PhoneEntry, server: str,
               session_id: str, stage: Stage, mode: Mode) -> str:
        """Rights before status (as on the phones); returns the agent's number."""
        found = self._resolver.resolve(session_id, server)
        reason, number = found.reason, found.agent_number
        if reason == "stale":
            raise LaunchRefused(REFUSED_UNAVAILABLE)
        agent = self._directory.agent(number) if number is not None else None
        if agent is None or not may_spy(person, agent, mode,
                                        self._directory.never_spy).allowed:
            raise LaunchRefused(REFUSED_RIGHTS)
        if reason != "ok":
            raise LaunchRefused(REFUSED_NOT_ON_CALL)
        if phone.server != server:
            if stage is Stage.HIJACK:
                raise LaunchRefused(REFUSED_HIJACK_ELSEWHERE)
            if not self._route(phone.server, server):
                raise LaunchRefused(REFUSED_NO_ROUTE)
        return agent.number

    def _server_ip(self, server: str) -> str:
        return next((s.server_ip for s in self._servers if s.name == server), server)

    async def _quietly(self, step: Callable[[], object]) -> None:
        try:
            await self._runner.run(step)
        except Exception:
            log.failure("blind_monitor clean-up step failed")


def originate_headers(phone: PhoneEntry, token: str, session_id: str,
                      stage: Stage) -> list[tuple[str, str]]:
    """The async Originate: the phone's device into the bundle, the token as the extension.
    Everything here is ours; checked again where it meets AMI."""
    if DEVICE_NAME.match(phone.dial) is None or TARGET.fullmatch(session_id) is None:
        raise ValueError("unsafe phone or session for Originate")
    if not (token.isascii() and token.isdigit()):
        raise ValueError("a token is digits")
    return [
        ("Channel", phone.dial),
        ("Context", API_CONTEXT),
        ("Exten", token),
        ("Priority", "1"),
        ("Timeout", str(ORIGINATE_TIMEOUT_MS)),
        ("CallerID", f'"{stage.value} {session_id}" <{session_id}>'),
        ("Async", "true"),
    ]


def dialstring(server_ip: str) -> str:
    """VICIdial's cross-server prefix: "10.10.10.17" -> "010*010*010*017*"."""
    try:
        address = ipaddress.ip_address(server_ip)
    except ValueError:
        return f"{server_ip}*"
    if address.version != 4:
        return f"{server_ip}*"
    return "".join(f"{int(octet):03d}*" for octet in str(address).split("."))


def dialplan_number(phone: PhoneEntry) -> str:
    """The phone's number as VICIdial shows it: "PJSIP/350a" -> "350a"."""
    return phone.dial.split("/", 1)[1].split("@", 1)[0]
