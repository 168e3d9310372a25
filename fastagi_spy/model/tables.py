"""The live tables of one Asterisk server and the only moves that change them.

Every move keeps the cross references consistent (channel <-> call, bridge,
room, agent; agent <-> session) and marks what it touched as dirty, so that
building the changes afterwards looks only at those agents, calls and sessions.
Handlers parse events; this module never reads an event except to build a
channel from its snapshot.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

from fastagi_spy.domain import Directory, device_of_channel
from fastagi_spy.model.agents import (
    LOGIN_CONFERENCE,
    LOGIN_DIRECTORY,
    LOGIN_QUEUE,
    LOGIN_VARIABLE,
    Agent,
    extension_of,
)
from fastagi_spy.model.calls import Call, dialer_number, is_customer_leg, is_dialer_leg
from fastagi_spy.model.channels import RINGING_STATES, STATE_RINGING, Channel
from fastagi_spy.model.config import ModelConfig
from fastagi_spy.model.devices import UNREGISTERED_STATES, DeviceBook
from fastagi_spy.model.events import (
    AGENT_VARIABLE,
    SESSION_VARIABLE,
    EventLike,
    Malformed,
    ascii_digits,
    is_session_id,
    is_target,
    known,
    parse_state,
    session_from_chanvars,
)
from fastagi_spy.model.queues import QueueBook
from fastagi_spy.model.sessions import SessionBook

__all__ = ["Tables"]

_SESSION_CHANVAR = SESSION_VARIABLE + "="
_SESSION_CHANVAR_LEN = len(_SESSION_CHANVAR)
# The DeviceBook login reason of one leg's FASTAGI_SPY_AGENT: one per leg, so a device
# is held while any of its legs still carries it.
_VAR_LOGIN = "variable:"


class _Fields:
    """The header names of one channel snapshot prefix ("" or "Dest"), built once."""

    __slots__ = (
        "callerid_name",
        "callerid_num",
        "channel",
        "chanvar",
        "connected_name",
        "connected_num",
        "context",
        "exten",
        "linkedid",
        "missing_channel",
        "missing_uniqueid",
        "state",
        "uniqueid",
    )

    def __init__(self, prefix: str) -> None:
        self.uniqueid = prefix + "Uniqueid"
        self.linkedid = prefix + "Linkedid"
        self.chanvar = prefix + "ChanVariable"
        self.channel = prefix + "Channel"
        self.state = prefix + "ChannelState"
        self.callerid_num = prefix + "CallerIDNum"
        self.callerid_name = prefix + "CallerIDName"
        self.connected_num = prefix + "ConnectedLineNum"
        self.connected_name = prefix + "ConnectedLineName"
        self.context = prefix + "Context"
        self.exten = prefix + "Exten"
        self.missing_uniqueid = f"missing {prefix}Uniqueid"
        self.missing_channel = f"missing {prefix}Channel"


_FIELDS: dict[str, _Fields] = {"": _Fields(""), "Dest": _Fields("Dest")}


def _fields(prefix: str) -> _Fields:
    fields = _FIELDS.get(prefix)
    if fields is None:
        fields = _Fields(prefix)
    return fields


def _session_chanvar(event: EventLike, name: str) -> str | None:
    """FASTAGI_SPY_SESSION among the event's ``name`` ("ChanVariable") lines ("" if unset)."""
    first = event.get(name)
    if first is None:
        return None
    # channelvars=FASTAGI_SPY_SESSION alone (the usual set-up) makes it the
    # first and only ChanVariable line: no need to collect them all.
    if first.startswith(_SESSION_CHANVAR):
        return first[_SESSION_CHANVAR_LEN:]
    return session_from_chanvars(event.get_all(name))


