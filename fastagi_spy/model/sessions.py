"""Session ids: which agent holds which 7-digit id, and the ids we hand out.

An agent's session is, in order: the 7-digit ConfBridge/MeetMe room one of
its channels sits in (VICIdial's conf_exten), the FASTAGI_SPY_SESSION the
site's dialplan set on one of its channels, else an id allocated at login.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Container, Mapping

from fastagi_spy.model.agents import Agent, SessionSource
from fastagi_spy.model.channels import Channel

__all__ = ["SessionAllocator", "SessionBook"]


class SessionAllocator:
    """Hands out the lowest free id of an inclusive range, deterministically.

    A released id rests in quarantine for ``quarantine`` seconds before it is handed
    out again: a Live Monitor row, a VICIdial client or a supervisor's memory may still
    hold it, and must not reach the next agent through it.  Only when the range would
    otherwise run dry is the id released longest ago reused early.

    ``_hint`` never passes a free id, so a scan from it finds the lowest one;
    allocation is rare (a login), so a short scan over used ids is fine.
    """

    __slots__ = ("_high", "_hint", "_low", "_quarantine", "_resting", "_used")

    def __init__(self, low: int, high: int, quarantine: float = 0.0) -> None:
        self._low = low
        self._high = high
        self._hint = low
        self._used: set[int] = set()
        self._quarantine = quarantine
        # Released id -> (when, the agent who held it), oldest release first.
        self._resting: OrderedDict[int, tuple[float, str]] = OrderedDict()

    def allocate(self, taken: Container[str], now: float = 0.0, holder: str = "") -> int | None:
        """The lowest id neither allocated, resting, nor in ``taken`` (ids claimed by the site).

        An id resting from ``holder`` itself goes back to them first: it names nobody else.
        """
        resting = self._resting
        while resting:
            session, (since, _) = next(iter(resting.items()))
            if now - since < self._quarantine:
                break
            del resting[session]
        if holder:
            for session, (_, last) in resting.items():
                if last == holder and str(session) not in taken:
                    del resting[session]
                    self._used.add(session)
                    return session
        candidate = self._hint
        skipped: int | None = None
        while candidate <= self._high:
            if candidate in self._used:
                candidate += 1
                continue
            if str(candidate) in taken or candidate in resting:
                # Claimed through a conference room or the session variable, or still
                # resting: not ours to give now, but it may come free, so the hint stays.
                if skipped is None:
                    skipped = candidate
                candidate += 1
                continue
            self._used.add(candidate)
            self._hint = skipped if skipped is not None else candidate + 1
            return candidate
        # Dry: the id that has rested longest, rather than no session at all.
        for session in resting:
            if str(session) not in taken:
                del resting[session]
                self._used.add(session)
                return session
        return None

    def claim(self, session: int) -> bool:
        """Reserve one specific id (kept across a resync); False if out of range or used."""
        if not (self._low <= session <= self._high) or session in self._used:
            return False
        self._used.add(session)
        self._resting.pop(session, None)
        return True

    def release(self, session: int, now: float, holder: str = "") -> None:
        """Give an id back: it rests in quarantine from ``now``."""
        if session in self._used:
            self._used.remove(session)
            self._hint = min(self._hint, session)
            if self._quarantine > 0:
                self._resting[session] = (now, holder)
                self._resting.move_to_end(session)

    def resting(self) -> dict[int, tuple[float, str]]:
        """Ids in quarantine: when each was released, and by whom (kept across a resync)."""
        return dict(self._resting)

    def rest(self, resting: Mapping[int, tuple[float, str]]) -> None:
        """Put ids released before a resync back in quarantine, oldest first."""
        for session, rested in sorted(resting.items(), key=lambda item: item[1][0]):
            if self._low <= session <= self._high and session not in self._used:
                self._resting[session] = rested


class SessionBook:
    """Session ids of one server: holders, allocation, and which ids changed."""

    __slots__ = ("_allocator", "_kept", "holders", "touched")

    def __init__(
        self,
        session_range: tuple[int, int],
        kept: Mapping[str, int] | None = None,
        quarantine: float = 0.0,
    ) -> None:
        low, high = session_range
        self._allocator = SessionAllocator(low, high, quarantine)
        # Session id -> agent numbers holding it (two only if the site gave both the same id).
        self.holders: dict[str, set[str]] = {}
        # Ids whose holder or channel may have changed since last reported.
        self.touched: set[str] = set()
        # Allocated ids kept across a resync for agents still logged in.
        self._kept: dict[str, int] = {}
        for number, session in (kept or {}).items():
            if self._allocator.claim(session):
                self._kept[number] = session

    @property
    def allocator(self) -> SessionAllocator:
        return self._allocator

    def refresh(self, agent: Agent, channels: Mapping[str, Channel], now: float) -> None:
        """Recompute ``agent``'s session id from its login and its live channels."""
        old = agent.session_id
        new: str | None = None
        source: SessionSource | None = None
        if not agent.logins:
            self._release(agent, now)
            # A logout ends the session the dialplan named, too.
            agent.last_var = None
        else:
            new, source = _explicit(agent, channels)
            if new is not None:
                self._release(agent, now)
            else:
                if agent.allocated is None:
                    agent.allocated = self._allocate(agent, now)
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

    def _release(self, agent: Agent, now: float) -> None:
        if agent.allocated is not None:
            self._allocator.release(agent.allocated, now, agent.number)
            agent.allocated = None

    def _allocate(self, agent: Agent, now: float) -> int | None:
        kept = self._kept.pop(agent.number, None)
        if kept is not None:
            return kept
        return self._allocator.allocate(self.holders, now, agent.number)

    def release_unused_kept(self, now: float) -> None:
        """After a resync: ids kept for agents that did not come back rest, then are free."""
        for number, session in self._kept.items():
            self._allocator.release(session, now, number)
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
