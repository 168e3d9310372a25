"""Session ids: which agent holds which 7-digit id, and the ids we hand out.

An agent's session is, in order: the 7-digit ConfBridge/MeetMe room one of
its channels sits in (VICIdial's conf_exten), the FASTAGI_SPY_SESSION the
site's dialplan set on one of its channels, else an id allocated at login.
"""

from __future__ import annotations

from collections.abc import Container, Mapping

from fastagi_spy.model.agents import Agent, SessionSource
from fastagi_spy.model.channels import Channel

__all__ = ["SessionAllocator", "SessionBook"]


class SessionAllocator:
    """Hands out the lowest free id of an inclusive range, deterministically.

    ``_hint`` never passes a free id, so a scan from it finds the lowest one;
    allocation is rare (a login), so a short scan over used ids is fine.
    """

    __slots__ = ("_high", "_hint", "_low", "_used")

    def __init__(self, low: int, high: int) -> None:
        self._low = low
        self._high = high
        self._hint = low
        self._used: set[int] = set()

    def allocate(self, taken: Container[str]) -> int | None:
        """The lowest id neither allocated nor in ``taken`` (ids claimed by the site)."""
        candidate = self._hint
        skipped: int | None = None
        while candidate <= self._high:
            if candidate in self._used:
                candidate += 1
                continue
            if str(candidate) in taken:
                # Claimed through a conference room or the session variable: not
                # ours to give, but it may come free again, so the hint stays.
                if skipped is None:
                    skipped = candidate
                candidate += 1
                continue
            self._used.add(candidate)
            self._hint = skipped if skipped is not None else candidate + 1
            return candidate
        return None

    def claim(self, session: int) -> bool:
        """Reserve one specific id (kept across a resync); False if out of range or used."""
        if not (self._low <= session <= self._high) or session in self._used:
            return False
        self._used.add(session)
        return True

    def release(self, session: int) -> None:
        """Give an id back."""
        if session in self._used:
            self._used.remove(session)
            self._hint = min(self._hint, session)


class SessionBook:
    """Session ids of one server: holders, allocation, and which ids changed."""

    __slots__ = ("_allocator", "_kept", "holders", "touched")

    def __init__(
        self, session_range: tuple[int, int], kept: Mapping[str, int] | None = None
    ) -> None:
        low, high = session_range
        self._allocator = SessionAllocator(low, high)
        # Session id -> agent numbers holding it (two only if the site gave both the same id).
        self.holders: dict[str, set[str]] = {}
        # Ids whose holder or channel may have changed since last reported.
        self.touched: set[str] = set()
        # Allocated ids kept across a resync for agents still logged in.
        self._kept: dict[str, int] = {}
        for number, session in (kept or {}).items():
            if self._allocator.claim(session):
                self._kept[number] = session

    def refresh(self, agent: Agent, channels: Mapping[str, Channel]) -> None:
        """Recompute ``agent``'s session id from its login and its live channels."""
        old = agent.session_id
        new: str | None = None
        source: SessionSource | None = None
        if not agent.logins:
            self._release(agent)
            # A logout ends the session the dialplan named, too.
            agent.last_var = None
        else:
            new, source = _explicit(agent, channels)
            if new is not None:
                self._release(agent)
            else:
                if agent.allocated is None:
                    agent.allocated = self._allocate(agent)
                if agent.allocated is not None:
                    new, source = str(agent.allocated), "allocated"
        if source != agent.session_source and new is not None:
            self.touched.add(new)
        agent.session_source = source
        if new == old:
            return
        if old is not None:
            holders = self.holders.get(old)
            if holders is not None:
                holders.discard(agent.number)
                if not holders:
                    del self.holders[old]
            self.touched.add(old)
        if new is not None:
            self.holders.setdefault(new, set()).add(agent.number)
            self.touched.add(new)
        agent.session_id = new

    def _release(self, agent: Agent) -> None:
        if agent.allocated is not None:
            self._allocator.release(agent.allocated)
            agent.allocated = None

    def _allocate(self, agent: Agent) -> int | None:
        kept = self._kept.pop(agent.number, None)
        if kept is not None:
            return kept
        return self._allocator.allocate(self.holders)

    def release_unused_kept(self) -> None:
        """After a resync: ids kept for agents that did not come back are free again."""
        for session in self._kept.values():
            self._allocator.release(session)
        self._kept.clear()


def _explicit(
    agent: Agent, channels: Mapping[str, Channel]
) -> tuple[str | None, SessionSource | None]:
    """The session the site gave the agent: its room, else the dialplan's variable."""
    room: str | None = None
    for uniqueid in agent.channels:
        candidate = channels[uniqueid].room
        if candidate is not None and (room is None or candidate < room):
            room = candidate
    if room is not None:
        return room, "conference"
    if agent.last_var is not None:
        return agent.last_var, "variable"
    return None, None
