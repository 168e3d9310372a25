"""An admin's first steps: init, check-config on the shipped example, the printed bundle."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

from fastagi_spy.bundle import ami_account_text, dialplan_text, example_config_text
from fastagi_spy.config import load
from fastagi_spy.service import open_stores, pin_hasher

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fastagi_spy.cli", *args], input=stdin,
                          capture_output=True, text=True, timeout=60, check=False)


def test_init_writes_config_pepper_and_database_and_the_example_then_checks(
        tmp_path: Path) -> None:
    """init in an empty directory: the example as the config, a 0600 random pepper, the
    database with its tables; check-config then passes on the shipped example."""
    config = tmp_path / "etc" / "fastagi-spy.toml"
    done = cli("init", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert config.read_text() == (REPO / "fastagi-spy.example.toml").read_text()
    assert stat.S_IMODE(config.stat().st_mode) == 0o600  # it holds the AMI secret
    pepper = config.parent / "pepper"
    assert stat.S_IMODE(pepper.stat().st_mode) == 0o600
    assert len(pepper.read_bytes().strip()) >= 32
    database = config.parent / "fastagi-spy.sqlite3"
    with sqlite3.connect(database) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert {"pins", "audit"} <= tables, tables
    check = cli("check-config", str(config))
    assert check.returncode == 0, check.stderr
    assert "OK" in check.stdout
    # The example's supervisor may switch modes; its notice is off.
    assert "AMI account needs read = system,call,agent,dialplan,dtmf, write = reporting,call " \
        in check.stdout


def test_two_inits_make_two_different_peppers(tmp_path: Path) -> None:
    """The pepper is random, not a constant shipped with the package."""
    peppers = []
    for name in ("a", "b"):
        assert cli("init", "--config", str(tmp_path / name / "c.toml")).returncode == 0
        peppers.append((tmp_path / name / "pepper").read_bytes())
    assert peppers[0] != peppers[1]


def test_init_refuses_to_replace_a_pepper_and_changes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    assert cli("init", "--config", str(config)).returncode == 0
    pepper = tmp_path / "pepper"
    before = pepper.read_bytes(), config.read_text()
    again = cli("init", "--config", str(config))
    assert again.returncode == 1
    assert str(pepper) in again.stderr and "never replaces a pepper" in again.stderr
    assert (pepper.read_bytes(), config.read_text()) == before


def test_init_keeps_an_existing_config(tmp_path: Path) -> None:
    """An admin who wrote a config first gets only the pepper and the database added."""
    config = tmp_path / "c.toml"
    text = example_config_text().replace('database = "fastagi-spy.sqlite3"', 'database = "x.db"')
    config.write_text(text)
    done = cli("init", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert config.read_text() == text
    assert (tmp_path / "x.db").exists() and (tmp_path / "pepper").exists()


def test_check_config_names_the_missing_pepper_and_the_command(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(example_config_text())
    check = cli("check-config", str(config))
    assert check.returncode == 2
    assert f"{tmp_path / 'pepper'} does not exist" in check.stderr
    assert f"fastagi-spy init --config {config}" in check.stderr


def test_set_pin_reads_the_pin_from_stdin_after_init(tmp_path: Path) -> None:
    """The README's scripted set-pin: the PIN on stdin, for the example's supervisor 9001."""
    config = tmp_path / "c.toml"
    assert cli("init", "--config", str(config)).returncode == 0
    done = cli("set-pin", "--config", str(config), "9001", stdin="482913\n")
    assert done.returncode == 0, done.stderr
    loaded = load(config)
    stored = open_stores(loaded).pins.get_hash("9001")
    assert pin_hasher(loaded).verify("9001", "482913", stored)


def test_dialplan_prints_the_bundle_and_the_ami_account() -> None:
    bundle = cli("dialplan")
    assert bundle.returncode == 0
    assert bundle.stdout == dialplan_text()
    assert "[fastagi-spy]" in bundle.stdout and "AGI(agi://" in bundle.stdout
    account = cli("dialplan", "--ami-account")
    assert account.stdout == ami_account_text()
    assert "read = " in account.stdout and "write = " in account.stdout
