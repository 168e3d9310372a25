"""Every key the config reader accepts is in the shipped example and in the README.

The accepted keys are taken from the reader itself (its "unknown key (allowed: ...)" error
for each table), so a key added to config.py without documentation fails here.
"""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fastagi_spy.config import ConfigError, parse

REPO = Path(__file__).resolve().parents[2]
MINIMAL = tomllib.loads("""
[server]
pin_pepper = "a-long-enough-pepper-0123"

[[asterisk]]
name = "pbx1"
ami_username = "fastagi-spy"
ami_secret = "s3cret"
""")
UNKNOWN = "zz_not_a_key"


def _in_table(name: str) -> Callable[[dict[str, Any]], None]:
    def put(raw: dict[str, Any]) -> None:
        raw.setdefault(name, {})[UNKNOWN] = 1
    return put


def _in_array(name: str) -> Callable[[dict[str, Any]], None]:
    def put(raw: dict[str, Any]) -> None:
        items = raw.setdefault(name, [{}])
        items[0][UNKNOWN] = 1
    return put


TABLES: dict[str, Callable[[dict[str, Any]], None]] = {
    "(top level)": lambda raw: raw.__setitem__(UNKNOWN, 1),
    "server": _in_table("server"),
    "asterisk": _in_array("asterisk"),
    "map": _in_table("map"),
    "security": _in_table("security"),
    "agents": _in_array("agents"),
    "supervisors": _in_array("supervisors"),
    "cross_server": _in_array("cross_server"),
    "web": _in_table("web"),
    "store": _in_table("store"),
}


def accepted_keys(table: str) -> list[str]:
    raw = copy.deepcopy(MINIMAL)
    TABLES[table](raw)
    with pytest.raises(ConfigError) as caught:
        parse(raw)
    found = re.search(r"unknown key \(allowed: (.*)\)", str(caught.value))
    assert found, caught.value
    return found.group(1).split(", ")


def _readme_reference() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index("### Config reference")
    end = text.find("\n## ", start)
    return text[start:end if end > 0 else None]


@pytest.mark.parametrize("table", sorted(TABLES))
def test_every_accepted_key_is_in_the_example(table: str) -> None:
    example = (REPO / "fastagi-spy.example.toml").read_text()
    missing = [key for key in accepted_keys(table)
               if not re.search(rf"^#?\s*(\[\[?)?{re.escape(key)}(\]\]?|\s*=)", example, re.M)]
    assert missing == [], f"[{table}] keys not in fastagi-spy.example.toml: {missing}"


@pytest.mark.parametrize("table", sorted(TABLES))
def test_every_accepted_key_is_in_the_readme_reference(table: str) -> None:
    reference = _readme_reference()
    missing = [key for key in accepted_keys(table) if f"`{key}`" not in reference]
    assert missing == [], f"[{table}] keys not in the README's Config reference: {missing}"


def test_the_key_lists_come_from_the_reader() -> None:
    """Guards the two checks above: they really see the reader's keys."""
    assert "pin_cost" in accepted_keys("security")
    assert "agi_peers" in accepted_keys("asterisk")
    assert "cross_server" in accepted_keys("(top level)")
