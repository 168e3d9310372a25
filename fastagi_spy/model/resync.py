"""Build a server's tables from the CoreShowChannels, QueueStatus and Agents lists
(QueueStatus: its QueueParams, QueueMember and QueueEntry items).

The lists describe "now" but not history: a CoreShowChannel item has the
channel's age (Duration) and its bridge (BridgeId), not when it rang or was
answered.  The times derived here are the best bounds those fields allow.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastagi_spy.domain import device_of_channel
from fastagi_spy.model.events import (
    AGENT_VARIABLE,
    EventLike,
    Malformed,
    chanvar,
    is_session_id,
    required,
)
from fastagi_spy.model.handlers import pool_login, queue_entry, queue_member, queue_params
from fastagi_spy.model.tables import Tables

__all__ = ["load"]

# Applications whose first argument is the conference room (app_confbridge,
# app_meetme): "ConfBridge(9600001,vici_agent_bridge,...)" shows as
# Application "ConfBridge", ApplicationData "9600001,vici_agent_bridge,...".
_ROOM_APPLICATIONS = frozenset(("ConfBridge", "MeetMe"))


def _duration(raw: str | None) -> int | None:
    """Seconds from CoreShowChannel's "HH:MM:SS" (hours may exceed 99), else None."""
    if raw is None:
        return None
    parts = raw.split(":")
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts):
        return None
    hours, minutes, seconds = (int(p) for p in parts)
    return hours * 3600 + minutes * 60 + seconds


def _load_channel(tables: Tables, item: EventLike, now: float) -> None:
    age = _duration(item.get("Duration"))
    channel = tables.channel(item, "", now - age if age is not None else now)
    if channel is None:
        return
    bridge = item.get("BridgeId")
    if bridge:
        tables.enter_bridge(channel, bridge, None, None)
    if item.get("Application") in _ROOM_APPLICATIONS:
        room = (item.get("ApplicationData") or "").partition(",")[0]
        if is_session_id(room):
            tables.join_room(channel, room, None)
    # With channelvars=FASTAGI_SPY_AGENT the leg says again which agent answers on it.
    agent = chanvar(item.get_all("ChanVariable"), AGENT_VARIABLE)
    if agent:
        tables.set_agent_var(channel, agent)


# app_agent_pool.c action_agents: the Status of an agent logged in on a channel.
_POOL_LOGGED_IN = frozenset(("AGENT_IDLE", "AGENT_ONCALL"))


def _load_pool_agent(tables: Tables, item: EventLike) -> None:
    """An "Agents" list item: a logged-in pool agent carries the snapshot of the channel
    that ran AgentLogin, the device its calls are bridged to."""
    agent_id = required(item, "Agent")
    if item.get("Status") not in _POOL_LOGGED_IN:
        return  # AGENT_LOGGEDOFF: nothing to hold
    pool_login(tables, agent_id, device_of_channel(required(item, "Channel")))


def _settle_times(tables: Tables) -> None:
    # Two parties cannot have met before the younger of them existed, so that
    # is the answer time: exact for a fresh leg, an upper bound on talk time.
    channels = tables.channels
    for group in (*tables.bridges.values(), *tables.rooms.values()):
        if len(group) < 2:
            continue
        met = max(channels[u].created_at for u in group)
        for uniqueid in group:
            channel = channels[uniqueid]
            if channel.answered_at is None or channel.answered_at > met:
                channel.answered_at = met
    for call in tables.calls.values():
        members = [channels[u] for u in call.channels]
        rang = [c.ringing_at for c in members if c.ringing_at is not None]
        answered = [c.answered_at for c in members if c.answered_at is not None]
        call.ringing_at = min(rang) if rang else min(c.created_at for c in members)
        call.answered_at = min(answered) if answered else None


def load(
    tables: Tables,
    channels: Sequence[EventLike],
    queue_members: Sequence[EventLike],
    now: float,
    pool_agents: Sequence[EventLike] = (),
) -> None:
    """Fill fresh ``tables``; malformed items are skipped and counted."""
    # Members and pool logins first: their devices are then known when the channels
    # arrive, so no channel has to be re-attached later.
    for item in queue_members:
        # QueueStatus lists each queue's QueueParams, then its QueueMember and QueueEntry items.
        kind = item.event
        try:
            if kind == "QueueEntry":
                queue_entry(tables, item, now)
            elif kind == "QueueParams":
                queue_params(tables, item, now)
            else:
                queue_member(tables, item, now)
        except Malformed:
            tables.malformed += 1
    for item in pool_agents:
        try:
            _load_pool_agent(tables, item)
        except Malformed:
            tables.malformed += 1
    for item in channels:
        try:
            _load_channel(tables, item, now)
        except Malformed:
            tables.malformed += 1
    _settle_times(tables)
    tables.dirty_agents.update(tables.agents)
    tables.dirty_calls.update(tables.calls)
