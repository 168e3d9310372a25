"""Building the ChanSpy argument from validated pieces, and parsing dialled target digits.

ChanSpy options (Asterisk 22, apps/app_chanspy.c):
  q  no beep or spoken channel name for the spy
  u  the first argument is a uniqueid or full channel name, looked up exactly, so
     "PJSIP/100" can never prefix-match "PJSIP/1001-..."; also disables digit+# hopping
  w  whisper to the target; B barge into both legs of a two-party bridge
  E  exit when the spied-on channel hangs up (and on `*`) instead of rescanning forever
  S  exit at once when nothing may be spied on: without it a g() mismatch (or a channel that
     vanished) leaves the supervisor in silence, rescanning forever (seen on Asterisk 22.10.1)
  d  DTMF 4/5/6 switch listen/whisper/barge: only for supervisors allowed all three
  g(grp)  only spy on channels whose SPYGROUP shares `grp`: a second team check in Asterisk
"""

from __future__ import annotations

import hashlib
import re

from fastagi_spy.domain import Mode
from fastagi_spy.wire.names import CHANNEL_NAME

# The same characters the config allows in devices (wire/names.py says which and why).
_CHANNEL = CHANNEL_NAME
_SPY_GROUP = re.compile(r"[A-Za-z0-9_]{1,32}")
_TEAM_PREFIX = "team_"
_TEAM_SAFE = re.compile(rf"[A-Za-z0-9_]{{1,{32 - len(_TEAM_PREFIX)}}}")

_MODE_OPTION = {Mode.LISTEN: "", Mode.WHISPER: "w", Mode.BARGE: "B"}


def chanspy_argument(
    channel: str, mode: Mode, *, allow_switch: bool = False, spy_group: str | None = None
) -> str:
    """The full ChanSpy application argument, e.g. "PJSIP/1001-0000002a,quwES".

    Raises ValueError for a channel or group outside the allow-lists.
    """
    if _CHANNEL.fullmatch(channel) is None:
        raise ValueError(f"unsafe channel name for ChanSpy: {channel!r}")
    options = "qu" + _MODE_OPTION[mode] + "ES"
    if allow_switch:
        options += "d"
    if spy_group is not None:
        if _SPY_GROUP.fullmatch(spy_group) is None:
            raise ValueError(f"unsafe spy group: {spy_group!r}")
        options += f"g({spy_group})"
    return f"{channel},{options}"


def spy_group_for_team(team: str) -> str:
    """A SPYGROUP token for a team: "team_<name>" if the name is safe, else "team_<sha1[:12]>".

    Unsafe names are hashed rather than stripped, so "a-b" and "ab" cannot share a group.
    """
    if _TEAM_SAFE.fullmatch(team) is not None:
        return _TEAM_PREFIX + team
    digest = hashlib.sha1(team.encode(), usedforsecurity=False).hexdigest()
    return _TEAM_PREFIX + digest[:12]


def parse_target_digits(raw: str, max_len: int = 10) -> str | None:
    """The digits of a dialled target (one trailing "#" allowed), or None if anything else."""
    if max_len < 1:
        raise ValueError("max_len must be at least 1")
    text = raw[:-1] if raw.endswith("#") else raw
    # [0-9] rather than \d: \d also matches non-ASCII digits such as Arabic-Indic ones.
    if re.fullmatch(rf"[0-9]{{1,{max_len}}}", text) is None:
        return None
    return text
