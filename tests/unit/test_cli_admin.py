"""The operator commands on a real config and database: set-pin, locks, unlock, audit."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from fastagi_spy.config import load
from fastagi_spy.service import open_stores
from fastagi_spy.store.lockout import device_key, supervisor_key

CONFIG = """
[server]
pin_pepper = "cli-test-pepper-0123456789"
database = "cli.sqlite3"

[[asterisk]]
name = "pbx1"
ami_username = "fastagi-spy"
ami_secret = "s3cret"

[security]
pin_cost = "cheap"
lockout_failures = 2
supervisor_lockout_failures = 2

[[supervisors]]
number = "9001"
devices = ["PJSIP/2001"]
"""


def cli(config: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fastagi_spy.cli", args[0], "--config", str(config),
                           *args[1:]],
                          input=stdin, capture_output=True, text=True, timeout=60, check=False)


def test_set_pin_locks_and_unlock(tmp_path: Path) -> None:
    """set-pin stores a hash that verifies (never the PIN); locks lists a lockout; unlock
    lifts it for the supervisor and for the device."""
    path = tmp_path / "c.toml"
    path.write_text(CONFIG)
    done = cli(path, "set-pin", "9001", stdin="4321\n")
    assert done.returncode == 0, done.stderr
    config = load(path)
    stores = open_stores(config)
    stored = stores.pins.get_hash("9001")
    assert stored and "4321" not in stored
    assert cli(path, "set-pin", "9999", stdin="4321\n").returncode == 1  # no such supervisor
    assert cli(path, "set-pin", "9001", stdin="12\n").returncode == 1  # too short
    keys = [supervisor_key("9001"), device_key("PJSIP/2001")]
    now = time.time()
    stores.lockouts.record_failure(keys, now)
    stores.lockouts.record_failure(keys, now)
    assert stores.lockouts.is_locked(keys, now) is not None
    listing = cli(path, "locks")
    assert "supervisor:9001" in listing.stdout and "device:PJSIP/2001" in listing.stdout
    assert "unlocked" in cli(path, "unlock", "--supervisor", "9001").stdout
    assert "unlocked" in cli(path, "unlock", "--device", "PJSIP/2001").stdout
    assert stores.lockouts.is_locked(keys, time.time()) is None
    assert "no lockouts" in cli(path, "locks").stdout


def test_status_table_shows_no_control_characters_from_ami(capsys) -> None:  # type: ignore[no-untyped-def]
    """A caller name (or channel) carrying ANSI escapes, CR, BEL or a bidi override is
    printed with "?" in their place: it cannot rewrite the admin's terminal."""
    import unicodedata

    from fastagi_spy.terminal import print_snapshot

    evil = "\x1b[2J\x1b[31mEvil\rCo\x07\u202e\x9b"
    snapshot = {"servers": {"pbx\x1b]0;x\x07": {"stale": False, "agents": [{
        "number": "1001", "name": "Alice", "status": "Talking", "session_id": "8600000",
        "channel": "PJSIP/1001-1\x1b[A",
        "call": {"customer_number": "555\r", "customer_name": evil, "direction": "in\x00",
                 "elapsed_s": 5.0},
    }]}}}
    print_snapshot(snapshot)
    out = capsys.readouterr().out
    assert [c for c in out if c != "\n" and unicodedata.category(c)[0] == "C"] == []
    assert "?[2J?[31mEvil?Co???" in out
    assert "PJSIP/1001-1?[A" in out
