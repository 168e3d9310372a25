"""Least privilege for the AMI account: what the enabled features need, and what it has.

Asterisk tells a session its write permission only indirectly: ``ListCommands`` lists the
actions whose authority shares a class with the account's ``write`` (manager.c), each with
its classes, ``(Priv: call,reporting,all)``. An action listed with one class alone proves
that class. The ``read`` permission is not shown over AMI at all, so it comes from
``manager.conf`` when the admin points us at it (``FullyBooted`` after login proves
``system``, nothing more).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from fastagi_spy.config import Config
from fastagi_spy.supervise.rights import may_switch_modes

# manager.c's permission classes (perms[]), "all" aside.
CLASSES = ("system", "call", "log", "verbose", "command", "agent", "user", "config", "dtmf",
           "reporting", "cdr", "dialplan", "originate", "agi", "cc", "aoc", "test",
           "security", "message")

# The AMI actions we send, and the one class of each action's authority we ask for.
# (Priv of each in Asterisk 22: CoreShowChannels system,reporting; DeviceStateList
# call,reporting; QueueStatus none; Hangup system,call; Agents agent; Originate originate.)
ALWAYS_WRITE = {
    "reporting": "CoreShowChannels and DeviceStateList for the resync",
    "call": "Hangup of the spies we started, at shutdown and after a crash",
}
NOTICE_WRITE = {"originate": "Originate plays the join notice ([security] notice is set)"}
# Granted or not, fine: without it the resync cannot list AgentLogin agents (app_agent_pool),
# which only sites using AgentLogin have.
OPTIONAL_WRITE = {"agent": "Agents lists AgentLogin logins after a reconnect"}
ALWAYS_READ = {
    "system": "FullyBooted and Shutdown (resync, reconnect)",
    "call": "channels, bridges, ChanSpyStart and ChanSpyStop",
    "agent": "queue members and agent logins",
    "dialplan": "VarSet of FASTAGI_SPY_SESSION",
}
SWITCH_READ = {"dtmf": "the 4/5/6 mode switches of supervisors allowed all three modes"}

_PRIV = re.compile(r"\(Priv: ([^)]*)\)\s*$")


@dataclass(frozen=True)
class Needs:
    """Each class the account needs, with why (for the report)."""

    read: Mapping[str, str]
    write: Mapping[str, str]
    optional_write: Mapping[str, str]  # neither missing nor too much


def needs(config: Config) -> Needs:
    read = dict(ALWAYS_READ)
    if any(may_switch_modes(s) for s in config.directory.supervisors):
        read.update(SWITCH_READ)
    write = dict(ALWAYS_WRITE)
    if config.security.notice:
        write.update(NOTICE_WRITE)
    return Needs(read, write, dict(OPTIONAL_WRITE))


def why_not_needed(name: str) -> str:
    """The reason a class the features could use is off, for a warning."""
    if name in SWITCH_READ:
        return "no supervisor may switch modes (only those with all three modes can)"
    if name in NOTICE_WRITE:
        return "[security] notice is off"
    return "fastagi-spy never uses it"


def perm_list(text: str) -> frozenset[str]:
    """``read =`` / ``write =`` as Asterisk reads it: "all" is every class, "none" none."""
    names = {part.strip().lower() for part in text.split(",") if part.strip()}
    if "all" in names:
        return frozenset(CLASSES)
    return frozenset(names & set(CLASSES))


def proven_write(listing: Iterable[tuple[str, str]]) -> tuple[frozenset[str], frozenset[str]]:
    """From ListCommands' headers: (classes the account surely has, actions it may run)."""
    proven: set[str] = set()
    actions: set[str] = set()
    for action, text in listing:
        found = _PRIV.search(text)
        if found is None:
            continue
        actions.add(action)
        # "call,reporting,all": every action lists "all" too; "<none>": anyone may run it.
        classes = {c.strip().lower() for c in found.group(1).split(",")} & set(CLASSES)
        if len(classes) == 1:
            proven |= classes
    return frozenset(proven), frozenset(actions)


@dataclass(frozen=True)
class Account:
    """One account's permissions as manager.conf grants them."""

    read: frozenset[str]
    write: frozenset[str]
    source: Path


class ManagerConfError(Exception):
    """manager.conf cannot be read, or has no such account; the message says which."""


def account_from_manager_conf(path: Path, username: str) -> Account:
    """The ``[username]`` section's read/write, following ``#include`` (last line wins,
    as in manager.c). Templates are not followed: say so rather than guess."""
    section: str | None = None
    values: dict[str, str] = {}
    found = False
    for line in _lines(path, depth=0):
        if line.startswith("["):
            header = line[1:].split("]", 1)
            section = header[0].strip()
            if section == username:
                found = True
                if header[1].strip().startswith("("):
                    raise ManagerConfError(
                        f"{path}: [{username}] uses a template; doctor reads plain sections only")
            continue
        if section == username and "=" in line:
            key, value = (part.strip() for part in line.split("=", 1))
            if key.lower() in ("read", "write"):
                values[key.lower()] = value.lstrip(">").strip()
    if not found:
        raise ManagerConfError(f"{path}: no [{username}] account")
    return Account(perm_list(values.get("read", "")), perm_list(values.get("write", "")), path)


def _lines(path: Path, depth: int) -> Iterable[str]:
    if depth > 8:
        raise ManagerConfError(f"{path}: #include nested too deep")
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise ManagerConfError(f"cannot read {path}: {exc.strerror}") from None
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].strip()
        if line.startswith("#include"):
            name = line[len("#include"):].strip().strip('"<>')
            yield from _lines(path.parent / name, depth + 1)
        elif line:
            yield line
