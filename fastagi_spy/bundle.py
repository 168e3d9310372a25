"""The files fastagi-spy ships for Asterisk and for a first config, as package data.

Read through :mod:`importlib.resources`, never a repository path, so an installed wheel
serves the same bytes as the checkout (``fastagi-spy demo``, ``dialplan``, ``init``).
"""

from __future__ import annotations

import importlib.resources
from importlib.resources.abc import Traversable

DATA: Traversable = importlib.resources.files("fastagi_spy") / "data"
# The configs the demo, the test sandbox and the container boot.
ASTERISK_DIR: Traversable = DATA / "asterisk"
# The bundle an admin installs: the dialplan and the AMI account snippet.
DIALPLAN_DIR: Traversable = DATA / "dialplan"
DIALPLAN_FILE = "extensions_spy.conf"
AMI_ACCOUNT_FILE = "manager_fastagi_spy.conf"
EXAMPLE_CONFIG = "fastagi-spy.example.toml"


def conf_files(folder: Traversable) -> list[Traversable]:
    """The ``*.conf`` files of a package-data folder, by name."""
    return sorted((f for f in folder.iterdir() if f.name.endswith(".conf")), key=lambda f: f.name)


def dialplan_text() -> str:
    """``extensions_spy.conf``: what an admin saves next to ``extensions.conf``."""
    return (DIALPLAN_DIR / DIALPLAN_FILE).read_text(encoding="utf-8")


def ami_account_text() -> str:
    """The least-privilege AMI account for ``manager.conf``."""
    return (DIALPLAN_DIR / AMI_ACCOUNT_FILE).read_text(encoding="utf-8")


def example_config_text() -> str:
    """The shipped example config, which ``fastagi-spy init`` writes."""
    return (DATA / EXAMPLE_CONFIG).read_text(encoding="utf-8")
