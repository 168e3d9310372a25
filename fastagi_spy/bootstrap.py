"""``fastagi-spy init``: a first config, a random PIN pepper and the database, in one step.

The pepper is the one file that must never be replaced behind an admin's back (every stored
PIN hash depends on it), so an existing pepper stops ``init`` before anything is written.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path

from fastagi_spy.bundle import example_config_text
from fastagi_spy.config import ConfigError, load
from fastagi_spy.service import open_stores

PEPPER_BYTES = 48  # well past the 16-byte minimum; url-safe text, so the file is printable


class PepperExists(Exception):
    """``init`` found a pepper file already there and left everything untouched."""


@dataclass(frozen=True)
class InitResult:
    config: Path
    config_written: bool  # False: an existing config was kept as it was
    pepper: Path
    database: Path


def initialise(config_path: Path) -> InitResult:
    """Write the example config (unless one exists), a new pepper (0600) and the database."""
    config_written = not config_path.exists()
    text = example_config_text() if config_written else config_path.read_text()
    pepper = _pepper_path(text, config_path)
    if pepper.exists():
        raise PepperExists(
            f"{pepper} already exists; init never replaces a pepper (every stored PIN depends "
            "on it). Nothing was changed.")
    if config_written:
        config_path.parent.mkdir(parents=True, exist_ok=True)
        # 0600: the config holds the AMI secret and the API passwords.
        _write_new(config_path, text.encode())
    pepper.parent.mkdir(parents=True, exist_ok=True)
    try:
        _write_new(pepper, secrets.token_urlsafe(PEPPER_BYTES).encode() + b"\n")
    except FileExistsError:
        raise PepperExists(f"{pepper} appeared while init ran; left as it is") from None
    config = load(config_path)  # the whole check, now that the pepper is there
    stores = open_stores(config)  # creates the schema
    stores.db.close()
    return InitResult(config_path, config_written, pepper, Path(config.database))


def _pepper_path(text: str, config_path: Path) -> Path:
    try:
        server = tomllib.loads(text).get("server", {})
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_path}: not valid TOML: {exc}") from None
    name = server.get("pin_pepper_file") if isinstance(server, dict) else None
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{config_path}: server.pin_pepper_file: init needs it set to the "
                          "path of the pepper file to create")
    return config_path.parent / name


def _write_new(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600; O_EXCL: never over a file that appeared meanwhile."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
