"""SIGHUP's reload: the new people and rights reach every holder of the directory; a bad file
or a change that needs a restart leaves the running values, and says which key."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.logger import formatEvent, globalLogPublisher

from fastagi_spy.config import load
from fastagi_spy.domain import Mode
from fastagi_spy.reload import Reloader
from fastagi_spy.supervise.passwords import PasswordChecker

BASE = """
[server]
pin_pepper = "a-long-enough-pepper-0123"
agi_listen = "tcp:4573:interface=127.0.0.1"

[[asterisk]]
name = "pbx1"
ami_username = "fastagi-spy"
ami_secret = "s3cret-never-logged"

[[agents]]
number = "1001"
name = "Agent"
team = "sales"
devices = ["PJSIP/1001"]

[[supervisors]]
number = "2001"
name = "Boss"
teams = ["sales"]
modes = ["listen", "whisper"]
devices = ["PJSIP/2001"]
"""
NEW_PERSON = """
[[supervisors]]
number = "2002"
name = "New"
teams = ["sales"]
modes = ["listen"]
"""


@pytest.fixture()
def logged() -> list[str]:
    seen: list[str] = []

    def keep(event: dict[str, object]) -> None:
        seen.append(formatEvent(event))

    globalLogPublisher.addObserver(keep)
    yield seen
    globalLogPublisher.removeObserver(keep)


def test_new_people_and_rights_reach_the_objects_holding_the_directory(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(BASE)
    config = load(path)
    held = config.directory
    checker = PasswordChecker(config.directory, None, None, None, None)  # type: ignore[arg-type]
    path.write_text(BASE.replace('modes = ["listen", "whisper"]', 'modes = ["listen"]')
                    + NEW_PERSON)
    assert Reloader(config).reload()
    assert config.directory is held  # the same object, new contents
    boss = held.supervisor("2001")
    assert boss is not None and boss.modes == frozenset({Mode.LISTEN})
    assert checker.directory.person("2002") is not None
    assert held.supervisor_for_device("PJSIP/2001") is boss


def test_a_bad_file_keeps_the_running_directory_and_names_the_key(
        tmp_path: Path, logged: list[str]) -> None:
    path = tmp_path / "c.toml"
    path.write_text(BASE)
    config = load(path)
    path.write_text(BASE.replace('modes = ["listen", "whisper"]', 'modes = ["fly"]')
                    + NEW_PERSON)
    assert not Reloader(config).reload()
    assert config.directory.person("2002") is None
    boss = config.directory.supervisor("2001")
    assert boss is not None and Mode.WHISPER in boss.modes
    [refused] = [line for line in logged if line.startswith("Reload refused")]
    assert "supervisors[0].modes" in refused, refused


def test_ports_and_ami_changes_need_a_restart_and_are_named_without_values(
        tmp_path: Path, logged: list[str]) -> None:
    path = tmp_path / "c.toml"
    path.write_text(BASE)
    config = load(path)
    path.write_text(BASE.replace("tcp:4573:", "tcp:4999:")
                    .replace("s3cret-never-logged", "other-s3cret-never-logged"))
    assert Reloader(config).reload()
    assert config.agi_listen == "tcp:4573:interface=127.0.0.1"
    restart = [line for line in logged if "needs a restart" in line]
    assert any("agi_listen changed" in line for line in restart), restart
    assert any("asterisk changed" in line for line in restart), restart
    assert not any("s3cret" in line for line in logged)
