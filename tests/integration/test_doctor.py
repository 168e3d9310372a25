"""``fastagi-spy doctor`` against the real Asterisk 22: least privilege, checked live.

The accounts are the sandbox's own: ``fastagi-spy`` is the shipped bundle's account
(read system,call,agent,dialplan,dtmf; write reporting,originate), ``fsp-tester`` has
read = all, write = all. Write permissions come from the live ListCommands; read ones from
the sandbox's manager.conf (with its #include of the bundle's account).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fastagi_spy.sandbox import TESTER_SECRET, TESTER_USER, AsteriskSandbox, free_port

pytestmark = pytest.mark.asterisk

BUNDLE_SECRET = "change-me-fastagi-spy"  # the bundle's sandbox account, loopback only
ALL_MODES = '["listen", "whisper", "barge"]'


def config(tmp_path: Path, port: int, *, user: str = "fastagi-spy",
           secret: str = BUNDLE_SECRET, notice: str = "", modes: str = '["listen"]') -> Path:
    path = tmp_path / "doctor.toml"
    path.write_text(f"""
[server]
pin_pepper = "doctor-test-pepper-0123456789"
database = "doctor.sqlite3"

[[asterisk]]
name = "pbx"
ami_port = {port}
ami_username = "{user}"
ami_secret = "{secret}"

[security]
notice = "{notice}"

[[supervisors]]
number = "2001"
modes = {modes}
""")
    return path


def doctor(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fastagi_spy.cli", "doctor", "--config",
                           str(path), *extra], capture_output=True, text=True, timeout=60,
                          check=False)


def manager_conf(sandbox: AsteriskSandbox) -> str:
    return str(sandbox.host_path(f"{sandbox.base}/etc/manager.conf"))


def test_bundle_account_with_notice_and_mode_switching_off_is_too_much(
        sandbox: AsteriskSandbox, tmp_path: Path) -> None:
    """No notice, nobody may switch modes: the shipped account's originate (write, seen
    live) and dtmf (read, from manager.conf) are both named as more than needed."""
    done = doctor(config(tmp_path, sandbox.ami_port), "--manager-conf", manager_conf(sandbox))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "WARNING: write 'originate' is more than needed: [security] notice is off" \
        in done.stdout
    assert "WARNING: read 'dtmf' is more than needed: no supervisor may switch modes" \
        in done.stdout
    assert "2 problem(s)" in done.stdout
    assert "ERROR" not in done.stdout


def test_write_beyond_need_is_found_live_without_manager_conf(
        sandbox: AsteriskSandbox, tmp_path: Path) -> None:
    """Without manager.conf the write side is still checked (ListCommands); the read side
    is said to be unchecked rather than passed."""
    done = doctor(config(tmp_path, sandbox.ami_port))
    assert done.returncode == 1
    assert "write 'originate' is more than needed" in done.stdout
    assert "read permissions not checked" in done.stdout
    assert "dtmf" not in done.stdout


def test_bundle_account_matches_when_notice_and_switching_are_on(
        sandbox: AsteriskSandbox, tmp_path: Path) -> None:
    done = doctor(config(tmp_path, sandbox.ami_port, notice="beep", modes=ALL_MODES),
                  "--manager-conf", manager_conf(sandbox))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pbx: AMI 127.0.0.1" in done.stdout and ": OK" in done.stdout
    assert "WARNING" not in done.stdout and "ERROR" not in done.stdout


def test_an_all_powerful_account_is_named_class_by_class(
        sandbox: AsteriskSandbox, tmp_path: Path) -> None:
    done = doctor(config(tmp_path, sandbox.ami_port, user=TESTER_USER, secret=TESTER_SECRET,
                         notice="beep", modes=ALL_MODES),
                  "--manager-conf", manager_conf(sandbox))
    assert done.returncode == 1
    for extra in ("write 'command'", "write 'system'", "write 'config'", "write 'agi'",
                  "read 'security'", "read 'reporting'"):
        assert f"WARNING: {extra} is more than needed" in done.stdout, extra
    assert "write 'originate' is more" not in done.stdout  # needed: the notice is on


def test_a_missing_permission_is_an_error(sandbox: AsteriskSandbox, tmp_path: Path) -> None:
    """A manager.conf that grants the account less than the notice needs: the read side
    reports what is missing (the live write side has originate, so it is not missing)."""
    conf = tmp_path / "manager.conf"
    conf.write_text("[general]\nenabled = yes\n\n[fastagi-spy]\nsecret = x\n"
                    "read = system,call,agent\nwrite = reporting,originate\n")
    done = doctor(config(tmp_path, sandbox.ami_port, notice="beep"), "--manager-conf", str(conf))
    assert done.returncode == 1
    assert "ERROR: read 'dialplan' is missing: VarSet of FASTAGI_SPY_SESSION" in done.stdout


def test_unreachable_ami_fails_clearly(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    done = doctor(config(tmp_path, port))
    assert done.returncode == 1
    assert f"ERROR: cannot reach the AMI of pbx at 127.0.0.1:{port}:" in done.stdout
    assert "Connection was refused" in done.stdout or "refused" in done.stdout.lower()
    assert "Traceback" not in done.stdout + done.stderr


def test_refused_login_fails_clearly(sandbox: AsteriskSandbox, tmp_path: Path) -> None:
    done = doctor(config(tmp_path, sandbox.ami_port, secret="not-the-secret"))
    assert done.returncode == 1
    assert "login as 'fastagi-spy' refused: Authentication failed" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
