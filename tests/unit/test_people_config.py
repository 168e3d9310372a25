"""People in the config: VICIdial's fields on [[supervisors]], their defaults and errors,
the migration note for [[api_users]], and `set-password` on a real config and database."""

from __future__ import annotations

import copy
import time
import tomllib
from typing import Any

import pytest

from fastagi_spy.config import ConfigError, load, parse
from fastagi_spy.service import open_stores, pin_hasher
from tests.unit.test_cli_admin import CONFIG, cli

BASE = tomllib.loads("""
[server]
pin_pepper = "a-long-enough-pepper-0123"

[[asterisk]]
name = "pbx1"
ami_username = "fastagi-spy"
ami_secret = "s3cret"
""")


def with_people(*people: dict[str, Any]) -> dict[str, Any]:
    raw = copy.deepcopy(BASE)
    raw["supervisors"] = list(people)
    return raw


def test_defaults_keep_old_configs_as_they_were() -> None:
    """A supervisor with teams is level 7; a person without teams level 1 (VICIdial's
    default); no API access; all functions; active; may view reports; no phone."""
    directory = parse(with_people({"number": "9001", "teams": ["sales"]},
                                  {"number": "9100"})).directory
    sam, api_only = directory.person("9001"), directory.person("9100")
    assert sam is not None and api_only is not None
    assert (sam.user_level, api_only.user_level) == (7, 1)
    assert (sam.api, sam.functions, sam.active, sam.view_reports, sam.phone) == (
        False, None, True, True, None)
    assert sam.may_use("blind_monitor") and directory.person("9002") is None


def test_every_vicidial_field_is_read() -> None:
    person = parse(with_people({
        "number": "6666", "user_level": 9, "api": True, "functions": ["blind_monitor", "version"],
        "active": False, "view_reports": False, "phone": "350a"})).directory.person("6666")
    assert person is not None
    assert (person.user_level, person.api, person.active, person.view_reports, person.phone) == (
        9, True, False, False, "350a")
    assert person.functions == frozenset({"blind_monitor", "version"})
    assert person.may_use("version") and not person.may_use("agent_status")


def test_all_functions_spelled_as_vicidial_does_means_all() -> None:
    person = parse(with_people({"number": "6666", "functions": ["ALL_FUNCTIONS"]})
                   ).directory.person("6666")
    assert person is not None and person.functions is None


@pytest.mark.parametrize(("fields", "key", "says"), [
    ({"user_level": 10}, "supervisors[0].user_level", "between 0 and 9"),
    ({"user_level": 7.5}, "supervisors[0].user_level", "whole number"),
    ({"api": "yes"}, "supervisors[0].api", "expected bool"),
    ({"active": 1}, "supervisors[0].active", "expected bool"),
    ({"functions": "blind_monitor"}, "supervisors[0].functions", "expected a list"),
    ({"functions": ["blind monitor"]}, "supervisors[0].functions[0]", "function name"),
    ({"phone": "350a\r\nAction: Originate"}, "supervisors[0].phone", "phone_login"),
    ({"number": "admin"}, "supervisors[0].number", "digits"),
])
def test_a_bad_value_names_its_key(fields: dict[str, Any], key: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(with_people({"number": "9001", **fields}))
    assert str(caught.value).startswith(f"{key}:") and says in str(caught.value)


def test_api_users_get_a_migration_note_not_a_silent_ignore() -> None:
    raw = copy.deepcopy(BASE)
    raw["api_users"] = [{"user": "monitor", "password": "change-me-please"}]
    with pytest.raises(ConfigError) as caught:
        parse(raw)
    text = str(caught.value)
    assert text.startswith("api_users:") and "set-password" in text and "api = true" in text


def test_set_password_stores_a_hash_that_logs_in(tmp_path: Any) -> None:
    """set-password reads the password from stdin, stores only a hash that verifies for
    that person, refuses unknown people and short passwords, and never prints the password."""
    path = tmp_path / "c.toml"
    path.write_text(CONFIG)
    done = cli(path, "set-password", "9001", stdin="a-long-password\n")
    assert done.returncode == 0, done.stderr
    assert "a-long-password" not in done.stdout + done.stderr
    config = load(path)
    stored = open_stores(config).passwords.get_hash("9001")
    assert stored is not None and "a-long-password" not in stored
    assert pin_hasher(config).verify_password("9001", "a-long-password", stored)
    unknown = cli(path, "set-password", "9999", stdin="a-long-password\n")
    assert unknown.returncode == 1 and "no person '9999'" in unknown.stderr
    short = cli(path, "set-password", "9001", stdin="short\n")
    assert short.returncode == 1 and "8 to 128 characters" in short.stderr
    assert open_stores(config).passwords.get_hash("9001") == stored  # unchanged


def test_unlock_user_lifts_a_password_lockout(tmp_path: Any) -> None:
    """`locks` lists a locked user as user:N; `unlock --user N` lifts it."""
    path = tmp_path / "c.toml"
    path.write_text(CONFIG)
    logins = open_stores(load(path)).logins
    now = time.time()  # `locks` compares with the real time
    for _ in range(10):
        assert logins.admit("9001", now)
        logins.settle_failure("9001", now)
    assert logins.locked_until("9001", now + 1) == now + 900
    assert [logins.admit("9001", now + n) for n in range(3)] == [False] * 3
    assert "user:9001" in cli(path, "locks").stdout
    assert "unlocked" in cli(path, "unlock", "--user", "9001").stdout
    assert logins.locked_until("9001", now + 1) is None
    assert "was not locked" in cli(path, "unlock", "--user", "9001").stdout
    assert "no lockouts" in cli(path, "locks").stdout
