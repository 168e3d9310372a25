"""Reading non_agent_api.php's parameters the way VICIdial does, and refusing what it must not see.

VICIdial takes each parameter from the query string first and from the form body second
(``if (isset($_GET[x])) ... elseif (isset($_POST[x]))``), then strips every character outside
a per-field class (non_agent_api.php; ``../shared/reference/mission.md`` §2.1). We do the same,
after one check of our own: a value that is not UTF-8, holds a control character (CR, LF,
NUL, ...) or is longer than ``MAX_VALUE`` is refused outright, before anything uses it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

# Twisted's, not urllib's: urllib's parse_qs fails on bytes with a non-ASCII %-escape.
from twisted.web.http import parse_qs

__all__ = ["FIELDS", "MAX_VALUE", "BadParameter", "read_params"]

# Longer than any VICIdial field (source 20, agent_user 20, phone_login 20, server_ip 15).
MAX_VALUE = 255

# VICIdial's character class per field: everything outside it is stripped.  The password is
# not stripped (ours may hold any printable character); it only ever reaches the hash check.
_KEEP: dict[str, re.Pattern[str] | None] = {
    "user": re.compile(r"[^-_0-9a-zA-Z]"),
    "pass": None,
    "function": re.compile(r"[^-_0-9a-zA-Z]"),
    "source": re.compile(r"[^0-9a-zA-Z]"),
    "session_id": re.compile(r"[^0-9]"),
    "server_ip": re.compile(r"[^-.:_0-9a-zA-Z]"),
    "stage": re.compile(r"[^-_0-9a-zA-Z]"),
    "phone_login": re.compile(r"[^-_0-9a-zA-Z]"),
    "agent_user": re.compile(r"[^-_0-9a-zA-Z]"),
    "header": re.compile(r"[^0-9a-zA-Z]"),
    "include_ip": re.compile(r"[^0-9a-zA-Z]"),
    "user_groups": re.compile(r"[^-_|0-9a-zA-Z]"),
    "campaigns": re.compile(r"[^-_|0-9a-zA-Z]"),
    "show_sub_status": re.compile(r"[^0-9a-zA-Z]"),
}
FIELDS = tuple(_KEEP)
_FIELDS = tuple((name, name.encode(), strip) for name, strip in _KEEP.items())


class BadParameter(ValueError):
    """A parameter we refuse to read at all (its name and why, for the answer and the log)."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"{name}: {why}")
        self.name = name
        self.why = why


# Unicode's Cc category, exactly: C0 (CR, LF, NUL, TAB...), DEL and C1. A header, a log
# line or an answer must never get one.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _decode(name: str, raw: bytes) -> str:
    if len(raw) > MAX_VALUE * 4:  # 4 bytes per character at most: refuse before decoding
        raise BadParameter(name, "too long")
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadParameter(name, "not UTF-8") from None
    if len(value) > MAX_VALUE:
        raise BadParameter(name, "too long")
    if _CONTROL.search(value):
        raise BadParameter(name, "control character")
    return value


def read_params(uri: bytes, args: Mapping[bytes, Sequence[bytes]],
                method: bytes = b"POST") -> dict[str, str]:
    """Every known field, query string first, then ``args`` (the form body), sanitised.

    A field given in neither is "" (PHP's unset variable prints as nothing). Unknown fields
    are ignored, as VICIdial ignores them. Raises BadParameter for a value we refuse.
    For a GET, ``args`` is the query string already parsed (Twisted's request.args).
    """
    query = args if method == b"GET" else parse_qs(urlsplit(uri).query, 1)
    params = dict.fromkeys(_KEEP, "")
    for name, key, strip in _FIELDS:
        values = query.get(key) or args.get(key)
        if values:
            value = _decode(name, values[0])
            params[name] = strip.sub("", value) if strip is not None else value
    return params
