"""One slotted record per live Asterisk channel, plus channel-name rules."""

from __future__ import annotations

from fastagi_spy.domain import device_of_channel

__all__ = [
    "RINGING_STATES",
    "STATE_RING",
    "STATE_RINGING",
    "Channel",
    "first_half_name",
    "is_second_half",
]

# main/channel.c ast_state2str: 4 "Ring" (a call came in and is not answered yet),
# 5 "Ringing" (the far end is alerting).
STATE_RING = 4
STATE_RINGING = 5
RINGING_STATES = frozenset((STATE_RING, STATE_RINGING))


class Channel:
    """The parts of a channel snapshot the model needs, kept current by events."""

    __slots__ = (
        "agent",
        "answered_at",
        "bridge",
        "cid_name",
        "cid_num",
        "conn_name",
        "conn_num",
        "context",
        "created_at",
        "device",
        "dialing",
        "exten",
        "held",
        "inbound",
        "linkedid",
        "name",
        "ringing_at",
        "room",
        "session_var",
        "state",
        "uniqueid",
    )

    def __init__(self, uniqueid: str, name: str, state: int, linkedid: str, now: float) -> None:
        self.uniqueid = uniqueid
        self.name = name
        self.state = state
        self.linkedid = linkedid
        self.device = device_of_channel(name)
        # A channel Asterisk received a call on starts in "Ring"; one it placed
        # (ast_request for Dial, Queue, Originate) starts "Down".
        self.inbound = state == STATE_RING
        self.cid_num = ""
        self.cid_name = ""
        self.conn_num = ""
        self.conn_name = ""
        self.context = ""
        self.exten = ""
        self.agent: str | None = None
        self.bridge: str | None = None
        self.room: str | None = None
        self.session_var: str | None = None
        self.held = False
        # Dials in progress with this channel as caller or as destination.
        self.dialing = 0
        self.created_at = now
        self.ringing_at: float | None = now if state in RINGING_STATES else None
        self.answered_at: float | None = None


def is_second_half(name: str) -> bool:
    """True for the ";2" half of a Local pair."""
    return name.startswith("Local/") and name.endswith(";2")


def first_half_name(name: str) -> str:
    """The name of the ";1" half of the Local pair a ";2" half belongs to."""
    return name[:-1] + "1"
