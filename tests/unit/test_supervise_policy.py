"""Tests for the pure supervision policy: rights, ChanSpy arguments and target digits."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastagi_spy.domain import AgentEntry, Mode, SupervisorEntry
from fastagi_spy.supervise.chanspy import (
    chanspy_argument,
    parse_target_digits,
    spy_group_for_team,
)
from fastagi_spy.supervise.rights import Decision, may_spy, may_switch_modes

SALES_LISTENER = SupervisorEntry("9001", "Sue", frozenset({"sales"}), frozenset({Mode.LISTEN}))
ALL_MODES = SupervisorEntry("9002", "Max", frozenset({"sales", "support"}), frozenset(Mode))
SALES_AGENT = AgentEntry("1001", "Ann", "sales")
SUPPORT_AGENT = AgentEntry("1002", "Bob", "support")
CEO = AgentEntry("1003", "Cat", "sales")
NEVER = frozenset({"1003"})


# --- rights ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("supervisor", "agent", "mode", "expected"),
    [
        (SALES_LISTENER, SALES_AGENT, Mode.LISTEN, Decision(True, "ok")),
        (SALES_LISTENER, SALES_AGENT, Mode.WHISPER, Decision(False, "mode")),
        (SALES_LISTENER, SALES_AGENT, Mode.BARGE, Decision(False, "mode")),
        (SALES_LISTENER, SUPPORT_AGENT, Mode.LISTEN, Decision(False, "team")),
        (SALES_LISTENER, SUPPORT_AGENT, Mode.BARGE, Decision(False, "team")),
        (SALES_LISTENER, CEO, Mode.BARGE, Decision(False, "never_spy")),
        (ALL_MODES, SALES_AGENT, Mode.BARGE, Decision(True, "ok")),
        (ALL_MODES, SUPPORT_AGENT, Mode.WHISPER, Decision(True, "ok")),
        (ALL_MODES, CEO, Mode.LISTEN, Decision(False, "never_spy")),
    ],
)
def test_rights_matrix(
    supervisor: SupervisorEntry, agent: AgentEntry, mode: Mode, expected: Decision
) -> None:
    """Each supervisor/agent/mode combination gets the expected decision and reason."""
    assert may_spy(supervisor, agent, mode, NEVER) == expected


def test_rights_order_never_spy_before_team_before_mode() -> None:
    """When several checks fail, never_spy is reported first, then team."""
    outsider = AgentEntry("1003", "Cat", "board")
    assert may_spy(SALES_LISTENER, outsider, Mode.BARGE, NEVER).reason == "never_spy"
    assert may_spy(SALES_LISTENER, outsider, Mode.BARGE, frozenset()).reason == "team"


def test_team_match_is_exact() -> None:
    """Team "sales" does not grant "sales2" or "Sales"."""
    for team in ("sales2", "Sales", "sale"):
        agent = AgentEntry("1004", "Dee", team)
        assert may_spy(ALL_MODES, agent, Mode.LISTEN, frozenset()).reason == "team"


def test_may_switch_modes_needs_all_three() -> None:
    """The DTMF mode switch is only for supervisors holding every mode."""
    assert may_switch_modes(ALL_MODES)
    assert not may_switch_modes(SALES_LISTENER)


# --- chanspy_argument ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (Mode.LISTEN, "PJSIP/1001-0000002a,quES"),
        (Mode.WHISPER, "PJSIP/1001-0000002a,quwES"),
        (Mode.BARGE, "PJSIP/1001-0000002a,quBES"),
    ],
)
def test_chanspy_argument_modes(mode: Mode, expected: str) -> None:
    """Each mode yields the exact option string."""
    assert chanspy_argument("PJSIP/1001-0000002a", mode) == expected


def test_chanspy_argument_switch_and_group() -> None:
    """allow_switch adds d and spy_group adds g(...), after E."""
    assert (
        chanspy_argument("Local/1001@agents-0000001b;2", Mode.LISTEN, allow_switch=True)
        == "Local/1001@agents-0000001b;2,quESd"
    )
    assert (
        chanspy_argument("PJSIP/1001-0000002a", Mode.BARGE, spy_group="team_sales")
        == "PJSIP/1001-0000002a,quBESg(team_sales)"
    )
    assert (
        chanspy_argument("1700000000.42", Mode.WHISPER, allow_switch=True, spy_group="g1")
        == "1700000000.42,quwESdg(g1)"
    )


@pytest.mark.parametrize(
    "channel",
    [
        "",
        "PJSIP/1001,B",
        "PJSIP/1001-1,quBES",
        "PJSIP/1001)",
        "PJSIP/1001(",
        "PJSIP/10\n01",
        "PJSIP/1001\r",
        "PJSIP/1001\x00",
        "PJSIP/1001 x",
        "PJSIP/1001|x",
        "PJSIP/${EVIL}",
        "PJSIP/\uff11\uff10\uff10\uff11",
        "P" * 101,
    ],
)
def test_chanspy_argument_rejects_hostile_channels(channel: str) -> None:
    """Channels with separators, control or non-ASCII characters, or too long, are refused."""
    with pytest.raises(ValueError, match="channel"):
        chanspy_argument(channel, Mode.LISTEN)


@pytest.mark.parametrize("group", ["", "a:b", "a)", "a,b", "x" * 33, "grp\n"])
def test_chanspy_argument_rejects_bad_groups(group: str) -> None:
    """Spy groups outside [A-Za-z0-9_]{1,32} are refused."""
    with pytest.raises(ValueError, match="group"):
        chanspy_argument("PJSIP/1001-0000002a", Mode.LISTEN, spy_group=group)


@given(st.text(max_size=120))
def test_chanspy_argument_never_leaks_separators(channel: str) -> None:
    """Any accepted channel produces exactly one comma and only the expected options."""
    try:
        arg = chanspy_argument(channel, Mode.BARGE)
    except ValueError:
        return
    assert arg == f"{channel},quBES"
    assert arg.count(",") == 1
    assert "(" not in arg
    assert ")" not in arg


# --- spy_group_for_team ----------------------------------------------------------------


def test_spy_group_for_team() -> None:
    """Safe names are kept; unsafe ones hash, so near-identical names stay distinct."""
    assert spy_group_for_team("sales") == "team_sales"
    assert spy_group_for_team("Sales_2") == "team_Sales_2"
    hashed = spy_group_for_team("a-b")
    assert re.fullmatch(r"team_[0-9a-f]{12}", hashed)
    assert hashed != spy_group_for_team("ab")
    assert hashed == spy_group_for_team("a-b")
    assert re.fullmatch(r"team_[0-9a-f]{12}", spy_group_for_team("x" * 28))


@given(st.text())
def test_spy_group_for_team_is_always_a_valid_group(team: str) -> None:
    """Every team name maps to a token chanspy_argument accepts."""
    group = spy_group_for_team(team)
    assert chanspy_argument("PJSIP/1-1", Mode.LISTEN, spy_group=group).endswith(f"g({group})")


# --- parse_target_digits ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1001", "1001"),
        ("1001#", "1001"),
        ("0", "0"),
        ("1234567", "1234567"),
        ("1234567890", "1234567890"),
        ("12345678901", None),
        ("", None),
        ("#", None),
        ("1001##", None),
        ("1001,B", None),
        ("1001)", None),
        ("10\n01", None),
        ("1001\n", None),
        (" 1001", None),
        ("-1", None),
        ("\uff11\uff10\uff10\uff11", None),
        ("\u0661\u0662\u0663", None),
        ("*222", None),
    ],
)
def test_parse_target_digits_vectors(raw: str, expected: str | None) -> None:
    """Digits (with an optional trailing #) pass; anything else is None."""
    assert parse_target_digits(raw) == expected


def test_parse_target_digits_max_len() -> None:
    """max_len bounds the number of digits."""
    assert parse_target_digits("1234", max_len=4) == "1234"
    assert parse_target_digits("12345", max_len=4) is None
    with pytest.raises(ValueError, match="max_len"):
        parse_target_digits("1", max_len=0)


@given(st.text(max_size=20))
def test_parse_target_digits_output_is_digits_or_none(raw: str) -> None:
    """The result is None or a non-empty string of ASCII digits taken from the input."""
    result = parse_target_digits(raw)
    assert result is None or (re.fullmatch(r"[0-9]{1,10}", result) and raw.startswith(result))


@given(st.from_regex(r"[0-9]{1,10}#?", fullmatch=True))
def test_parse_target_digits_accepts_all_valid(raw: str) -> None:
    """Every well-formed target is accepted and stripped of its #."""
    assert parse_target_digits(raw) == raw.rstrip("#")
