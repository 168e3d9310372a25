"""One definition of a safe device/channel name, shared by the config and ChanSpy."""

from __future__ import annotations

import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastagi_spy.config import ConfigError, parse
from fastagi_spy.domain import Mode
from fastagi_spy.supervise.chanspy import chanspy_argument
from tests.unit.test_config import MINIMAL as BASE


def config_accepts(device: str) -> bool:
    raw = tomllib.loads(BASE)
    raw["agents"] = [{"number": "1001", "devices": [device]}]
    try:
        parse(raw)
    except ConfigError as exc:
        assert "agents[0].devices[0]" in str(exc)
        return False
    return True


def chanspy_accepts(channel: str) -> bool:
    try:
        chanspy_argument(channel, Mode.LISTEN)
    except ValueError:
        return False
    return True


# "/" and ";" are structure (TECH/resource; Local's ";1"/";2"), not part of a resource.
@pytest.mark.parametrize("char", [chr(c) for c in range(0x300) if chr(c) not in "/;"])
def test_a_character_the_config_allows_in_a_device_is_one_chanspy_takes(char: str) -> None:
    """Character by character, the config and ChanSpy agree (today '+', as in an E.164
    device "PJSIP/+4930123", passed the config and was then refused at spy time)."""
    device = f"PJSIP/10{char}01"
    assert config_accepts(device) == chanspy_accepts(f"{device}-0000002a")


_RESOURCE = st.text(st.sampled_from("abcXYZ019@_.+-"), min_size=1, max_size=72)


@given(st.text(st.sampled_from("PJSIPLocalIAX2"), min_size=1, max_size=16), _RESOURCE)
def test_every_device_the_config_accepts_has_channels_chanspy_accepts(tech: str, rest: str) -> None:
    """Even at the longest, a device plus Asterisk's suffix (and Local's ";2") is accepted."""
    device = f"{tech}/{rest}"
    assert config_accepts(device)
    assert chanspy_accepts(f"{device}-0000002a;2")


@pytest.mark.parametrize("device", ["PJSIP/1001\n", "PJSIP/1001,B", "PJSIP/${X}", "PJSIP/1 1",
                                    "PJSIP/", "/1001", "all", "PJSIP/" + "1" * 73])
def test_hostile_or_malformed_devices_are_config_errors(device: str) -> None:
    """A trailing newline used to slip through the old "^...$" pattern."""
    assert not config_accepts(device)
