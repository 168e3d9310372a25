"""Synthetic CoreShowChannel items: agents on bridged calls with customers, for benchmarks."""

from __future__ import annotations

from collections.abc import Iterable

from fastagi_spy.wire.ami import AMIMessage


def _item(channel: str, uniqueid: str, linkedid: str, bridge: str, context: str,
          caller: str, connected: str, app: str) -> AMIMessage:
    return AMIMessage((
        ("Event", "CoreShowChannel"), ("ActionID", "bench-1"), ("Channel", channel),
        ("ChannelState", "6"), ("ChannelStateDesc", "Up"), ("CallerIDNum", caller),
        ("CallerIDName", "<unknown>"), ("ConnectedLineNum", connected),
        ("ConnectedLineName", "<unknown>"), ("Language", "en"), ("AccountCode", ""),
        ("Context", context), ("Exten", "s"), ("Priority", "1"), ("Uniqueid", uniqueid),
        ("Linkedid", linkedid), ("Application", app), ("ApplicationData", ""),
        ("Duration", "00:01:00"), ("BridgeId", bridge),
    ))


def bridged_call_items(agents: Iterable[str]) -> list[AMIMessage]:
    """For each agent number N: PJSIP/N-xxxx bridged with a trunk leg that called in."""
    items = []
    for i, number in enumerate(agents):
        customer = f"1700000000.{2 * i}"
        agent = f"1700000000.{2 * i + 1}"
        bridge = f"bridge-{i:08x}"
        caller = f"555{i:07d}"
        items.append(_item(f"PJSIP/trunk-{i:08x}", customer, customer, bridge, "from-trunk",
                           caller, number, "Dial"))
        items.append(_item(f"PJSIP/{number}-{i:08x}", agent, customer, bridge, "from-internal",
                           number, caller, "AppDial"))
    return items
