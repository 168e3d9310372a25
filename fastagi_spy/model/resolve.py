"""The answer to "which exact channel does this target mean?"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

__all__ = ["Reason", "Resolution"]

Reason: TypeAlias = Literal["ok", "not_found", "not_logged_in", "not_on_call", "ambiguous", "stale"]


@dataclass(frozen=True, slots=True)
class Resolution:
    """A resolved spy target, or the reason there is none.

    Only ``ok`` answers carry ``channel``: the exact channel name to hand to
    ChanSpy, taken from our own tracked state, never from the caller.
    """

    ok: bool
    reason: Reason
    server: str | None = None
    agent_number: str | None = None
    session_id: str | None = None
    channel: str | None = None
    uniqueid: str | None = None

    @classmethod
    def refuse(
        cls,
        reason: Reason,
        server: str | None = None,
        agent_number: str | None = None,
        session_id: str | None = None,
    ) -> Resolution:
        """A negative answer (``ok`` False, no channel)."""
        return cls(False, reason, server, agent_number, session_id)