class Tables:
    """All live state of one server: channels, bridges, rooms, calls, agents, sessions."""

    __slots__ = (
        "agents",
        "book",
        "bridges",
        "by_name",
        "calls",
        "channels",
        "config",
        "device_agent",
        "devices",
        "directory",
        "dirty_agents",
        "dirty_calls",
        "emitted_agents",
        "emitted_calls",
        "emitted_sessions",
        "ended",
        "ext_agents",
        "malformed",
        "members",
        "pool_logins",
        "queues",
        "rooms",
        "session_dirty",
        "sessions",
        "tombstones",
        "touched_sessions",
        "var_logins",
    )

    def __init__(
        self,
        directory: Directory,
        config: ModelConfig,
        preserved: Mapping[str, int] | None = None,
        resting: Mapping[int, tuple[float, str]] | None = None,
        now: float = 0.0,
    ) -> None:
        self.directory = directory
        self.config = config
        self.channels: dict[str, Channel] = {}
        self.by_name: dict[str, str] = {}
        # Bridge uniqueid -> uniqueids of the channels in it.
        self.bridges: dict[str, set[str]] = {}
        # 7-digit ConfBridge/MeetMe room -> uniqueids of the channels in it.
        self.rooms: dict[str, set[str]] = {}
        self.calls: dict[str, Call] = {}
        self.agents: dict[str, Agent] = {}
        # Who owns each device now, and why (see DeviceBook).
        self.devices = DeviceBook()
        # Exact device name -> agent number; never a prefix match.
        self.device_agent = self.devices.owner
        # Extension ("1001" of "PJSIP/1001") -> agent numbers owning such a device.
        self.ext_agents = self.devices.ext_agents
        # (queue, member device) -> agent number: one membership per interface and queue.
        self.members: dict[tuple[str, str], str] = {}
        # Queues: callers waiting, members per place, the day's counts.
        self.queues = QueueBook(config.day_start)
        # AgentLogin's agent id -> (agent number, the device it logged in on).
        self.pool_logins: dict[str, tuple[str, str]] = {}
        # Uniqueid of a leg carrying FASTAGI_SPY_AGENT -> (agent number, the leg's device).
        self.var_logins: dict[str, tuple[str, str]] = {}
        # Session id -> agent numbers holding it (two only if the site gave both
        # the same id), and the ids whose view may have changed.
        self.book = SessionBook(config.session_range, preserved, config.session_quarantine)
        if resting:
            self.book.allocator.rest(resting)
        self.sessions = self.book.holders
        self.tombstones: OrderedDict[str, None] = OrderedDict()
        self.malformed = 0
        # What to look at when building changes, and what was last reported.
        self.dirty_agents: set[str] = set()
        self.dirty_calls: set[str] = set()
        # Agents whose session inputs (logins, rooms, session variable, channels) changed
        # since their session id was last worked out: settled at the end of every read.
        self.session_dirty: set[str] = set()
        self.touched_sessions = self.book.touched
        self.ended: dict[str, Call] = {}
        self.emitted_agents: dict[str, object] = {}
        self.emitted_calls: dict[str, object] = {}
        self.emitted_sessions: dict[str, object] = {}
        for entry in directory.agents:
            agent = Agent(entry.number, entry.name, entry.team, in_directory=True)
            self.agents[entry.number] = agent
            agent.configured = tuple(d for d in entry.devices if self.devices.configure(d, entry.number))
            for device in agent.configured:
                self._give(device, agent)
            if config.logged_in_by == "registration" and agent.configured:
                agent.logins.add(LOGIN_DIRECTORY)
            self.dirty_agents.add(entry.number)
        # Logged in from the start: sessions are allocated in directory order.
        for entry in directory.agents:
            self.refresh_session(self.agents[entry.number], now)
        self.session_dirty.clear()

    # --- channels ---------------------------------------------------------------

    def channel(
        self, event: EventLike, prefix: str, now: float, uniqueid: str | None = None
    ) -> Channel | None:
        """The channel whose snapshot (with ``prefix``) the event carries.

        An unknown uniqueid is created from the snapshot: events can arrive
        before a resync completes.  A uniqueid that already hung up gives None,
        so a straggling event cannot resurrect it.  ``uniqueid`` saves looking
        it up again when the caller already did.
        """
        fields = _FIELDS.get(prefix) or _fields(prefix)
        get = event.get
        if uniqueid is None:
            uniqueid = get(fields.uniqueid)
            if not uniqueid:
                raise Malformed(fields.missing_uniqueid)
        channel = self.channels.get(uniqueid)
        if channel is None:
            if uniqueid in self.tombstones:
                return None
            return self._create(event, fields, uniqueid, now)
        # bridge_channel.c gives every channel in a bridge the oldest linkedid
        # among them, so a channel can move from one call to another.
        linkedid = get(fields.linkedid)
        if linkedid and linkedid != channel.linkedid:
            self._relink(channel, linkedid, now)
        value = get(fields.chanvar)
        if value is not None:
            if value.startswith(_SESSION_CHANVAR):
                value = value[_SESSION_CHANVAR_LEN:]
            else:
                value = session_from_chanvars(event.get_all(fields.chanvar))
            if value and value != channel.session_var and is_session_id(value):
                self.set_session_var(channel, value)
        return channel

    def _create(self, event: EventLike, fields: _Fields, uniqueid: str, now: float) -> Channel:
        get = event.get
        name = get(fields.channel)
        if not name:
            raise Malformed(fields.missing_channel)
        state = parse_state(get(fields.state), 0)
        linkedid = get(fields.linkedid) or uniqueid
        channel = Channel(uniqueid, name, state, linkedid, now)
        if uniqueid == linkedid or linkedid not in self.calls:
            # Only the leg that decides its call's direction and customer needs
            # these (each lookup is a search of the event's text); NewCallerid
            # and NewConnectedLine keep them current afterwards.
            channel.cid_num = known(get(fields.callerid_num))
            channel.cid_name = known(get(fields.callerid_name))
            channel.conn_num = known(get(fields.connected_num))
            channel.conn_name = known(get(fields.connected_name))
            channel.context = get(fields.context) or ""
            channel.exten = get(fields.exten) or ""
        value = _session_chanvar(event, fields.chanvar)
        if value and is_session_id(value):
            channel.session_var = value
        self.channels[uniqueid] = channel
        self.by_name[name] = uniqueid
        owner = self.device_agent.get(channel.device)
        if owner is not None:
            channel.agent = owner
        self._join_call(channel)
        if owner is not None:
            self._attached(channel, self.agents[owner])
        return channel

    def set_state(self, channel: Channel, state: int, now: float) -> None:
        """A Newstate: the channel's state number changed."""
        old = channel.state
        if state == old:
            return
        channel.state = state
        if state in RINGING_STATES:
            self.mark_ringing(channel, now)
        # Of the state, an agent's view shows only whether the leg rings, and a
        # dial in progress already makes it ring.
        if (
            channel.agent is not None
            and (old == STATE_RINGING) != (state == STATE_RINGING)
            and not channel.dialing
        ):
            self.dirty_agents.add(channel.agent)

    def mark_ringing(self, channel: Channel, now: float) -> None:
        """Record when this leg (and its call) started ringing, once."""
        if channel.ringing_at is None:
            channel.ringing_at = now
        call = self.calls.get(channel.linkedid)
        if call is not None and call.ringing_at is None:
            call.ringing_at = now
            self.dirty_calls.add(call.linkedid)

    def set_callerid(self, channel: Channel, number: str, name: str) -> None:
        """A NewCallerid: the customer of a call is its starting leg's caller."""
        channel.cid_num, channel.cid_name = number, name
        self._customer_leg_changed(channel)

    def set_connected(self, channel: Channel, number: str, name: str) -> None:
        """A NewConnectedLine: for an outgoing call it names the party reached."""
        channel.conn_num, channel.conn_name = number, name
        self._customer_leg_changed(channel)

    def reached(self, channel: Channel, exten: str | None) -> None:
        """Where a leg is in the dialplan as it reaches the far end (Dial, bridge, room).

        An agent's Local channel starts at its own Local target ("1002") and is
        sent on to the number it calls; a phone's channel starts at the number.
        For an outgoing call the number dialled is where its starting leg is now.
        """
        if not exten or exten == channel.exten:
            return
        channel.exten = exten
        call = self.calls.get(channel.linkedid)
        if (
            call is not None
            and call.linkedid == channel.uniqueid
            and call.direction == "outgoing"
            # A dialler's leg is sent on into the agent's room once answered: that
            # room is not the number it dialled.
            and not call.dialer
            and ascii_digits(exten)
            and exten != call.dialed
        ):
            call.dialed = exten
            self._set_customer(call, channel)

    def set_held(self, channel: Channel, held: bool) -> None:
        """Hold/Unhold from the channel's own side."""
        channel.held = held
        if channel.agent is not None:
            self.dirty_agents.add(channel.agent)

    def rename(self, channel: Channel, new_name: str) -> None:
        """A Rename (masquerade, Surrogate channels): the same uniqueid, a new name."""
        if self.by_name.get(channel.name) == channel.uniqueid:
            del self.by_name[channel.name]
        channel.name = new_name
        self.by_name[new_name] = channel.uniqueid
        device = device_of_channel(new_name)
        if device == channel.device:
            return
        if channel.agent is not None:
            self._detach(channel)
        channel.device = device
        owner = self.device_agent.get(device)
        if owner is not None:
            self._attach(channel, self.agents[owner])

    def hangup(self, uniqueid: str, now: float) -> None:
        """A Hangup: drop the channel from everything that references it."""
        tombstones = self.tombstones
        tombstones[uniqueid] = None
        if len(tombstones) > self.config.tombstones:
            tombstones.popitem(last=False)
        if uniqueid in self.queues.where:
            # A caller gone without a QueueCallerLeave we saw waits no more.
            self.queues.leave(uniqueid)
        channel = self.channels.pop(uniqueid, None)
        if channel is None:
            return
        if self.by_name.get(channel.name) == uniqueid:
            del self.by_name[channel.name]
        if channel.bridge is not None:
            self._drop_from_bridge(channel)
        if channel.room is not None:
            self._drop_from_room(channel)
        if channel.agent is not None:
            self._detach(channel)
        self._leave_call(channel, now)
        if uniqueid in self.var_logins:
            self._end_var_login(uniqueid)

    # --- calls ------------------------------------------------------------------

    def _join_call(self, channel: Channel) -> None:
        # A call's view changes with its customer, times and agents only: a
        # leg that is none of these joins without recomputing it.
        call = self.calls.get(channel.linkedid)
        if call is None:
            call = Call(channel.linkedid)
            self.calls[channel.linkedid] = call
            self.dirty_calls.add(call.linkedid)
        call.channels.add(channel.uniqueid)
        if channel.uniqueid == call.linkedid or (not call.origin_seen and len(call.channels) == 1):
            # The leg whose uniqueid is the linkedid started the call; until it
            # is seen (events before a resync) the first leg seen stands in.
            self._decide(call, channel)
        if channel.ringing_at is not None and call.ringing_at is None:
            call.ringing_at = channel.ringing_at
            self.dirty_calls.add(call.linkedid)
        if channel.answered_at is not None and call.answered_at is None:
            call.answered_at = channel.answered_at
            self.dirty_calls.add(call.linkedid)
        if channel.agent is not None:
            self.dirty_calls.add(call.linkedid)

    def _leave_call(self, channel: Channel, now: float) -> None:
        call = self.calls.get(channel.linkedid)
        if call is None:
            return
        call.channels.discard(channel.uniqueid)
        if call.channels:
            if channel.agent is not None:
                self.dirty_calls.add(call.linkedid)
            return
        del self.calls[call.linkedid]
        call.ended_at = now
        # Only a call somebody was told about needs its end reported.
        if call.linkedid in self.emitted_calls:
            self.ended[call.linkedid] = call
        self.dirty_calls.discard(call.linkedid)

    def _relink(self, channel: Channel, linkedid: str, now: float) -> None:
        self._leave_call(channel, now)
        channel.linkedid = linkedid
        self._join_call(channel)
        if channel.agent is not None:
            self.dirty_agents.add(channel.agent)

    def _decide(self, call: Call, leg: Channel) -> None:
        """Direction and customer from the leg that started the call."""
        call.origin_seen = leg.uniqueid == call.linkedid
        # An agent's own leg is never the dialler's, even in a dialler context (a
        # VICIdial agent's phone is called into its room from the same context).
        call.dialer = leg.agent is None and is_dialer_leg(self.config, leg)
        if call.dialer:
            # Before the trunk rule: a dialler may dial out on a trunk that also takes calls in.
            call.direction = "outgoing"
        elif is_customer_leg(self.config, leg):
            call.direction = "incoming"
        elif leg.agent is not None:
            call.direction = "outgoing"
        else:
            # Started neither by a marked customer leg nor by an agent (another
            # phone, an IVR): from the agent's side it is a call coming in.
            call.direction = "incoming"
        call.dialed = dialer_number(self.config, leg) if call.dialer else leg.exten
        self._set_customer(call, leg)

    def _set_customer(self, call: Call, leg: Channel) -> None:
        if call.direction == "incoming":
            number, name = leg.cid_num, leg.cid_name
        elif call.dialer:
            # The number the dialler sent its leg to; else the far end's connected line,
            # once it differs from the caller id the dialler put on the leg itself.
            dialed = call.dialed if ascii_digits(call.dialed) else ""
            connected = leg.conn_num if leg.conn_num != leg.cid_num else ""
            number = dialed or connected
            name = leg.conn_name if connected and not dialed else ""
        else:
            # The digits the agent dialled; else the connected line.  An agent's
            # own number is neither: a Local/1002@agents leg starts at exten
            # 1002, and Local pairs pass the agent's caller id back as connected line.
            own = {extension_of(leg.device), leg.agent}
            dialed = call.dialed if ascii_digits(call.dialed) and call.dialed not in own else ""
            connected = leg.conn_num if leg.conn_num not in own else ""
            number = dialed or connected
            name = leg.conn_name if connected and not dialed else ""
        listed = self.directory.customer_name(number) if number else None
        call.customer_number = number
        call.customer_name = listed if listed is not None else name
        self._touch_call(call)

    def _customer_leg_changed(self, channel: Channel) -> None:
        call = self.calls.get(channel.linkedid)
        if call is None:
            return
        starts_call = channel.uniqueid == call.linkedid
        if starts_call or (not call.origin_seen and len(call.channels) == 1):
            self._set_customer(call, channel)

    def _touch_call(self, call: Call) -> None:
        """The call's public fields changed: so did its agents' views."""
        self.dirty_calls.add(call.linkedid)
        channels = self.channels
        for uniqueid in call.channels:
            member = channels.get(uniqueid)
            if member is not None and member.agent is not None:
                self.dirty_agents.add(member.agent)

    # --- bridges and rooms ------------------------------------------------------

    def enter_bridge(
        self, channel: Channel, bridge: str, swap: str | None, now: float | None
    ) -> None:
        """A BridgeEnter; ``now`` None while loading a resync (answer time unknown)."""
        if channel.bridge is not None and channel.bridge != bridge:
            self._drop_from_bridge(channel)
        members = self.bridges.get(bridge)
        if members is None:
            members = self.bridges[bridge] = set()
        if swap and swap != channel.uniqueid and swap in members:
            # bridge.c swaps the new channel in for SwapUniqueid (Local channel
            # optimisation); its BridgeLeave follows, but both must not count
            # as the agent's call meanwhile.
            swapped = self.channels.get(swap)
            if swapped is not None:
                self._drop_from_bridge(swapped)
        members.add(channel.uniqueid)
        channel.bridge = bridge
        if now is not None and len(members) > 1:
            self._answered(members, now)
        self._touch_members(members)

    def leave_bridge(self, channel: Channel, bridge: str) -> None:
        """A BridgeLeave (ignored if the channel already moved on)."""
        if channel.bridge == bridge:
            self._drop_from_bridge(channel)

    def destroy_bridge(self, bridge: str) -> None:
        """A BridgeDestroy: whoever is still listed is out."""
        members = self.bridges.pop(bridge, None)
        if not members:
            return
        for uniqueid in members:
            channel = self.channels.get(uniqueid)
            if channel is not None and channel.bridge == bridge:
                channel.bridge = None
        self._touch_members(members)

    def _drop_from_bridge(self, channel: Channel) -> None:
        bridge = channel.bridge
        channel.bridge = None
        members = self.bridges.get(bridge) if bridge is not None else None
        if members is not None:
            members.discard(channel.uniqueid)
            self._touch_members(members)
        self._touch_members((channel.uniqueid,))

    def join_room(self, channel: Channel, room: str | None, now: float | None) -> None:
        """A ConfbridgeJoin/MeetmeJoin; ``room`` None for a room that is no session."""
        if channel.room == room:
            return
        if channel.room is not None:
            self._drop_from_room(channel)
        if room is None:
            return
        members = self.rooms.get(room)
        if members is None:
            members = self.rooms[room] = set()
        members.add(channel.uniqueid)
        channel.room = room
        if now is not None and len(members) > 1:
            self._answered(members, now)
        self._touch_members(members)
        if channel.agent is not None:
            self.session_dirty.add(channel.agent)
            self._sync_conference_login(self.agents[channel.agent])

    def leave_room(self, channel: Channel) -> None:
        """A ConfbridgeLeave/MeetmeLeave."""
        if channel.room is not None:
            self._drop_from_room(channel)

    def _drop_from_room(self, channel: Channel) -> None:
        room = channel.room
        channel.room = None
        members = self.rooms.get(room) if room is not None else None
        if members is not None:
            members.discard(channel.uniqueid)
            if not members and room is not None:
                del self.rooms[room]
            self._touch_members(members)
        self._touch_members((channel.uniqueid,))
        if channel.agent is not None:
            self.session_dirty.add(channel.agent)
            self._sync_conference_login(self.agents[channel.agent])

    def _answered(self, members: set[str], now: float) -> None:
        # Two parties meet: whoever had not been answered yet is answered now.
        channels = self.channels
        for uniqueid in members:
            member = channels.get(uniqueid)
            if member is None or member.answered_at is not None:
                continue
            member.answered_at = now
            call = self.calls.get(member.linkedid)
            if call is not None and call.answered_at is None:
                call.answered_at = now
                self.dirty_calls.add(call.linkedid)

    def _touch_members(self, members: set[str] | tuple[str, ...]) -> None:
        channels = self.channels
        for uniqueid in members:
            member = channels.get(uniqueid)
            if member is not None and member.agent is not None:
                self.dirty_agents.add(member.agent)

    # --- dialling ---------------------------------------------------------------

    def dial_begin(self, caller: Channel | None, dest: Channel, now: float) -> None:
        """A DialBegin: the destination is alerting; the caller waits for it."""
        self._set_dialing(dest, 1)
        self.mark_ringing(dest, now)
        if caller is not None:
            # Dial(A&B) forks: one DialBegin per destination from the same caller.
            self._set_dialing(caller, caller.dialing + 1)
            self.mark_ringing(caller, now)

    def dial_end(self, caller: Channel | None, dest: Channel) -> None:
        """A DialEnd, whatever its DialStatus."""
        self._set_dialing(dest, 0)
        if caller is not None:
            self._set_dialing(caller, max(0, caller.dialing - 1))

    def _set_dialing(self, channel: Channel, dialing: int) -> None:
        # An agent's view shows whether a leg rings: a dial in progress, or "Ringing".
        was = channel.dialing > 0
        channel.dialing = dialing
        if channel.agent is not None and was != (dialing > 0) and channel.state != STATE_RINGING:
            self.dirty_agents.add(channel.agent)

    # --- agents -----------------------------------------------------------------

    def login_device(self, agent: Agent, device: str, reason: str) -> None:
        """``agent`` logged in on ``device`` (``reason``: "queue:<name>", "agent_pool").

        The device is theirs from now until that login ends, whoever had it before.
        """
        if device and self.devices.login(device, agent.number, reason):
            self._give(device, agent)

    def logout_device(self, agent: Agent, device: str, reason: str) -> None:
        """``agent``'s login ``reason`` on ``device`` ended: the phone goes back to the agent
        it is configured for, or to nobody, once no login of theirs holds it."""
        new = self.devices.logout(device, agent.number, reason)
        if new is not None:
            self._give(device, self.agents[new] if new else None)

    def set_agent_var(self, channel: Channel, value: str) -> None:
        """FASTAGI_SPY_AGENT set on ``channel`` ("" when cleared).

        The site says directory agent ``value`` answers on this leg's device: the device is
        theirs while the leg lives, under the rules of any learned device.  The value comes
        from a dialplan that may have copied it from a caller: anything but a directory
        agent's number, or a claim on a customer leg, is refused (and ends any claim before).
        """
        claim = self.var_logins.get(channel.uniqueid)
        if claim is not None:
            if claim == (value, channel.device):
                return  # the same Set again
            self._end_var_login(channel.uniqueid)
        if not value:
            return
        agent = self.agents.get(value) if is_target(value) else None
        if agent is None or not agent.in_directory:
            raise Malformed(f"{AGENT_VARIABLE} {value[:20]!r} is no directory agent")
        if is_customer_leg(self.config, channel):
            raise Malformed(f"{AGENT_VARIABLE} on customer leg {channel.name}")
        self.var_logins[channel.uniqueid] = (agent.number, channel.device)
        self.login_device(agent, channel.device, _VAR_LOGIN + channel.uniqueid)
        self.set_login(agent, LOGIN_VARIABLE, True)

    def _end_var_login(self, uniqueid: str) -> None:
        """The leg that carried FASTAGI_SPY_AGENT hung up or dropped it: its device goes
        back to whoever it is configured for, and the agent's login with it."""
        number, device = self.var_logins.pop(uniqueid)
        agent = self.agents[number]
        self.logout_device(agent, device, _VAR_LOGIN + uniqueid)
        still = any(owner == number for owner, _ in self.var_logins.values())
        self.set_login(agent, LOGIN_VARIABLE, still)

    def set_device_state(self, device: str, state: str) -> None:
        """A DeviceStateChange: a configured device registered or unregistered."""
        unavailable = self.devices.unavailable
        if state in UNREGISTERED_STATES:
            if device in unavailable:
                return
            unavailable.add(device)
        elif device in unavailable:
            unavailable.discard(device)
        else:
            return
        number = self.devices.configured.get(device)
        if number is not None:
            self.refresh_registration(self.agents[number])

    def refresh_registration(self, agent: Agent) -> None:
        """Where registration is the truth, a directory agent is logged in while one of
        their configured devices is not known to be unregistered."""
        if self.config.logged_in_by != "registration" or not agent.in_directory:
            return
        unavailable = self.devices.unavailable
        self.set_login(agent, LOGIN_DIRECTORY, any(d not in unavailable for d in agent.configured))

    def _give(self, device: str, agent: Agent | None) -> None:
        """Make ``agent`` (None: nobody) the owner of ``device``, moving its live channels."""
        old = self.devices.set_owner(device, agent.number if agent is not None else None)
        channels = self.channels
        if old is not None and (agent is None or old != agent.number):
            previous = self.agents[old]
            previous.devices.discard(device)
            previous.sorted_devices = tuple(sorted(previous.devices))
            self.dirty_agents.add(old)
            # Rare (a login or logout); a scan beats an index on every channel.
            for channel in channels.values():
                if channel.agent == old and channel.device == device:
                    self._detach(channel)
        if agent is None:
            return
        agent.devices.add(device)
        agent.sorted_devices = tuple(sorted(agent.devices))
        for channel in channels.values():
            if channel.agent is None and channel.device == device:
                self._attach(channel, agent)

    def new_agent(self, number: str, name: str) -> Agent:
        """An agent known only from AMI (queue member, agent pool login)."""
        agent = Agent(number, name, "", in_directory=False)
        self.agents[number] = agent
        self.dirty_agents.add(number)
        return agent

    def own_agent_number(self, *names: str | None) -> str:
        """The number of an agent of its own, from the digits of its names.

        A number already taken by someone else would merge two people into one
        and let a spy reach the wrong phone, so it is refused.
        """
        for name in names:
            number = ascii_digits(name or "")
            if number:
                if number in self.agents:
                    raise Malformed(f"agent number {number} derived from {name!r} is taken")
                return number
        raise Malformed("agent has no digits to be numbered by")

    def set_login(self, agent: Agent, reason: str, on: bool) -> None:
        """Add or remove one login reason."""
        logins = agent.logins
        if on == (reason in logins):
            return
        if on:
            logins.add(reason)
        else:
            logins.discard(reason)
        self.dirty_agents.add(agent.number)
        self.session_dirty.add(agent.number)

    def set_queue(
        self, agent: Agent, queue: str, paused: bool | None, reason: str | None = None
    ) -> None:
        """Membership of one queue: paused (and why, if said) or not, or None once removed."""
        queues = agent.queues
        if paused is None:
            if queues.pop(queue, None) is not None:
                self.dirty_agents.add(agent.number)
        elif queues.get(queue) != paused:
            queues[queue] = paused
            self.dirty_agents.add(agent.number)
        # A reason only means something while paused there.
        reasons = agent.pause_reasons
        reason = reason if paused else None
        if reasons.get(queue) != reason:
            if reason is None:
                del reasons[queue]
            else:
                reasons[queue] = reason
            self.dirty_agents.add(agent.number)
        self.set_login(agent, LOGIN_QUEUE, bool(queues))

    def _attach(self, channel: Channel, agent: Agent) -> None:
        channel.agent = agent.number
        self._attached(channel, agent)
        call = self.calls.get(channel.linkedid)
        if call is not None and channel.uniqueid == call.linkedid:
            # The starting leg turned out to be an agent's: the call is outgoing.
            self._decide(call, channel)

    def _attached(self, channel: Channel, agent: Agent) -> None:
        agent.channels.add(channel.uniqueid)
        if channel.session_var is not None:
            agent.last_var = channel.session_var
        if channel.room is not None:
            self._sync_conference_login(agent)
        self.dirty_agents.add(agent.number)
        if channel.room is not None or channel.session_var is not None:
            # Only a room or a session variable on a channel can change the session.
            self.session_dirty.add(agent.number)
        self.dirty_calls.add(channel.linkedid)

    def _detach(self, channel: Channel) -> None:
        number = channel.agent
        channel.agent = None
        if number is None:
            return
        agent = self.agents[number]
        agent.channels.discard(channel.uniqueid)
        self._sync_conference_login(agent)
        self.dirty_agents.add(number)
        if channel.room is not None:
            self.session_dirty.add(number)
        self.dirty_calls.add(channel.linkedid)

    def _sync_conference_login(self, agent: Agent) -> None:
        # A device sitting in a 7-digit room is a logged-in VICIdial agent.
        channels = self.channels
        in_room = any(channels[u].room is not None for u in agent.channels if u in channels)
        if in_room != (LOGIN_CONFERENCE in agent.logins):
            self.set_login(agent, LOGIN_CONFERENCE, in_room)

    def set_session_var(self, channel: Channel, value: str) -> None:
        """FASTAGI_SPY_SESSION set on a channel ("" when the dialplan clears it)."""
        if not value:
            channel.session_var = None
            return
        if not is_session_id(value):
            raise Malformed(f"{value[:20]!r} is not a 7-digit session id")
        channel.session_var = value
        if channel.agent is not None:
            self.agents[channel.agent].last_var = value
            self.dirty_agents.add(channel.agent)
            self.session_dirty.add(channel.agent)

    # --- sessions ---------------------------------------------------------------

    def refresh_session(self, agent: Agent, now: float) -> None:
        """Recompute the agent's session id: room, then variable, then allocated."""
        self.book.refresh(agent, self.channels, now)

    def settle_sessions(self, now: float) -> None:
        """Bring every session id up to date with the events applied so far.

        Run after every read, whoever follows the changes: a target typed a moment
        after an agent joined a room, or after a room changed hands, must name the
        holder now, not the one of the last report.  Sorted, so allocation is the
        same however the events were cut into reads.
        """
        dirty = self.session_dirty
        if not dirty:
            return
        agents, refresh, channels = self.agents, self.book.refresh, self.channels
        for number in sorted(dirty) if len(dirty) > 1 else tuple(dirty):
            agent = agents.get(number)
            if agent is not None:
                refresh(agent, channels, now)
        dirty.clear()
