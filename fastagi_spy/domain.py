"""The vocabulary every layer shares: modes, who is who, devices, and why a target fails.

Agents, supervisors, their devices and teams, and known customers: the config loader
builds a `Directory`; everything here is immutable, does no I/O and imports nothing of
ours. Numbers and device names are compared as exact strings, so agent "10" never
matches "100".
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, TypeAlias, TypeVar

# Why a target resolved to no channel ("ok" when it did).
Reason: TypeAlias = Literal["ok", "not_found", "not_logged_in", "not_on_call", "ambiguous", "stale"]


class Mode(enum.Enum):
    """The three ways a supervisor can join an agent's call."""

    LISTEN = "listen"
    WHISPER = "whisper"
    BARGE = "barge"


@dataclass(frozen=True)
class AgentEntry:
    """An agent; `devices` are device names such as "PJSIP/1001" or "Local/1001@agents"."""

    number: str
    name: str
    team: str
    devices: tuple[str, ...] = ()


@dataclass(frozen=True)
class SupervisorEntry:
    """A person: a supervisor on the phones (teams, modes, devices, a PIN in the store) and/or
    a user of the HTTP API (a password in the store). `number` is also their VICIdial `user`.

    The fields after `devices` are VICIdial's (vicidial_users): `user_level` 0-9, `api`
    (vdc_agent_api_access), `functions` (api_allowed_functions; None = ALL_FUNCTIONS),
    `active`, `view_reports`, and `phone`, the phone_login of their own phone.
    The last three are the web page's scopes (web/scopes.py): `see_everyone` (all teams'
    agents, not only their own), `spy` (the Listen/Whisper/Barge buttons, for their `modes`),
    `configure` (the settings page). All default to False: a right is granted, never assumed.
    """

    number: str
    name: str
    teams: frozenset[str]
    modes: frozenset[Mode]
    devices: tuple[str, ...] = ()
    user_level: int = 7
    api: bool = False
    functions: frozenset[str] | None = None
    active: bool = True
    view_reports: bool = True
    phone: str | None = None
    see_everyone: bool = False
    spy: bool = False
    configure: bool = False

    def may_use(self, function: str) -> bool:
        """Whether api_allowed_functions lets this person call `function`."""
        return self.functions is None or function in self.functions


@dataclass(frozen=True)
class PhoneEntry:
    """A supervisor's phone that blind_monitor rings: VICIdial's `phone_login`, the device it
    is dialled as (e.g. "PJSIP/350a") and the [[asterisk]] server it registers on."""

    login: str
    dial: str
    server: str


def device_of_channel(channel_name: str) -> str:
    """Map a live channel name to its device name.

    "PJSIP/2001-0000000a" -> "PJSIP/2001"; "Local/2001@phones-0000001b;2" -> "Local/2001@phones".
    The cut is at the LAST "-" because a resource name may itself contain dashes.
    Both halves of a Local pair are the same device: core_unreal.c makes ";1" the half
    handed back to Dial/Queue/Originate and ";2" the half running the Local target's
    dialplan, and which of them faces the call depends on the topology.
    """
    name = channel_name
    head, sep, tail = name.rpartition(";")
    if sep and tail.isdigit():
        # Local channels carry a ";1"/";2" half marker after the sequence number.
        name = head
    head, sep, _ = name.rpartition("-")
    return head if sep else name


_K = TypeVar("_K")
_V = TypeVar("_V")


def _unique_index(pairs: Iterable[tuple[_K, _V]], what: str) -> dict[_K, _V]:
    # A duplicate would make a lookup silently pick one of two people: refuse it instead.
    index: dict[_K, _V] = {}
    for key, value in pairs:
        if key in index:
            raise ValueError(f"duplicate {what} {key!r} in directory")
        index[key] = value
    return index


def _empty_customers() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True)
class Directory:
    """The whole directory with exact-string lookups, indexed once at construction.

    Raises ValueError when two agents (or two supervisors) share a number or a device,
    because a lookup could then not tell them apart.
    """

    agents: tuple[AgentEntry, ...]
    supervisors: tuple[SupervisorEntry, ...]
    never_spy: frozenset[str]
    customers: Mapping[str, str] = field(default_factory=_empty_customers)

    _agents: Mapping[str, AgentEntry] = field(init=False, repr=False, compare=False)
    _supervisors: Mapping[str, SupervisorEntry] = field(init=False, repr=False, compare=False)
    _agent_devices: Mapping[str, AgentEntry] = field(init=False, repr=False, compare=False)
    _supervisor_devices: Mapping[str, SupervisorEntry] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        # Frozen dataclass: indexes and the defensive copy are set once, here.
        object.__setattr__(self, "customers", MappingProxyType(dict(self.customers)))
        object.__setattr__(
            self, "_agents", _unique_index(((a.number, a) for a in self.agents), "agent number")
        )
        object.__setattr__(
            self,
            "_supervisors",
            _unique_index(((s.number, s) for s in self.supervisors), "supervisor number"),
        )
        object.__setattr__(
            self,
            "_agent_devices",
            _unique_index(((d, a) for a in self.agents for d in a.devices), "agent device"),
        )
        object.__setattr__(
            self,
            "_supervisor_devices",
            _unique_index(
                ((d, s) for s in self.supervisors for d in s.devices), "supervisor device"
            ),
        )

    def agent(self, number: str) -> AgentEntry | None:
        """The agent with exactly this number."""
        return self._agents.get(number)

    def supervisor(self, number: str) -> SupervisorEntry | None:
        """The supervisor with exactly this number."""
        return self._supervisors.get(number)

    def person(self, user: str) -> SupervisorEntry | None:
        """The person whose VICIdial `user` (their number) is exactly `user`."""
        return self._supervisors.get(user)

    def supervisor_for_device(self, device: str) -> SupervisorEntry | None:
        """The supervisor owning exactly this device (use `device_of_channel` on channel names)."""
        return self._supervisor_devices.get(device)

    def agent_for_device(self, device: str) -> AgentEntry | None:
        """The agent owning exactly this device (use `device_of_channel` on channel names)."""
        return self._agent_devices.get(device)

    def customer_name(self, number: str) -> str | None:
        """The configured name for a customer number, if any."""
        return self.customers.get(number)
