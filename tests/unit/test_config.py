"""The TOML config: the example loads, and every mistake names its key and the problem."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from fastagi_spy.config import ConfigError, load, parse
from fastagi_spy.domain import Mode

REPO = Path(__file__).resolve().parents[2]
MINIMAL = """
[server]
pin_pepper = "a-long-enough-pepper-0123"

[[asterisk]]
name = "pbx1"
ami_username = "fastagi-spy"
ami_secret = "s3cret"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_the_commented_example_loads() -> None:
    """The example in the repo is valid (its pepper file is read relative to the config)."""
    text = (REPO / "fastagi-spy.example.toml").read_text()
    text = text.replace('pin_pepper_file = "pepper"',
                        'pin_pepper = "example-pepper-0123456789"')
    import tomllib

    config = parse(tomllib.loads(text))
    assert [s.name for s in config.asterisk] == ["pbx1"]
    assert config.directory.supervisor("9001") is not None
    assert config.directory.supervisor("9001").modes == frozenset(Mode)  # type: ignore[union-attr]
    assert "1000" in config.directory.never_spy


def test_minimal_config_gets_loopback_defaults(tmp_path: Path) -> None:
    """Only the required keys: FastAGI and HTTP listen on loopback, production PIN cost."""
    config = load(write(tmp_path, MINIMAL))
    assert config.agi_listen == "tcp:4573:interface=127.0.0.1"
    assert "127.0.0.1" in config.http_listen
    assert config.security.pin_cost == "production"


@pytest.mark.parametrize("edit, key", [
    (lambda t: t.replace('ami_secret = "s3cret"', ""), "asterisk[0].ami_secret: required"),
    (lambda t: t.replace('name = "pbx1"', 'name = "pbx 1"'), "asterisk[0].name"),
    (lambda t: t + '\n[map]\nsession_range = [1, 2]\n', "map.session_range"),
    (lambda t: t + '\n[map]\ntrunk_prefixes = ["PJSIP/trunk-", ""]\n', "map.trunk_prefixes[1]"),
    (lambda t: t + '\n[map]\ndialer_prefixes = [""]\n', "map.dialer_prefixes[0]"),
    (lambda t: t + '\n[map]\ndialer_contexts = "default"\n', "map.dialer_contexts"),
    (lambda t: t + '\n[map]\ndialer_dial_prefixes = ["9", "9a"]\n', "map.dialer_dial_prefixes[1]"),
    (lambda t: t + '\n[map]\ndialer_dial_prefixes = [""]\n', "map.dialer_dial_prefixes[0]"),
    (lambda t: t + '\n[map]\ndialer_dial_prefixes = [9]\n', "map.dialer_dial_prefixes"),
    (lambda t: t + '\n[security]\nlockout_failures = 0\n', "security.lockout_failures"),
    (lambda t: t + '\n[security]\nnotice = "beep,B"\n', "security.notice"),
    (lambda t: t.replace("[[asterisk]]", 'agi_listen = "tcpx:1"\n[[asterisk]]'), "server.agi_listen"),
    (lambda t: t + '\n[[agents]]\nnumber = 1001\n', "agents[0].number"),
    (lambda t: t + '\n[[agents]]\nnumber = "10a"\n', "agents[0].number"),
    (lambda t: t + '\n[[supervisors]]\nnumber = "9001"\nmodes = ["spy"]\n', "supervisors[0].modes[0]"),
    (lambda t: t + '\n[[agents]]\nnumber = "1"\ndevices = ["PJSIP/1,B"]\n', "agents[0].devices[0]"),
    (lambda t: t + '\n[[agents]]\nnumber = "1"\n[[agents]]\nnumber = "1"\n', "agents[].number"),
    (lambda t: t + '\nsurprise = 1\n', "surprise: unknown key"),
    (lambda t: t.replace('pin_pepper = "a-long-enough-pepper-0123"', 'pin_pepper = "short"'),
     "server.pin_pepper"),
    (lambda t: t.replace('ami_secret = "s3cret"', 'ami_secret = "a\\nb"'), "asterisk[0].ami_secret"),
])
def test_errors_name_the_key(tmp_path: Path, edit, key: str) -> None:  # type: ignore[no-untyped-def]
    """Each bad value is reported with the exact key that holds it."""
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, edit(MINIMAL)))
    assert key in str(caught.value)


def test_not_toml_and_missing_file_are_clear(tmp_path: Path) -> None:
    """A syntax error or a missing file is a ConfigError that names the file."""
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(write(tmp_path, "[server\n"))
    with pytest.raises(ConfigError, match="no such file"):
        load(tmp_path / "missing.toml")


