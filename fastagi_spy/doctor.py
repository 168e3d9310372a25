"""``fastagi-spy doctor``: log in to each configured AMI as the server would, and report an
account that can do more than the enabled features need (or less).

One short connection per server: banner, MD5 login, ``ListCommands``, ``Logoff``. Nothing
is changed on the PBX.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.endpoints import clientFromString, connectProtocol

from fastagi_spy.amiperms import (
    Account,
    ManagerConfError,
    Needs,
    account_from_manager_conf,
    needs,
    proven_write,
    why_not_needed,
)
from fastagi_spy.config import AsteriskServer, Config
from fastagi_spy.net.ami import AMIProtocol
from fastagi_spy.wire.ami import AMIMessage, md5_key

TIMEOUT = 10.0  # seconds for the connect, the banner and each action


class Unreachable(Exception):
    """The AMI could not be reached or would not log us in; the message says which."""


@dataclass(frozen=True)
class Session:
    """What one login showed."""

    version: str
    proven_write: frozenset[str]
    actions: frozenset[str]
    saw_fully_booted: bool  # sent only to sessions that may read "system"


@dataclass
class ServerReport:
    server: AsteriskServer
    lines: list[str] = field(default_factory=list)
    problems: int = 0

    def note(self, text: str) -> None:
        self.lines.append(f"  {text}")

    def problem(self, level: str, text: str) -> None:
        self.problems += 1
        self.lines.append(f"  {level}: {text}")


async def probe(reactor: Any, server: AsteriskServer) -> Session:
    """Log in as the config's account and list what it may run."""
    where = f"AMI of {server.name} at {server.ami_host}:{server.ami_port}"
    events: list[AMIMessage] = []
    proto = AMIProtocol(reactor, events.extend, "doctor")
    try:
        await connectProtocol(clientFromString(reactor, server.endpoint), proto).addTimeout(
            TIMEOUT, reactor)
    except Exception as exc:  # refused, unreachable, DNS, timeout: all one answer
        raise Unreachable(f"cannot reach the {where}: {_reason(exc)}") from None
    try:
        try:
            banner = await proto.banner.addTimeout(TIMEOUT, reactor)
            challenge = await proto.call("Challenge", [("AuthType", "MD5")], TIMEOUT)
            key = md5_key(challenge.response.get("Challenge") or "", server.ami_secret)
            login = await proto.send_action(
                "Login", [("AuthType", "MD5"), ("Username", server.ami_username), ("Key", key)],
                TIMEOUT)
            if not login.success:
                message = login.response.get("Message") or "refused"
                raise Unreachable(f"{where}: login as {server.ami_username!r} refused: {message}"
                                  " (check ami_username / ami_secret, and the account's permit=)")
            listing = await proto.call("ListCommands", [], TIMEOUT)
        except Unreachable:
            raise
        except Exception as exc:
            raise Unreachable(f"{where}: {_reason(exc)}") from None
        proven, actions = proven_write(listing.response.headers)
        booted = any(e.event == "FullyBooted" for e in events)
        return Session(banner.version, proven, actions, booted)
    finally:
        proto.transport.loseConnection()  # type: ignore[union-attr]
        await proto.lost


def _reason(exc: BaseException) -> str:
    if isinstance(exc, defer.TimeoutError):
        return f"no answer within {TIMEOUT:g} s"
    return str(exc) or type(exc).__name__


def assess(report: ServerReport, need: Needs, session: Session, account: Account | None) -> None:
    """Compare what the account has with what the features need."""
    report.note(f"logged in (AMI {session.version}); the features need "
                f"read = {','.join(need.read)}  write = {','.join(need.write)}")
    write = set(session.proven_write) | (set(account.write) if account else set())
    for name in sorted(write - set(need.write) - set(need.optional_write)):
        report.problem("WARNING", f"write '{name}' is more than needed: {why_not_needed(name)}")
    for name, why in need.write.items():
        if name not in write:
            report.problem("ERROR", f"write '{name}' is missing: {why}")
    if account is None:
        if not session.saw_fully_booted:
            report.problem("ERROR", f"read 'system' is missing: {need.read['system']}")
        report.note("read permissions not checked: Asterisk does not show them over AMI; "
                    "pass --manager-conf /etc/asterisk/manager.conf")
        return
    for name in sorted(account.read - set(need.read)):
        report.problem("WARNING", f"read '{name}' is more than needed: {why_not_needed(name)}")
    for name, why in need.read.items():
        if name not in account.read:
            report.problem("ERROR", f"read '{name}' is missing: {why}")
    unseen = session.proven_write - account.write
    if unseen:
        report.note(f"note: the live account may write {','.join(sorted(unseen))}, which "
                    f"{account.source} does not grant: `manager reload` pending?")


async def run(reactor: Any, config: Config, manager_conf: Path | None,
              only: str | None = None) -> list[ServerReport]:
    need = needs(config)
    reports = []
    for server in config.asterisk:
        if only is not None and server.name != only:
            continue
        report = ServerReport(server)
        reports.append(report)
        try:
            account = (account_from_manager_conf(manager_conf, server.ami_username)
                       if manager_conf is not None else None)
            session = await probe(reactor, server)
        except (Unreachable, ManagerConfError) as exc:
            report.problem("ERROR", str(exc))
            continue
        assess(report, need, session, account)
    return reports


def render(reports: Sequence[ServerReport]) -> str:
    out = []
    for report in reports:
        s = report.server
        verdict = "OK" if report.problems == 0 else f"{report.problems} problem(s)"
        out.append(f"{s.name}: AMI {s.ami_host}:{s.ami_port} as {s.ami_username}: {verdict}")
        out.extend(report.lines)
    return "\n".join(out)
