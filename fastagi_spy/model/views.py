"""Public views of agents, calls and sessions, and the changes between them.

A view is a small comparable tuple computed from the tables; a change is only
reported when a view differs from the one reported before, and the JSON-ready
payload is built only then.
"""

from __future__ import annotations

from typing import NamedTuple

from fastagi_spy.model.agents import Agent, AgentStatus, SessionSource
from fastagi_spy.model.calls import Call, Direction
from fastagi_spy.model.changes import Change, Lazy, Payload
from fastagi_spy.model.channels import STATE_RINGING, Channel
from fastagi_spy.model.queues import QueueBook, queue_payload
from fastagi_spy.model.resolve import facing_call, order, with_others
from fastagi_spy.model.tables import Tables

__all__ = [
    "AgentView",
    "CallView",
    "SessionView",
    "agent_payload",
    "agent_view",
    "call_payload",
    "call_view",
    "flush",
    "queue_changes",
    "session_payload",
    "session_view",
]


class AgentCall(NamedTuple):
    """The call an agent is on, from the agent's leg."""

    id: str
    customer_number: str
    customer_name: str
    direction: Direction
    ringing_at: float
    answered_at: float | None
    on_hold: bool


class AgentView(NamedTuple):
    """Everything an agent's payload shows except the elapsed time."""

    status: AgentStatus
    paused: bool
    logged_in: bool
    session_id: str | None
    channel: str | None
    uniqueid: str | None
    call: AgentCall | None
    # Last, with a default: callers that build a view by hand need not know it.
    pause_reason: str | None = None


class CallView(NamedTuple):
    """Everything a call's payload shows except the elapsed time."""

    customer_number: str
    customer_name: str
    direction: Direction
    ringing_at: float | None
    answered_at: float | None
    ended_at: float | None
    agents: tuple[str, ...]


class SessionView(NamedTuple):
    """A session id and the live device channel it points at."""

    agent_number: str
    channel: str | None
    uniqueid: str | None
    source: SessionSource | None
    shared: bool


def _agent_call(tables: Tables, agent: Agent, channel: Channel) -> AgentCall | None:
    leg = channel
    call = tables.calls.get(channel.linkedid)
    if channel.room is not None:
        # A VICIdial agent sits in its room all day; the customer is the other
        # party in the room, not the agent's own call into it.
        channels = tables.channels
        peers = sorted(
            (
                channels[u]
                for u in tables.rooms.get(channel.room, ())
                if u in channels and channels[u].agent is None
            ),
            key=order,
        )
        if peers:
            leg = peers[0]
            call = tables.calls.get(leg.linkedid)
    if call is None:
        return None
    if leg is not channel and call.linkedid in agent.channels:
        # bridge_channel.c moved the customer into the agent's own (older) call,
        # so that call describes the agent dialling the room: use the leg itself.
        number = leg.cid_num if leg.inbound else (leg.conn_num or leg.cid_num)
        name = leg.cid_name if leg.inbound else leg.conn_name
        listed = tables.directory.customer_name(number) if number else None
        direction: Direction = "incoming" if leg.inbound else "outgoing"
        return AgentCall(
            call.linkedid,
            number,
            listed if listed is not None else name,
            direction,
            leg.ringing_at if leg.ringing_at is not None else leg.created_at,
            leg.answered_at,
            channel.held,
        )
    return AgentCall(
        call.linkedid,
        call.customer_number,
        call.customer_name,
        call.direction,
        leg.ringing_at if leg.ringing_at is not None else leg.created_at,
        leg.answered_at,
        channel.held,
    )


def _activity(tables: Tables, agent: Agent) -> tuple[AgentStatus, Channel | None]:
    """What the agent's channels are doing, and the one channel that shows it."""
    uniqueids = agent.channels
    if not uniqueids:
        return "Idle", None
    channels = tables.channels
    # "Ringing" (5) is a phone alerting; "Ring" (4) only says a channel came
    # into Asterisk (a Local ;2 half, a phone going off-hook), so a leg rings
    # only while it is "Ringing" or a Dial to or from it is in progress.
    if len(uniqueids) == 1:
        # Most agents have one channel at most: no lists, no sorting.
        for uniqueid in uniqueids:
            channel = channels[uniqueid]
            if with_others(tables, channel):
                return "Talking", channel
            if channel.dialing or channel.state == STATE_RINGING:
                return "Ringing", channel
            return "Idle", channel
    mine = [channels[u] for u in uniqueids]
    busy = sorted((c for c in mine if with_others(tables, c)), key=order)
    if busy:
        return "Talking", facing_call(tables, agent, busy)[0]
    ringing = [c for c in mine if c.dialing or c.state == STATE_RINGING]
    if ringing:
        return "Ringing", min(ringing, key=order)
    # Prefer the channel sitting in the session room, else the newest.
    in_room = [c for c in mine if c.room is not None]
    return "Idle", min(in_room, key=order) if in_room else max(mine, key=order)


