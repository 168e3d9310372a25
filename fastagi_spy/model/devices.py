"""Which agent a device belongs to right now, and why.

A directory agent's configured devices are theirs by default.  A device learned from
AMI (a queue member's interface, the phone that ran AgentLogin) belongs to the agent
who logged in on it only while that login lasts: a logoff, a QueueMemberRemoved, or
another agent logging in on the same phone takes it away.  Then the phone goes back to
the agent it is configured for, if any, so a hot-desk phone never keeps spying on
whoever used it last.
"""

from __future__ import annotations

from fastagi_spy.model.agents import extension_of

__all__ = ["DeviceBook"]

# Device states (main/devicestate.c ast_devstate_str) that say nobody is registered.
UNREGISTERED_STATES = frozenset(("UNAVAILABLE", "INVALID"))


class DeviceBook:
    """Device -> owning agent number, with the logins that hold each learned device."""

    __slots__ = ("configured", "ext_agents", "owner", "reasons", "unavailable")

    def __init__(self) -> None:
        # Exact device name -> agent number; never a prefix match.
        self.owner: dict[str, str] = {}
        # Extension ("1001" of "PJSIP/1001") -> agent numbers owning such a device.
        self.ext_agents: dict[str, set[str]] = {}
        # Device -> the directory agent it is configured for.
        self.configured: dict[str, str] = {}
        # Learned device -> the logins ("queue:<name>", "agent_pool") that hold it.
        self.reasons: dict[str, set[str]] = {}
        # Devices Asterisk last reported unregistered (DeviceStateChange).
        self.unavailable: set[str] = set()

    def configure(self, device: str, number: str) -> bool:
        """A directory agent's own device; False when another agent has it already."""
        if not device or device in self.owner:
            return False
        self.configured[device] = number
        return True

    def login(self, device: str, number: str, reason: str) -> bool:
        """Agent ``number`` logged in on ``device``; True when the owner changes."""
        if self.owner.get(device) == number:
            if device in self.reasons or self.configured.get(device) != number:
                self.reasons.setdefault(device, set()).add(reason)
            return False
        self.reasons[device] = {reason}
        return True

    def logout(self, device: str, number: str, reason: str) -> str | None:
        """Agent ``number``'s login ``reason`` on ``device`` ended.

        Returns who owns the device now when that changes ("" for nobody), else None.
        """
        if self.owner.get(device) != number:
            return None
        reasons = self.reasons.get(device)
        if reasons is None or reason not in reasons:
            return None
        reasons.discard(reason)
        if reasons:
            return None
        del self.reasons[device]
        configured = self.configured.get(device, "")
        return None if configured == number else configured

    def set_owner(self, device: str, number: str | None) -> str | None:
        """Record the new owner (None: nobody); returns the previous one."""
        old = self.owner.pop(device, None)
        extension = extension_of(device)
        if old is not None and extension:
            owners = self.ext_agents.get(extension)
            if owners is not None:
                owners.discard(old)
                if not owners:
                    del self.ext_agents[extension]
        if number is not None:
            self.owner[device] = number
            if extension:
                self.ext_agents.setdefault(extension, set()).add(number)
        else:
            self.reasons.pop(device, None)
        return old
