"""Settings changed from the web page, kept in the database over the config file's values.

Per Asterisk server: the AMI host, port, user and secret; and the three feature codes that
enable the Live Monitor's buttons. A value absent from the table means "as the config file
says". Every change is one row in ``settings_changes`` (who, when, which key; a secret's
value is never written there), committed with the change itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from fastagi_spy.domain import Mode
from fastagi_spy.store.database import Database

# The tables (settings, settings_changes) are created with the others: schema.py.
GLOBAL = ""  # the scope of the feature codes; a server's keys are under its name
SERVER_KEYS = ("ami_host", "ami_port", "ami_username", "ami_secret")
SECRET_KEYS = frozenset({"ami_secret"})
FEATURE_KEYS = {Mode.LISTEN: "code_listen", Mode.WHISPER: "code_whisper",
                Mode.BARGE: "code_barge"}
DEFAULT_CODES = {Mode.LISTEN: "*222", Mode.WHISPER: "*223", Mode.BARGE: "*224"}  # the bundle's

# What each value may be: nothing here may carry CR, LF, NUL or spaces into an AMI header.
# No ":" in a host: it would split Twisted's endpoint string (IPv6 needs the config file).
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}")
_USER = re.compile(r"[A-Za-z0-9_.@-]{1,80}")
_SECRET = re.compile(r"[\x21-\x7e]{1,128}")  # printable ASCII, no space
_CODE = re.compile(r"\*[0-9]{1,6}")


class SettingsError(ValueError):
    """A value that cannot be saved; the message names the field and says why."""


@dataclass(frozen=True)
class ServerAMI:
    """The AMI link settings of one server, as they apply now."""

    host: str
    port: int
    username: str
    secret: str


@dataclass(frozen=True)
class Change:
    at: float
    person: str
    scope: str
    key: str
    shown: str  # the new value, or "(changed)" for a secret


def validate(key: str, value: str) -> str:
    """The value to store for ``key``; SettingsError says why it cannot be."""
    checks = {
        "ami_host": (_HOST, "a host name or IPv4 address"),
        "ami_username": (_USER, "letters, digits and _ . @ - (up to 80)"),
        "ami_secret": (_SECRET, "printable characters without spaces (up to 128)"),
    }
    if key == "ami_port":
        if not (value.isascii() and value.isdigit() and 1 <= int(value) <= 65535):
            raise SettingsError("ami_port: a port number from 1 to 65535")
        return str(int(value))
    if key in FEATURE_KEYS.values():
        if value != "" and _CODE.fullmatch(value) is None:
            raise SettingsError(f"{key}: a star and 1 to 6 digits, such as *222, or blank "
                                "to hide the button")
        return value
    if key not in checks:
        raise SettingsError(f"{key}: not a setting")
    pattern, wanted = checks[key]
    if pattern.fullmatch(value) is None:
        raise SettingsError(f"{key}: {wanted}")
    return value


class SettingsStore:
    """Reads and writes the settings tables; each save is one transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def values(self, scope: str) -> dict[str, str]:
        rows = self._db.execute("SELECT key, value FROM settings WHERE scope = ?",
                                (scope,)).fetchall()
        return {str(k): str(v) for k, v in rows}

    def server_ami(self, scope: str, base: ServerAMI) -> ServerAMI:
        """``base`` (the config file's) with the stored values over it."""
        stored = self.values(scope)
        return ServerAMI(stored.get("ami_host", base.host),
                         int(stored.get("ami_port", base.port)),
                         stored.get("ami_username", base.username),
                         stored.get("ami_secret", base.secret))

    def feature_codes(self) -> dict[Mode, str | None]:
        """Each mode's code; None where a person blanked it (its button is hidden)."""
        stored = self.values(GLOBAL)
        codes: dict[Mode, str | None] = {}
        for mode, key in FEATURE_KEYS.items():
            value = stored.get(key, DEFAULT_CODES[mode])
            codes[mode] = value or None
        return codes

    def save(self, person: str, scope: str, changes: Mapping[str, str], at: float) -> list[str]:
        """Validate and store ``changes`` (key -> value) for ``scope``; returns the keys that
        changed. Nothing is stored when any value is wrong (SettingsError)."""
        clean = {key: validate(key, value) for key, value in changes.items()}
        current = self.values(scope)
        changed = [k for k, v in clean.items() if current.get(k) != v]
        with self._db.transaction() as conn:
            for key in changed:
                conn.execute("INSERT INTO settings (scope, key, value) VALUES (?, ?, ?) "
                             "ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value",
                             (scope, key, clean[key]))
                shown = "(changed)" if key in SECRET_KEYS else (clean[key] or "(blank)")
                conn.execute("INSERT INTO settings_changes (at, person, scope, key, shown) "
                             "VALUES (?, ?, ?, ?, ?)", (at, person, scope, key, shown))
        return changed

    def changes(self, newest: int = 50) -> list[Change]:
        rows = self._db.execute(
            "SELECT at, person, scope, key, shown FROM settings_changes ORDER BY id DESC "
            "LIMIT ?", (newest,)).fetchall()
        return [Change(float(a), str(p), str(s), str(k), str(v)) for a, p, s, k, v in rows]


def known_keys() -> Iterable[str]:
    return (*SERVER_KEYS, *FEATURE_KEYS.values())