def agent_view(tables: Tables, agent: Agent) -> AgentView:
    """The agent's status, session, live channel and current call."""
    activity, primary = _activity(tables, agent)
    paused = agent.paused
    # A pause is the supervisor's first question ("why is nobody taking calls?"),
    # so it wins; a paused agent still on a call keeps the call and its channel.
    status: AgentStatus = "Paused" if paused else activity
    reason = agent.pause_reason if paused else None
    # tuple.__new__ directly: a NamedTuple's own __new__ is a Python function.
    if primary is None:
        return _tuple_new(
            AgentView,
            (status, paused, bool(agent.logins), agent.session_id, None, None, None, reason),
        )
    call = _agent_call(tables, agent, primary) if activity != "Idle" else None
    return _tuple_new(
        AgentView,
        (
            status,
            paused,
            bool(agent.logins),
            agent.session_id,
            primary.name,
            primary.uniqueid,
            call,
            reason,
        ),
    )


def _elapsed(answered_at: float | None, until: float) -> float:
    if answered_at is None:
        return 0.0
    return round(max(0.0, until - answered_at), 3)


def agent_payload(agent: Agent, view: AgentView, now: float) -> Payload:
    """The agent as JSON: identity, status, session, live channel and call."""
    return _agent_payload(agent.number, agent.name, agent.team, agent.sorted_devices, view, now)


def _agent_payload(
    number: str, name: str, team: str, devices: tuple[str, ...], view: AgentView, now: float
) -> Payload:
    call = view.call
    call_payload: Payload | None = None
    if call is not None:
        call_payload = {
            "id": call.id,
            "customer_number": call.customer_number,
            "customer_name": call.customer_name,
            "direction": call.direction,
            "ringing_at": call.ringing_at,
            "answered_at": call.answered_at,
            "elapsed_s": _elapsed(call.answered_at, now),
            "on_hold": call.on_hold,
        }
    return {
        "number": number,
        "name": name,
        "team": team,
        "devices": list(devices),
        "status": view.status,
        "paused": view.paused,
        "pause_reason": view.pause_reason,
        "logged_in": view.logged_in,
        "session_id": view.session_id,
        "channel": view.channel,
        "uniqueid": view.uniqueid,
        "call": call_payload,
    }


def call_view(tables: Tables, call: Call) -> CallView:
    """The call's customer, direction, times and the agents on it."""
    channels = tables.channels
    found: set[str] = set()
    for uniqueid in call.channels:
        channel = channels.get(uniqueid)
        if channel is not None and channel.agent is not None:
            found.add(channel.agent)
    agents = sorted(found) if len(found) > 1 else list(found)
    return _tuple_new(
        CallView,
        (
            call.customer_number,
            call.customer_name,
            call.direction,
            call.ringing_at,
            call.answered_at,
            call.ended_at,
            tuple(agents),
        ),
    )


def call_payload(linkedid: str, view: CallView, now: float) -> Payload:
    """The call as JSON; elapsed_s is talk time, frozen once the call ended."""
    until = view.ended_at if view.ended_at is not None else now
    return {
        "id": linkedid,
        "customer_number": view.customer_number,
        "customer_name": view.customer_name,
        "direction": view.direction,
        "ringing_at": view.ringing_at,
        "answered_at": view.answered_at,
        "ended_at": view.ended_at,
        "elapsed_s": _elapsed(view.answered_at, until),
        "agents": list(view.agents),
    }


def session_view(tables: Tables, session_id: str) -> SessionView | None:
    """Who holds the session now (None once nobody does)."""
    holders = tables.sessions.get(session_id)
    if not holders:
        return None
    number = min(holders)
    agent = tables.agents[number]
    shown = tables.emitted_agents.get(number)
    if isinstance(shown, AgentView):
        channel, uniqueid = shown.channel, shown.uniqueid
    else:
        view = agent_view(tables, agent)
        channel, uniqueid = view.channel, view.uniqueid
    return SessionView(number, channel, uniqueid, agent.session_source, len(holders) > 1)


