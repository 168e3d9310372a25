"""Calls: every channel sharing a linkedid, with the customer and the call's times."""

from __future__ import annotations

from typing import Literal, TypeAlias

from fastagi_spy.model.channels import Channel
from fastagi_spy.model.config import ModelConfig

__all__ = ["Call", "Direction", "dialer_number", "is_customer_leg", "is_dialer_leg"]

Direction: TypeAlias = Literal["incoming", "outgoing"]


class Call:
    """One call: Asterisk's Linkedid is the uniqueid of its oldest channel."""

    __slots__ = (
        "answered_at",
        "channels",
        "customer_name",
        "customer_number",
        "dialed",
        "dialer",
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
        # True when a dialler placed the call (see ModelConfig.dialer_contexts).
        self.dialer = False
        self.customer_number = ""
        self.customer_name = ""
        self.ringing_at: float | None = None
        self.answered_at: float | None = None
        self.ended_at: float | None = None


def is_customer_leg(config: ModelConfig, channel: Channel) -> bool:
    """True when the configured rules mark ``channel`` as a trunk/customer leg."""
    if channel.context in config.trunk_contexts:
        return True
    # A prefix rule on our own configuration ("PJSIP/trunk-"), never on a target.
    return channel.name.startswith(config.trunk_prefixes)


def _local_target(channel: Channel) -> tuple[str, str]:
    """(exten, context) a Local channel was created for: its name says, for life.

    "Local/5551234@dialer-0000002a;1" -> ("5551234", "dialer").  A dialler's leg keeps
    this name after it is sent on into the agent's room, and CoreShowChannels after a
    reconnect shows where a leg is now, not where it started: the name still tells.
    """
    device = channel.device
    if not device.startswith("Local/"):
        return "", ""
    exten, _, context = device[len("Local/") :].partition("@")
    return exten, context


def is_dialer_leg(config: ModelConfig, channel: Channel) -> bool:
    """True when the configured rules say a dialler originated ``channel``."""
    contexts = config.dialer_contexts
    if not contexts and not config.dialer_prefixes:
        return False
    if channel.context in contexts or _local_target(channel)[1] in contexts:
        return True
    return channel.name.startswith(config.dialer_prefixes)


def dialer_number(config: ModelConfig, channel: Channel) -> str:
    """The number a dialler's leg was sent to dial: a Local leg's target, else its extension,
    less the longest configured dial prefix it starts with (when digits remain after it)."""
    number = _local_target(channel)[0] or channel.exten
    cut = max(
        (len(prefix) for prefix in config.dialer_dial_prefixes if number.startswith(prefix)),
        default=0,
    )
    return number[cut:] if len(number) > cut else number
