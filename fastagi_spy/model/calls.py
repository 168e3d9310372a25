"""Calls: every channel sharing a linkedid, with the customer and the call's times."""

from __future__ import annotations

from typing import Literal, TypeAlias

from fastagi_spy.model.channels import Channel
from fastagi_spy.model.config import ModelConfig

__all__ = ["Call", "Direction", "is_customer_leg"]

Direction: TypeAlias = Literal["incoming", "outgoing"]


class Call:
    """One call: Asterisk's Linkedid is the uniqueid of its oldest channel."""

    __slots__ = (
        "answered_at",
        "channels",
        "customer_name",
        "customer_number",
        "dialed",
        "direction",
        "ended_at",
        "linkedid",
        "origin_seen",
        "ringing_at",
    )

    def __init__(self, linkedid: str) -> None:
        self.linkedid = linkedid
        self.channels: set[str] = set()
        self.direction: Direction = "incoming"
        # True once the leg that started the call (uniqueid == linkedid) was seen;
        # until then the direction is a guess from the first leg we saw.
        self.origin_seen = False
        # The extension the starting leg dialled, kept from its first snapshot.
        self.dialed = ""
        self.customer_number = ""
        self.customer_name = ""
        self.ringing_at: float | None = None
        self.answered_at: float | None = None
        self.ended_at: float | None = None


def is_customer_leg(config: ModelConfig, channel: Channel) -> bool:
    """True when the configured rules mark ``channel`` as a trunk/customer leg."""
    if channel.context in config.customer_contexts:
        return True
    # A prefix rule on our own configuration ("PJSIP/trunk-"), never on a target.
    return channel.name.startswith(config.customer_channel_prefixes)
