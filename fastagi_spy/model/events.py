"""The shape of an AMI event as the model reads it, and field helpers.

The model never sees bytes: anything with a case-insensitive ``get`` and a
``get_all`` for repeated headers will do (the wire layer's ``AMIMessage`` does).
Helpers raise :class:`Malformed` for a missing or unparsable field, which the
caller turns into "ignore this event and count it".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Protocol

__all__ = [
    "AGENT_VARIABLE",
    "SESSION_VARIABLE",
    "EventLike",
    "Malformed",
    "ascii_digits",
    "chanvar",
    "is_session_id",
    "is_target",
    "known",
    "parse_state",
    "required",
    "session_from_chanvars",
    "variable_name",
]

# The dialplan variable a site sets on an agent's channel to name its session;
# manager.conf "channelvars=FASTAGI_SPY_SESSION" makes Asterisk repeat it as a
# "ChanVariable: FASTAGI_SPY_SESSION=8600051" header on every channel event.
SESSION_VARIABLE = "FASTAGI_SPY_SESSION"

# The dialplan variable a site sets on an agent's leg (a pre-dial handler, or the dialler)
# to say which directory agent answers on that leg's device: a learned device, held while
# the leg lives.  "channelvars=FASTAGI_SPY_AGENT" lets a resync see it too.
AGENT_VARIABLE = "FASTAGI_SPY_AGENT"

# manager_channels.c prints an empty caller/connected number or name as "<unknown>".
_UNKNOWN = "<unknown>"

# ASCII only: str.isdigit() would also accept "٣" or "²", which no dialplan sends.
_SESSION_ID = re.compile(r"[0-9]{7}")
_TARGET = re.compile(r"[0-9]{1,10}")
_DIGIT = re.compile(r"[0-9]")


class EventLike(Protocol):
    """One AMI event or list item: headers looked up case-insensitively."""

    @property
    def event(self) -> str | None:
        """The ``Event`` header's value, or None."""

    def get(self, name: str, default: str | None = None) -> str | None:
        """First value of header ``name``, else ``default``."""

    def get_all(self, name: str) -> tuple[str, ...]:
        """Every value of header ``name``, in order."""


class Malformed(Exception):
    """A required field is missing or unparsable: the event is ignored and counted."""


def is_session_id(text: str) -> bool:
    """True for exactly seven ASCII digits (VICIdial's 86xxxxx / 96xxxxx rooms)."""
    return _SESSION_ID.fullmatch(text) is not None


def is_target(text: str) -> bool:
    """True for 1 to 10 ASCII digits: the only targets a supervisor may name."""
    return _TARGET.fullmatch(text) is not None


def ascii_digits(text: str) -> str:
    """The ASCII digits of ``text`` in order ("Agent 1001" -> "1001")."""
    return "".join(_DIGIT.findall(text))


def known(value: str | None) -> str:
    """A caller/connected field with Asterisk's "<unknown>" placeholder turned into ""."""
    if value is None or value == _UNKNOWN:
        return ""
    return value


def required(event: EventLike, name: str) -> str:
    """The non-empty value of header ``name``, else :class:`Malformed`."""
    value = event.get(name)
    if not value:
        raise Malformed(f"missing {name}")
    return value


def parse_state(raw: str | None, default: int) -> int:
    """A ChannelState number (``%d`` in manager_channels.c); ``default`` when absent."""
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()):
        raise Malformed(f"ChannelState {raw[:20]!r} is not a number")
    return int(raw)


def variable_name(name: str) -> str:
    """A dialplan variable name as compared: inheritance underscores dropped, upper case.

    pbx_builtin_setvar_helper publishes the name as written, so "__FASTAGI_SPY_SESSION"
    (inherited by every child channel) arrives with its underscores.
    """
    return name.lstrip("_").upper()


def session_from_chanvars(values: Iterable[str]) -> str | None:
    """The FASTAGI_SPY_SESSION value among "ChanVariable: name=value" headers, if any."""
    for item in values:
        name, sep, value = item.partition("=")
        if sep and variable_name(name) == SESSION_VARIABLE:
            return value
    return None


def chanvar(values: Iterable[str], wanted: str) -> str | None:
    """The value of variable ``wanted`` among "ChanVariable: name=value" headers, if any."""
    for item in values:
        name, sep, value = item.partition("=")
        if sep and variable_name(name) == wanted:
            return value
    return None