def test_check_config_command_reports_the_key_not_a_traceback(tmp_path: Path) -> None:
    """`fastagi-spy check-config` exits 2 with one line naming the key."""
    bad = write(tmp_path, MINIMAL.replace('ami_secret = "s3cret"', ""))
    done = subprocess.run([sys.executable, "-m", "fastagi_spy.cli", "check-config", str(bad)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "asterisk[0].ami_secret: required" in done.stderr
    assert "Traceback" not in done.stderr
    good = write(tmp_path, MINIMAL)
    done = subprocess.run([sys.executable, "-m", "fastagi_spy.cli", "check-config", str(good)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and "OK" in done.stdout


def test_map_rules_reach_the_live_map(tmp_path: Path) -> None:
    """[map] keys become the model's rules under the same names."""
    text = MINIMAL + (
        '\n[map]\ndialer_contexts = ["default"]\ndialer_prefixes = ["PJSIP/dialer-"]\n'
        'dialer_dial_prefixes = ["9", "91"]\nlogged_in_by = "login"\nsession_quarantine = 60\n'
    )
    rules = load(write(tmp_path, text)).map_rules
    assert rules.dialer_contexts == frozenset({"default"})
    assert rules.dialer_prefixes == ("PJSIP/dialer-",)
    assert rules.dialer_dial_prefixes == ("9", "91")
    assert (rules.logged_in_by, rules.session_quarantine) == ("login", 60.0)
    defaults = load(write(tmp_path, MINIMAL)).map_rules
    assert (defaults.logged_in_by, defaults.session_quarantine) == ("registration", 600.0)


@pytest.mark.parametrize("line, key", [
    ('logged_in_by = "queue"', "map.logged_in_by"),
    ("session_quarantine = -1", "map.session_quarantine"),
    ('session_quarantine = "10m"', "map.session_quarantine"),
])
def test_bad_map_login_and_quarantine_keys_are_named(tmp_path: Path, line: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load(write(tmp_path, MINIMAL + f"\n[map]\n{line}\n"))


# -- where FastAGI calls may come from, and how many ------------------------------------------

def _asterisk_key(line: str) -> Callable[[str], str]:
    return lambda t: t.replace('ami_secret = "s3cret"', f'ami_secret = "s3cret"\n{line}')


@pytest.mark.parametrize("edit, key", [
    (_asterisk_key('agi_peers = "127.0.0.1"'), "asterisk[0].agi_peers: expected a list"),
    (_asterisk_key("agi_peers = []"), "asterisk[0].agi_peers: list at least one"),
    (_asterisk_key('agi_peers = ["127.0.0.1", "pbx1.example"]'), "asterisk[0].agi_peers[1]"),
    (_asterisk_key('agi_peers = ["10.0.0.1/24"]'), "asterisk[0].agi_peers[0]"),  # host bits set
    (_asterisk_key('agi_peers = ["0.0.0.0/0"]'), "asterisk[0].agi_peers[0]: '0.0.0.0/0' would"),
    (_asterisk_key("agi_peers = [1]"), "asterisk[0].agi_peers[0]"),
    (_asterisk_key('ami_host = "pbx1.example"'), "asterisk[0].agi_peers: required when ami_host"),
    (lambda t: t.replace("[[asterisk]]", "max_agi_sessions = 0\n[[asterisk]]"),
     "server.max_agi_sessions: must be between 1 and 10000"),
    (lambda t: t.replace("[[asterisk]]", "max_agi_sessions = 2.5\n[[asterisk]]"),
     "server.max_agi_sessions: expected a whole number"),
    (lambda t: t.replace("[[asterisk]]", "command_timeout = 0\n[[asterisk]]"),
     "server.command_timeout"),
])
def test_agi_peer_and_cap_errors_name_the_key(tmp_path: Path, edit, key: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, edit(MINIMAL)))
    assert key in str(caught.value)


def test_agi_peers_default_to_the_ami_host_address_and_take_networks(tmp_path: Path) -> None:
    """Unset, a server's AGI peer is its ami_host when that is an address (so the minimal,
    single-server config needs no new key); listed, addresses and networks both work."""
    from ipaddress import ip_network

    config = load(write(tmp_path, MINIMAL))
    assert config.asterisk[0].agi_peers == (ip_network("127.0.0.1"),)
    assert config.max_agi_sessions == 100 and config.command_timeout == 30.0
    config = load(write(tmp_path, _asterisk_key('ami_host = "10.0.0.5"')(MINIMAL)))
    assert config.asterisk[0].agi_peers == (ip_network("10.0.0.5"),)
    text = _asterisk_key('ami_host = "pbx1.example"\nagi_peers = ["10.0.0.5", "10.0.1.0/24", "::1"]')
    config = load(write(tmp_path, text(MINIMAL).replace(
        "[[asterisk]]", "max_agi_sessions = 7\ncommand_timeout = 4\n[[asterisk]]")))
    assert config.asterisk[0].agi_peers == (
        ip_network("10.0.0.5"), ip_network("10.0.1.0/24"), ip_network("::1"))
    assert config.max_agi_sessions == 7 and config.command_timeout == 4.0
