"""Least-privilege rules: what the features need, what ListCommands and manager.conf show,
and the shipped AMI account (and the README's copy of it) matching the rules."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from fastagi_spy.amiperms import (
    CLASSES,
    ManagerConfError,
    account_from_manager_conf,
    needs,
    perm_list,
    proven_write,
)
from fastagi_spy.bundle import AMI_ACCOUNT_FILE, DIALPLAN_DIR, ami_account_text
from fastagi_spy.config import Config, parse

REPO = Path(__file__).resolve().parents[2]


def config(notice: str = "", modes: str = '["listen"]') -> Config:
    return parse(tomllib.loads(f"""
[server]
pin_pepper = "a-long-enough-pepper-0123"
[[asterisk]]
name = "pbx1"
ami_username = "fastagi-spy"
ami_secret = "s"
[security]
notice = "{notice}"
[[supervisors]]
number = "9001"
modes = {modes}
"""))


FULL = '["listen", "whisper", "barge"]'


def test_dtmf_only_with_mode_switching_and_originate_only_with_the_notice() -> None:
    plain = needs(config())
    assert "dtmf" not in plain.read and "originate" not in plain.write
    switching = needs(config(modes=FULL))
    assert "dtmf" in switching.read and "originate" not in switching.write
    notice = needs(config(notice="beep"))
    assert "originate" in notice.write and "dtmf" not in notice.read


def test_the_shipped_account_is_exactly_what_every_feature_needs() -> None:
    """The bundle's account (the most a site needs: notice and switching on) grants no
    class the rules do not name."""
    account = account_from_manager_conf(Path(str(DIALPLAN_DIR / AMI_ACCOUNT_FILE)),
                                        "fastagi-spy")
    full = needs(config(notice="beep", modes=FULL))
    assert account.read == set(full.read)
    assert set(full.write) <= account.write <= set(full.write) | set(full.optional_write)


def test_the_readme_states_the_shipped_accounts_permissions() -> None:
    readme = (REPO / "README.md").read_text()
    for key in ("read", "write"):
        line = re.search(rf"^{key} = (\S+)$", ami_account_text(), re.M)
        assert line, key
        assert f"`{key} = {line.group(1)}`" in readme, f"README lacks `{key} = {line.group(1)}`"


def test_listcommands_proves_only_single_class_actions() -> None:
    listing = [
        ("Response", "Success"),
        ("Originate", "Originate a call.  (Priv: originate,all)"),
        ("Hangup", "Hangup channel.  (Priv: system,call,all)"),  # system or call: unproven
        ("Redirect", "Redirect (transfer) a call.  (Priv: call,all)"),
        ("Ping", "Keepalive command.  (Priv: <none>)"),
    ]
    proven, actions = proven_write(listing)
    assert proven == {"originate", "call"}
    assert actions == {"Originate", "Hangup", "Redirect", "Ping"}
    assert proven_write([("Hangup", "Hangup channel.  (Priv: system,call,all)")])[0] == set()


def test_perm_list_reads_like_asterisk() -> None:
    assert perm_list("all") == set(CLASSES)
    assert perm_list(" System, call ,nonsense") == {"system", "call"}
    assert perm_list("none") == set()


def test_manager_conf_follows_includes_and_the_last_line_wins(tmp_path: Path) -> None:
    (tmp_path / "inc.conf").write_text("[spy]\nread = system ; comment\nread = call,dtmf\n"
                                       "write = reporting\n")
    (tmp_path / "manager.conf").write_text('[general]\nenabled = yes\n#include "inc.conf"\n'
                                           "[other]\nread = all\n")
    account = account_from_manager_conf(tmp_path / "manager.conf", "spy")
    assert account.read == {"call", "dtmf"} and account.write == {"reporting"}


@pytest.mark.parametrize("text, problem", [
    ("[general]\n", "no [spy] account"),
    ("[spy](tpl)\nread = all\n", "uses a template"),
])
def test_manager_conf_problems_are_named(tmp_path: Path, text: str, problem: str) -> None:
    (tmp_path / "manager.conf").write_text(text)
    with pytest.raises(ManagerConfError, match=re.escape(problem)):
        account_from_manager_conf(tmp_path / "manager.conf", "spy")


def test_unreadable_manager_conf_is_named(tmp_path: Path) -> None:
    with pytest.raises(ManagerConfError, match="cannot read"):
        account_from_manager_conf(tmp_path / "missing.conf", "spy")
