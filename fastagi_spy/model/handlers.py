"""One function per AMI event the model follows, dispatched by event name.

Each handler reads and validates its fields, then calls the table moves.
Field names and formats are those of Asterisk 22's manager_channels.c,
manager_bridges.c, confbridge_manager.c, app_queue.c and app_agent_pool.c.
"""

from __future__ import annotations

from collections.abc import Callable

from fastagi_spy.model.agents import LOGIN_AGENT_POOL, Agent, normalise_interface
from fastagi_spy.model.channels import Channel
from fastagi_spy.model.events import (
    AGENT_VARIABLE,
    SESSION_VARIABLE,
    EventLike,
    Malformed,
    is_session_id,
    known,
    parse_state,
    required,
)
from fastagi_spy.model.queues import check_pause_reason, check_queue_name
from fastagi_spy.model.tables import Tables

__all__ = ["HANDLERS", "Handler", "pool_login", "queue_entry", "queue_member", "queue_params"]

Handler = Callable[[Tables, EventLike, float], None]


def _newchannel(tables: Tables, event: EventLike, now: float) -> None:
    uniqueid = event.get("Uniqueid")
    if not uniqueid:
        raise Malformed("missing Uniqueid")
    known_channel = tables.channels.get(uniqueid)
    channel = tables.channel(event, "", now, uniqueid)
    if known_channel is not None and channel is not None:
        # A repeated Newchannel (after a resync) still carries the current state.
        tables.set_state(channel, parse_state(event.get("ChannelState"), channel.state), now)


def _newstate(tables: Tables, event: EventLike, now: float) -> None:
    raw = event.get("ChannelState")
    if not raw:
        raise Malformed("missing ChannelState")
    state = parse_state(raw, 0)
    channel = tables.channel(event, "", now)
    if channel is not None:
        tables.set_state(channel, state, now)


def _newcallerid(tables: Tables, event: EventLike, now: float) -> None:
    channel = tables.channel(event, "", now)
    if channel is not None:
        tables.set_callerid(
            channel, known(event.get("CallerIDNum")), known(event.get("CallerIDName"))
        )


def _newconnectedline(tables: Tables, event: EventLike, now: float) -> None:
    channel = tables.channel(event, "", now)
    if channel is not None:
        tables.set_connected(
            channel, known(event.get("ConnectedLineNum")), known(event.get("ConnectedLineName"))
        )


def _rename(tables: Tables, event: EventLike, now: float) -> None:
    # channel.c publishes "Channel: <old>", "Newname: <new>", "Uniqueid": no
    # snapshot, so an unknown uniqueid cannot be created from it.
    uniqueid = required(event, "Uniqueid")
    new_name = required(event, "Newname")
    channel = tables.channels.get(uniqueid)
    if channel is not None and channel.name != new_name:
        tables.rename(channel, new_name)


def _hangup(tables: Tables, event: EventLike, now: float) -> None:
    uniqueid = event.get("Uniqueid")
    if not uniqueid:
        raise Malformed("missing Uniqueid")
    tables.hangup(uniqueid, now)


def _dial_legs(tables: Tables, event: EventLike, now: float) -> tuple[Channel | None, Channel | None]:
    """The caller (or None) and destination channels of a DialBegin/DialEnd."""
    get = event.get
    dest_uniqueid = get("DestUniqueid")
    if not dest_uniqueid:
        raise Malformed("missing DestUniqueid")
    # The caller snapshot is absent when nothing dialled (Originate, ARI).
    uniqueid = get("Uniqueid")
    caller = tables.channel(event, "", now, uniqueid) if uniqueid else None
    return caller, tables.channel(event, "Dest", now, dest_uniqueid)


def _dialbegin(tables: Tables, event: EventLike, now: float) -> None:
    caller, dest = _dial_legs(tables, event, now)
    if caller is not None:
        tables.reached(caller, event.get("Exten"))
    if dest is not None:
        tables.dial_begin(caller, dest, now)


def _dialend(tables: Tables, event: EventLike, now: float) -> None:
    caller, dest = _dial_legs(tables, event, now)
    if dest is not None:
        tables.dial_end(caller, dest)


