"""agent_status and logged_in_agents rows from the live map, in VICIdial's field order.

VICIdial reads ``vicidial_live_agents``; we read the AMI-tracked map. Its statuses map onto
VICIdial's: on an answered call INCALL (VICIdial keeps INCALL until the call ends, even when
the agent asked for a pause), a call ringing to the agent QUEUE, paused (QueueMemberPause)
PAUSED, otherwise READY. Fields we have no source for (lead, campaign, calls today, user
level, pause code, sub-status, vendor lead code, computer IP) are empty; the README lists them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from fastagi_spy.domain import AgentEntry
from fastagi_spy.model.views import AgentView

__all__ = [
    "AGENT_STATUS_HEADER",
    "LOGGED_IN_HEADER",
    "LOGGED_IN_SUB_HEADER",
    "LiveAgent",
    "agent_status_line",
    "delimiter",
    "logged_in_line",
    "vicidial_status",
]

AGENT_STATUS_HEADER = ("status", "callerid", "lead_id", "campaign_id", "calls_today",
                       "full_name", "user_group", "user_level", "pause_code",
                       "real_time_sub_status", "phone_number", "vendor_lead_code", "session_id")
LOGGED_IN_HEADER = ("user", "campaign_id", "session_id", "status", "lead_id", "callerid",
                    "calls_today", "full_name", "user_group", "user_level")
LOGGED_IN_SUB_HEADER = ("pause_code", "sub_status")

_DELIMITERS = {"csv": ",", "tab": "\t", "pipe": "|"}


def delimiter(stage: str) -> str:
    """VICIdial's ``stage``: csv, tab or pipe; anything else is pipe."""
    return _DELIMITERS.get(stage, "|")


@dataclass(frozen=True)
class LiveAgent:
    """A directory agent as the live map shows it on one server."""

    entry: AgentEntry
    view: AgentView


def vicidial_status(view: AgentView) -> str:
    """READY, QUEUE, INCALL or PAUSED for our view of an agent."""
    call = view.call
    if call is not None and call.answered_at is not None:
        return "INCALL"
    if view.paused:
        return "PAUSED"
    if call is not None:
        return "QUEUE"  # ringing to the agent: VICIdial's "call sent to this agent"
    return "READY"


def _clean(value: str | None, dl: str) -> str:
    # Our own data (names, numbers from AMI) must not break a row: no delimiter, no line end.
    text = value or ""
    if dl in text or "\r" in text or "\n" in text:
        return text.replace(dl, " ").replace("\r", " ").replace("\n", " ")
    return text


def _fields(agent: LiveAgent) -> tuple[str, str, str, str]:
    view = agent.view
    call = view.call
    callerid = call.id if call is not None else ""
    number = call.customer_number if call is not None else ""
    return vicidial_status(view), callerid, number, view.session_id or ""


def agent_status_line(agent: LiveAgent, dl: str, include_ip: bool) -> str:
    status, callerid, number, session = _fields(agent)
    row = [status, callerid, "", "", "", agent.entry.name, agent.entry.team, "", "", "",
           number, "", session]
    if include_ip:
        row.append("")  # computer_ip: we have no agent screen to log in from
    return dl.join([_clean(v, dl) for v in row])


def logged_in_line(agent: LiveAgent, dl: str, sub_status: bool) -> str:
    status, callerid, _, session = _fields(agent)
    row = [agent.entry.number, "", session, status, "", callerid, "", agent.entry.name,
           agent.entry.team, ""]
    if sub_status:
        row += ["", ""]
    return dl.join([_clean(v, dl) for v in row])


def header_line(names: Sequence[str], dl: str) -> str:
    return dl.join(names)


def visible(agents: Iterable[LiveAgent], teams: frozenset[str]) -> list[LiveAgent]:
    """The agents in the caller's teams (VICIdial's admin_viewable_groups)."""
    return [a for a in agents if a.entry.team in teams]
