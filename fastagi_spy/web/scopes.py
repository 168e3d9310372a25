"""What a signed-in person may do on the web page: three scopes, each granted in the config.

- ``see_everyone``: every team's agents (otherwise only the agents of the person's teams);
- ``spy``: the Listen/Whisper/Barge buttons (and their action URL), for the person's modes;
- ``configure``: the settings page.

Pure functions of the person: the server asks them on every request, whatever the page shows.
An unknown scope name is refused, never allowed (a typo must not open a door).
"""

from __future__ import annotations

from typing import Literal

from fastagi_spy.domain import Directory, SupervisorEntry

Scope = Literal["see_everyone", "spy", "configure"]
SCOPES: frozenset[str] = frozenset({"see_everyone", "spy", "configure"})


def may(person: SupervisorEntry, scope: str) -> bool:
    """Whether ``person`` holds ``scope``; False for anything not a known scope."""
    if not person.active:
        return False
    if scope == "see_everyone":
        return person.see_everyone
    if scope == "spy":
        # A button needs a mode to press: spy without any mode grants nothing.
        return person.spy and bool(person.modes)
    if scope == "configure":
        return person.configure
    return False


def visible_agents(person: SupervisorEntry, directory: Directory) -> set[str] | None:
    """The agent numbers ``person`` may see: None means every agent (see_everyone)."""
    if may(person, "see_everyone"):
        return None
    if not person.active:
        return set()
    return {a.number for a in directory.agents if a.team in person.teams}