def _bridgecreate(tables: Tables, event: EventLike, now: float) -> None:
    bridge = event.get("BridgeUniqueid")
    if not bridge:
        raise Malformed("missing BridgeUniqueid")
    if bridge not in tables.bridges:
        tables.bridges[bridge] = set()


def _bridgedestroy(tables: Tables, event: EventLike, now: float) -> None:
    bridge = event.get("BridgeUniqueid")
    if not bridge:
        raise Malformed("missing BridgeUniqueid")
    tables.destroy_bridge(bridge)


def _bridgeenter(tables: Tables, event: EventLike, now: float) -> None:
    get = event.get
    bridge = get("BridgeUniqueid")
    if not bridge:
        raise Malformed("missing BridgeUniqueid")
    channel = tables.channel(event, "", now)
    if channel is not None:
        exten = get("Exten")
        if exten and exten != channel.exten:
            tables.reached(channel, exten)
        tables.enter_bridge(channel, bridge, get("SwapUniqueid"), now)


def _bridgeleave(tables: Tables, event: EventLike, now: float) -> None:
    bridge = event.get("BridgeUniqueid")
    if not bridge:
        raise Malformed("missing BridgeUniqueid")
    channel = tables.channel(event, "", now)
    if channel is not None:
        tables.leave_bridge(channel, bridge)


def _room(value: str) -> str | None:
    # Only a 7-digit room is a session (VICIdial: 86xxxxx MeetMe, 96xxxxx ConfBridge).
    return value if is_session_id(value) else None


def _confbridgejoin(tables: Tables, event: EventLike, now: float) -> None:
    room = _room(required(event, "Conference"))
    channel = tables.channel(event, "", now)
    if channel is None:
        return
    tables.reached(channel, event.get("Exten"))
    # confbridge_manager.c sends the bridge snapshot too; the BridgeEnter of
    # the same join may come before or after this event.
    bridge = event.get("BridgeUniqueid")
    if bridge:
        tables.enter_bridge(channel, bridge, None, now)
    tables.join_room(channel, room, now)


def _confbridgeleave(tables: Tables, event: EventLike, now: float) -> None:
    required(event, "Conference")
    channel = tables.channel(event, "", now)
    if channel is None:
        return
    bridge = event.get("BridgeUniqueid")
    if bridge:
        tables.leave_bridge(channel, bridge)
    tables.leave_room(channel)


def _meetmejoin(tables: Tables, event: EventLike, now: float) -> None:
    # app_meetme (gone in Asterisk 21, still on VICIdial's older servers) has no
    # bridge: room membership alone says who talks with whom.
    room = _room(required(event, "Meetme"))
    channel = tables.channel(event, "", now)
    if channel is not None:
        tables.reached(channel, event.get("Exten"))
        tables.join_room(channel, room, now)


def _meetmeleave(tables: Tables, event: EventLike, now: float) -> None:
    required(event, "Meetme")
    channel = tables.channel(event, "", now)
    if channel is not None:
        tables.leave_room(channel)


def _varset(tables: Tables, event: EventLike, now: float) -> None:
    # VarSet is by far the most frequent event (every Set(), every app's
    # variables): decide on the variable name before touching anything else.
    variable = event.get("Variable")
    if variable is None:
        return
    name = variable.lstrip("_").upper()
    if name == SESSION_VARIABLE:
        channel = tables.channel(event, "", now)
        if channel is not None:
            tables.set_session_var(channel, event.get("Value") or "")
    elif name == AGENT_VARIABLE:
        channel = tables.channel(event, "", now)
        if channel is not None:
            tables.set_agent_var(channel, event.get("Value") or "")


def _hold(tables: Tables, event: EventLike, now: float) -> None:
    channel = tables.channel(event, "", now)
    if channel is not None:
        tables.set_held(channel, True)


def _unhold(tables: Tables, event: EventLike, now: float) -> None:
    channel = tables.channel(event, "", now)
    if channel is not None:
        tables.set_held(channel, False)


def _member_devices(event: EventLike) -> tuple[str, ...]:
    """The devices a queue member answers on: its interface, and its state interface
    (Local/1001@agents with StateInterface PJSIP/1001 rings the phone PJSIP/1001).

    The async QueueMember* events name them Interface/StateInterface, the QueueStatus
    list item Location/StateInterface (app_queue.c).
    """
    interface = normalise_interface(event.get("Interface") or event.get("Location") or "")
    state_interface = normalise_interface(event.get("StateInterface") or "")
    if state_interface and state_interface != interface:
        return (interface, state_interface) if interface else (state_interface,)
    return (interface,) if interface else ()


