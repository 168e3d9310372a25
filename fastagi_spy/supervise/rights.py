"""Whether a supervisor may use a mode on an agent: pure, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from fastagi_spy.domain import AgentEntry, Mode, SupervisorEntry


@dataclass(frozen=True)
class Decision:
    """The answer and its reason: "ok", "never_spy", "team" or "mode"."""

    allowed: bool
    reason: str


def may_spy(
    supervisor: SupervisorEntry, agent: AgentEntry, mode: Mode, never_spy: frozenset[str]
) -> Decision:
    """Check never_spy first (it overrides every grant), then team, then mode."""
    if agent.number in never_spy:
        return Decision(allowed=False, reason="never_spy")
    if agent.team not in supervisor.teams:
        return Decision(allowed=False, reason="team")
    if mode not in supervisor.modes:
        return Decision(allowed=False, reason="mode")
    return Decision(allowed=True, reason="ok")


def may_switch_modes(supervisor: SupervisorEntry) -> bool:
    """Whether ChanSpy's `d` option is safe: it lets DTMF 4/5/6 pick any of the three modes."""
    return supervisor.modes >= frozenset(Mode)