def session_payload(session_id: str, view: SessionView) -> Payload:
    """The session as JSON."""
    return {
        "session_id": session_id,
        "agent_number": view.agent_number,
        "channel": view.channel,
        "uniqueid": view.uniqueid,
        "source": view.source,
        "shared": view.shared,
    }


_tuple_new = tuple.__new__


def _ordered(keys: set[str]) -> list[str]:
    # Sets iterate in hash order, which varies per process: sort for stable output.
    return sorted(keys) if len(keys) > 1 else list(keys)


def queue_changes(server: str, book: QueueBook, now: float) -> list[Change]:
    """A change for each queue whose view differs from the one reported before."""
    if not book.dirty:
        return []
    names = _ordered(book.dirty)
    book.dirty.clear()
    changes: list[Change] = []
    for name in names:
        if name not in book.queues:
            continue
        view = book.view(name, now)
        if book.emitted.get(name) != view:
            book.emitted[name] = view
            changes.append(Change(server, "queue", name, Lazy((queue_payload, name, view, now))))
    return changes


def flush(server: str, tables: Tables, now: float) -> list[Change]:
    """Turn everything marked dirty into changes, and clear the marks.

    The changes of every read are made as ``tuple.__new__(Change, (..., [payload]))``,
    which is ``Change(...)`` without a Python frame.
    """
    changes: list[Change] = []
    if tables.ended:
        for linkedid, ended in tables.ended.items():
            shown = tables.emitted_calls.pop(linkedid, None)
            if isinstance(shown, CallView):
                final = shown._replace(ended_at=ended.ended_at)
                changes.append(
                    Change(server, "call", linkedid, Lazy((call_payload, linkedid, final, now)))
                )
                changes.append(Change(server, "call", linkedid, None))
        tables.ended.clear()
    if tables.dirty_agents:
        numbers = _ordered(tables.dirty_agents)
        tables.dirty_agents.clear()
        for number in numbers:
            agent = tables.agents.get(number)
            if agent is None:
                continue
            # Session ids were settled at the end of the read (Tables.settle_sessions).
            view = agent_view(tables, agent)
            # Queue members are counted available / on a call / paused per queue.
            if agent.queues or number in tables.queues.placed:
                tables.queues.place(number, agent.queues, view.call is not None)
            shown = tables.emitted_agents.get(number)
            if shown != view:
                tables.emitted_agents[number] = view
                payload = Lazy(
                    (
                        _agent_payload,
                        number,
                        agent.name,
                        agent.team,
                        agent.sorted_devices,
                        view,
                        now,
                    )
                )
                changes.append(_tuple_new(Change, (server, "agent", number, [payload])))
                # A session points at the agent's live channel: follow it.
                if view.session_id is not None and (
                    not isinstance(shown, AgentView)
                    or shown.channel != view.channel
                    or shown.uniqueid != view.uniqueid
                ):
                    tables.touched_sessions.add(view.session_id)
    if tables.dirty_calls:
        linkedids = _ordered(tables.dirty_calls)
        tables.dirty_calls.clear()
        for linkedid in linkedids:
            call = tables.calls.get(linkedid)
            if call is None:
                continue
            cview = call_view(tables, call)
            if tables.emitted_calls.get(linkedid) != cview:
                tables.emitted_calls[linkedid] = cview
                payload = Lazy((call_payload, linkedid, cview, now))
                changes.append(_tuple_new(Change, (server, "call", linkedid, [payload])))
    changes.extend(queue_changes(server, tables.queues, now))
    if tables.touched_sessions:
        session_ids = _ordered(tables.touched_sessions)
        tables.touched_sessions.clear()
        for session_id in session_ids:
            sview = session_view(tables, session_id)
            if tables.emitted_sessions.get(session_id) == sview:
                continue
            if sview is None:
                del tables.emitted_sessions[session_id]
                changes.append(Change(server, "session", session_id, None))
            else:
                tables.emitted_sessions[session_id] = sview
                payload = Lazy((session_payload, session_id, sview))
                changes.append(_tuple_new(Change, (server, "session", session_id, [payload])))
    return changes