def _member_agent(tables: Tables, event: EventLike, devices: tuple[str, ...]) -> Agent:
    """Who a new queue member is: the agent its MemberName numbers, else the directory
    agent its device is configured for, else an agent of its own.

    Never whoever used the phone last: a hot-desk phone changes hands.
    """
    member_name = event.get("MemberName") or event.get("Name") or ""
    agent = tables.agents.get(member_name)
    if agent is not None:
        return agent
    for device in devices:
        owner = tables.devices.configured.get(device)
        if owner is not None:
            return tables.agents[owner]
    number = tables.own_agent_number(member_name, devices[0] if devices else None)
    return tables.new_agent(number, member_name or number)


def queue_member(tables: Tables, event: EventLike, now: float) -> None:
    """QueueMemberAdded/Pause/Status and QueueStatus's QueueMember item."""
    get = event.get
    queue = get("Queue")
    if not queue:
        raise Malformed("missing Queue")
    # One membership per interface and queue: a known one (the usual
    # QueueMemberStatus) costs one lookup.
    interface = get("Interface") or get("Location")
    number = tables.members.get((queue, normalise_interface(interface))) if interface else None
    agent = tables.agents.get(number) if number is not None else None
    if agent is None:
        # A new membership: its queue name is counted on the page from now on.
        check_queue_name(queue)
        devices = _member_devices(event)
        if not devices:
            raise Malformed("queue member without Interface")
        agent = _member_agent(tables, event, devices)
        tables.members[(queue, devices[0])] = agent.number
        reason = "queue:" + queue
        for device in devices:
            tables.login_device(agent, device, reason)
    flag = get("Paused")
    paused = flag is not None and flag.strip() == "1"
    try:
        why = check_pause_reason(get("PausedReason")) if paused else None
    except Malformed:
        # The pause itself is sound: keep it, drop only the reason, and count it.
        tables.malformed += 1
        why = None
    tables.set_queue(agent, queue, paused, why)


def _queue_member_removed(tables: Tables, event: EventLike, now: float) -> None:
    queue = required(event, "Queue")
    devices = _member_devices(event)
    if not devices:
        raise Malformed("queue member without Interface")
    number = tables.members.pop((queue, devices[0]), None)
    agent = tables.agents.get(number) if number is not None else None
    if agent is None:
        return
    tables.set_queue(agent, queue, None)
    reason = "queue:" + queue
    for device in devices:
        tables.logout_device(agent, device, reason)


def _agentlogin(tables: Tables, event: EventLike, now: float) -> None:
    # app_agent_pool: "Agent: <id>" plus the snapshot of the channel that ran
    # AgentLogin; calls for the agent are bridged to that very channel.
    agent_id = required(event, "Agent")
    channel = tables.channel(event, "", now)
    pool_login(tables, agent_id, channel.device if channel is not None else None)


def pool_login(tables: Tables, agent_id: str, device: str | None) -> None:
    """Pool agent ``agent_id`` is logged in on ``device`` (None: its channel is gone)."""
    agent = tables.agents.get(agent_id)
    if agent is None and device is not None:
        # A pool id the directory does not know, on a directory agent's own phone.
        owner = tables.devices.configured.get(device)
        agent = tables.agents[owner] if owner is not None else None
    if agent is None:
        agent = tables.new_agent(tables.own_agent_number(agent_id), agent_id)
    _end_pool_login(tables, agent_id)
    if device is not None:
        tables.pool_logins[agent_id] = (agent.number, device)
        tables.login_device(agent, device, LOGIN_AGENT_POOL)
    tables.set_login(agent, LOGIN_AGENT_POOL, True)


def _agentlogoff(tables: Tables, event: EventLike, now: float) -> None:
    agent_id = required(event, "Agent")
    number = _end_pool_login(tables, agent_id) or agent_id
    agent = tables.agents.get(number)
    if agent is not None:
        tables.set_login(agent, LOGIN_AGENT_POOL, False)


