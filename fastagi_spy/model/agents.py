"""Agents: who they are, how they are logged in, and which channels are theirs."""

from __future__ import annotations

from typing import Literal, TypeAlias

__all__ = [
    "LOGIN_AGENT_POOL",
    "LOGIN_CONFERENCE",
    "LOGIN_DIRECTORY",
    "LOGIN_QUEUE",
    "LOGIN_VARIABLE",
    "Agent",
    "AgentStatus",
    "SessionSource",
    "extension_of",
    "normalise_interface",
]

AgentStatus: TypeAlias = Literal["Idle", "Ringing", "Talking", "Paused"]
SessionSource: TypeAlias = Literal["conference", "variable", "allocated"]

# Why an agent counts as logged in; logged in while any reason holds.
LOGIN_DIRECTORY = "directory"
LOGIN_QUEUE = "queue"
LOGIN_AGENT_POOL = "agent_pool"
LOGIN_CONFERENCE = "conference"
# A live leg of theirs carries FASTAGI_SPY_AGENT (see Tables.set_agent_var).
LOGIN_VARIABLE = "variable"


class Agent:
    """One agent on one server, from the directory or learned from AMI."""

    __slots__ = (
        "allocated",
        "channels",
        "configured",
        "devices",
        "in_directory",
        "last_var",
        "logins",
        "name",
        "number",
        "pause_reasons",
        "queues",
        "session_id",
        "session_source",
        "sorted_devices",
        "team",
    )

    def __init__(self, number: str, name: str, team: str, *, in_directory: bool) -> None:
        self.number = number
        self.name = name
        self.team = team
        self.in_directory = in_directory
        # Every device this agent owns now: ``configured`` plus those it logged in on.
        self.devices: set[str] = set()
        # The directory's devices for this agent (lent to another agent while they log in on one).
        self.configured: tuple[str, ...] = ()
        # ``devices`` sorted, replaced (never changed in place) when one is added.
        self.sorted_devices: tuple[str, ...] = ()
        self.logins: set[str] = set()
        # Queue name -> paused in that queue (app_queue pauses per queue).
        self.queues: dict[str, bool] = {}
        # Queue name -> why it is paused there (app_queue's PausedReason), when it said.
        self.pause_reasons: dict[str, str] = {}
        # Uniqueids of this agent's live device channels.
        self.channels: set[str] = set()
        self.allocated: int | None = None
        # The last FASTAGI_SPY_SESSION seen on one of its channels: a phone gets a
        # new channel per call, so the session must outlive each channel.
        self.last_var: str | None = None
        self.session_id: str | None = None
        self.session_source: SessionSource | None = None

    @property
    def logged_in(self) -> bool:
        """True while any login reason holds."""
        return bool(self.logins)

    @property
    def paused(self) -> bool:
        """True when paused in any queue it is a member of."""
        return True in self.queues.values()

    @property
    def pause_reason(self) -> str | None:
        """Why it is paused: the first queue's (by name) that gave a reason, else None."""
        reasons = self.pause_reasons
        if not reasons:
            return None
        return reasons[min(reasons)]


def normalise_interface(interface: str) -> str:
    """A queue member interface as a device: "Local/1001@agents/n" -> "Local/1001@agents".

    "/n" asks core_local.c not to optimise the Local channel away; it is not part
    of the channel name the device's calls get.
    """
    if interface.startswith("Local/") and interface.endswith("/n"):
        return interface[:-2]
    return interface


def extension_of(device: str) -> str:
    """The resource part of a device: "PJSIP/1001" -> "1001", "Local/1001@agents" -> "1001"."""
    _, slash, resource = device.partition("/")
    if not slash:
        return ""
    return resource.partition("@")[0]
