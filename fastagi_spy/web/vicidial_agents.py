"""Directory agents as the live map shows them now, for agent_status and logged_in_agents."""

from __future__ import annotations

from fastagi_spy.domain import AgentEntry, Directory
from fastagi_spy.model import LiveMap
from fastagi_spy.web.vicidial_status import LiveAgent

__all__ = ["LiveAgents"]


class LiveAgents:
    """Look-ups over every configured server, in configuration order.

    A stale server (AMI down) is never read: what it last showed may be long gone.
    """

    def __init__(self, live_map: LiveMap, directory: Directory) -> None:
        self.live_map = live_map
        self.directory = directory

    def entry(self, number: str) -> AgentEntry | None:
        """The directory's agent (VICIdial's vicidial_users row), logged in or not."""
        return self.directory.agent(number)

    def find(self, number: str) -> tuple[LiveAgent | None, bool]:
        """Where agent ``number`` is logged in now, and whether a stale server might say
        otherwise (True: we cannot tell "not logged in")."""
        entry = self.directory.agent(number)
        if entry is None:
            return None, False
        uncertain = False
        found: LiveAgent | None = None
        for name in self.live_map.server_names:
            state = self.live_map.server(name)
            if state.stale:
                uncertain = True
                continue
            view = state.agent_now(number)
            if view is not None and view.logged_in:
                found = _busier(found, LiveAgent(entry, view))
        return found, uncertain and found is None

    def logged_in(self) -> list[LiveAgent]:
        """Every directory agent logged in on a server that is not stale, by number."""
        found: dict[str, LiveAgent] = {}
        for name in self.live_map.server_names:
            state = self.live_map.server(name)
            if state.stale:
                continue
            for number in state.agent_numbers():
                entry = self.directory.agent(number)
                if entry is None:
                    continue
                view = state.agent_now(number)
                if view is not None and view.logged_in:
                    found[number] = _busier(found.get(number), LiveAgent(entry, view))
        return [found[n] for n in sorted(found)]


def _busier(first: LiveAgent | None, other: LiveAgent) -> LiveAgent:
    """An agent logged in on two servers is reported where they are on a call: idle on one
    and talking on the other is INCALL, with the talking server's session."""
    if first is None or (first.view.call is None and other.view.call is not None):
        return other
    return first
