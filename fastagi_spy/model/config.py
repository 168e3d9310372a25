"""Per-server rules for the model: session id range and how to spot customer legs."""

from __future__ import annotations

from dataclasses import dataclass

from fastagi_spy.model.queues import DayStart, utc_day_start

__all__ = ["LOGGED_IN_BY", "ModelConfig"]

LOGGED_IN_BY = ("registration", "login")


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """How one Asterisk server's live state is interpreted.

    ``session_range`` is the inclusive range of 7-digit session ids we hand out
    to agents whose site gives them none (VICIdial's MeetMe rooms are 86xxxxx).
    A call is *incoming* when the leg that started it (uniqueid == linkedid) is a
    customer leg: its first dialplan context is in ``trunk_contexts`` or its
    channel name starts with one of ``trunk_prefixes`` (for example
    "PJSIP/trunk-").  A call is *outgoing* when its starting leg is an agent's, or
    when a dialler placed it: the leg was originated in one of ``dialer_contexts``
    (for a Local channel, the context in its name counts too) or its name starts
    with one of ``dialer_prefixes``; its customer is the number that leg
    was sent to dial, less the longest of ``dialer_dial_prefixes`` it starts with
    (VICIdial's campaign dial prefix, such as "9" or "91").
    ``logged_in_by`` says what makes an agent logged in: "registration" (a directory
    agent while one of its configured devices is not reported unregistered, plus the
    logins below) or "login" (only a queue membership, an AgentLogin, or sitting in a
    7-digit room: for sites whose agents log in that way).
    ``session_quarantine`` is how long (seconds) an allocated id rests after its agent
    logs out before another agent is given it, unless the range would run dry.
    ``tombstones`` is how many hung-up uniqueids are remembered so that a late
    event for one cannot resurrect it.
    ``day_start`` says when the day that a time falls in began: the queues' answered
    and abandoned counts start again at it (the service passes local midnight).
    """

    session_range: tuple[int, int] = (8600000, 8699999)
    trunk_contexts: frozenset[str] = frozenset()
    trunk_prefixes: tuple[str, ...] = ()
    dialer_contexts: frozenset[str] = frozenset()
    dialer_prefixes: tuple[str, ...] = ()
    dialer_dial_prefixes: tuple[str, ...] = ()
    logged_in_by: str = "registration"
    session_quarantine: float = 600.0
    tombstones: int = 4096
    day_start: DayStart = utc_day_start

    def __post_init__(self) -> None:
        low, high = self.session_range
        if not (1_000_000 <= low <= high <= 9_999_999):
            raise ValueError(f"session_range {self.session_range} is not a 7-digit range")
        for key in ("trunk_prefixes", "dialer_prefixes"):
            if any(not prefix for prefix in getattr(self, key)):
                # An empty prefix would match every leg.
                raise ValueError(f"{key} may not contain an empty prefix")
        if any(not prefix.isdigit() or not prefix.isascii() for prefix in self.dialer_dial_prefixes):
            raise ValueError("dialer_dial_prefixes must be digits, such as '9' or '91'")
        if self.logged_in_by not in LOGGED_IN_BY:
            raise ValueError(f"logged_in_by must be one of {', '.join(LOGGED_IN_BY)}")
        if self.session_quarantine < 0:
            raise ValueError("session_quarantine must not be negative")
        if self.tombstones < 1:
            raise ValueError("tombstones must be positive")