def _end_pool_login(tables: Tables, agent_id: str) -> str | None:
    """Release the phone pool agent ``agent_id`` logged in on; the agent number, if any."""
    login = tables.pool_logins.pop(agent_id, None)
    if login is None:
        return None
    number, device = login
    tables.logout_device(tables.agents[number], device, LOGIN_AGENT_POOL)
    return number


def _caller_uniqueid(tables: Tables, event: EventLike) -> str | None:
    """The waiting caller's Uniqueid (app_queue.c sends the caller's channel snapshot);
    None for a channel already hung up, so a straggler cannot make it wait again."""
    uniqueid = required(event, "Uniqueid")
    return None if uniqueid in tables.tombstones else uniqueid


def _queue_caller_join(tables: Tables, event: EventLike, now: float) -> None:
    queue = check_queue_name(event.get("Queue"))
    uniqueid = _caller_uniqueid(tables, event)
    if uniqueid is not None:
        tables.queues.join(queue, uniqueid, now)


def _queue_caller_leave(tables: Tables, event: EventLike, now: float) -> None:
    # Sent however the wait ended: answered, abandoned, timed out or taken out.
    tables.queues.known(check_queue_name(event.get("Queue")))
    tables.queues.leave(required(event, "Uniqueid"))


def _queue_caller_abandon(tables: Tables, event: EventLike, now: float) -> None:
    queue = check_queue_name(event.get("Queue"))
    tables.queues.leave(required(event, "Uniqueid"))
    tables.queues.count(queue, now, answered=False)


def _agent_connect(tables: Tables, event: EventLike, now: float) -> None:
    # A member answered a queue caller: the caller's snapshot, the member's as Dest*.
    queue = check_queue_name(event.get("Queue"))
    tables.queues.leave(required(event, "Uniqueid"))
    tables.queues.count(queue, now, answered=True)


def queue_entry(tables: Tables, event: EventLike, now: float) -> None:
    """QueueStatus's QueueEntry item: a caller waiting "Wait" seconds already."""
    queue = check_queue_name(event.get("Queue"))
    wait = required(event, "Wait")
    if not (wait.isascii() and wait.isdigit()) or len(wait) > 9:
        raise Malformed(f"Wait {wait[:20]!r} is not a number of seconds")
    tables.queues.join(queue, required(event, "Uniqueid"), now - int(wait))


def queue_params(tables: Tables, event: EventLike, now: float) -> None:
    """QueueStatus's QueueParams item: a queue exists, even with nobody in it."""
    tables.queues.known(check_queue_name(event.get("Queue")))


def _devicestatechange(tables: Tables, event: EventLike, now: float) -> None:
    # devicestate.c: "Device: PJSIP/1001", "State: NOT_INUSE|INUSE|...|UNAVAILABLE".
    tables.set_device_state(required(event, "Device"), required(event, "State"))


HANDLERS: dict[str, Handler] = {
    "Newchannel": _newchannel,
    "Newstate": _newstate,
    "NewCallerid": _newcallerid,
    "NewConnectedLine": _newconnectedline,
    "Rename": _rename,
    "Hangup": _hangup,
    "DialBegin": _dialbegin,
    "DialEnd": _dialend,
    "BridgeCreate": _bridgecreate,
    "BridgeDestroy": _bridgedestroy,
    "BridgeEnter": _bridgeenter,
    "BridgeLeave": _bridgeleave,
    "ConfbridgeJoin": _confbridgejoin,
    "ConfbridgeLeave": _confbridgeleave,
    "MeetmeJoin": _meetmejoin,
    "MeetmeLeave": _meetmeleave,
    "VarSet": _varset,
    "Hold": _hold,
    "Unhold": _unhold,
    "QueueMemberAdded": queue_member,
    "QueueMemberPause": queue_member,
    # Asterisk 11's name for the same event, still sent by some builds.
    "QueueMemberPaused": queue_member,
    "QueueMemberStatus": queue_member,
    "QueueMemberRemoved": _queue_member_removed,
    "AgentLogin": _agentlogin,
    "AgentLogoff": _agentlogoff,
    "DeviceStateChange": _devicestatechange,
    "QueueCallerJoin": _queue_caller_join,
    "QueueCallerLeave": _queue_caller_leave,
    "QueueCallerAbandon": _queue_caller_abandon,
    "AgentConnect": _agent_connect,
}
