"""Build AMI events shaped exactly like Asterisk 22's, for the model tests.

``Ev`` is a tiny stand-in for the wire layer's AMIMessage (case-insensitive
``get``, ``get_all`` for repeated headers).  ``Sim`` plays a small Asterisk:
it names channels and uniqueids the way Asterisk does and writes every event
with the full channel snapshot of manager_channels.c (Channel, ChannelState,
ChannelStateDesc, CallerIDNum, CallerIDName, ConnectedLineNum,
ConnectedLineName, Language, AccountCode, Context, Exten, Priority, Uniqueid,
Linkedid), bridge snapshots from manager_bridges.c and "<unknown>" for empty
numbers and names.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from bench.synthetic import UNKNOWN, channel_snapshot, queue_member_fields
from fastagi_spy.domain import AgentEntry, Directory
from fastagi_spy.model import ModelConfig


class Ev:
    """Ordered, repeatable headers with a case-insensitive first-match lookup."""

    __slots__ = ("headers",)

    def __init__(self, headers: Iterable[tuple[str, str]]) -> None:
        self.headers = tuple(headers)

    def get(self, name: str, default: str | None = None) -> str | None:
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return default

    def get_all(self, name: str) -> tuple[str, ...]:
        wanted = name.lower()
        return tuple(value for key, value in self.headers if key.lower() == wanted)

    @property
    def event(self) -> str | None:
        return self.get("Event")

    def to_bytes(self) -> bytes:
        """The event as Asterisk writes it: CRLF lines and a blank line."""
        body = "".join(f"{key}: {value}\r\n" for key, value in self.headers)
        return (body + "\r\n").encode()

    def without(self, name: str) -> Ev:
        """A copy lacking every ``name`` header."""
        return Ev((k, v) for k, v in self.headers if k.lower() != name.lower())

    def replaced(self, name: str, value: str) -> Ev:
        """A copy with every ``name`` header set to ``value``."""
        return Ev((k, value if k.lower() == name.lower() else v) for k, v in self.headers)

    def __repr__(self) -> str:
        return f"Ev({self.get('Event')} {self.get('Channel')})"


def parse(text: str) -> Ev:
    """An event from "Key: value" lines."""
    pairs = []
    for line in text.strip().splitlines():
        key, _, value = line.strip().partition(": ")
        pairs.append((key, value))
    return Ev(pairs)


@dataclass
class Chan:
    """What Asterisk knows about one channel, as the simulator updates it."""

    name: str
    uniqueid: str
    linkedid: str
    state: int = 0
    cid_num: str = UNKNOWN
    cid_name: str = UNKNOWN
    conn_num: str = UNKNOWN
    conn_name: str = UNKNOWN
    context: str = "default"
    exten: str = "s"
    priority: int = 1
    chanvars: list[str] = field(default_factory=list)

    def snapshot(self, prefix: str = "") -> list[tuple[str, str]]:
        return channel_snapshot(
            prefix, name=self.name, state=self.state, uniqueid=self.uniqueid,
            linkedid=self.linkedid, cid_num=self.cid_num, cid_name=self.cid_name,
            conn_num=self.conn_num, conn_name=self.conn_name, context=self.context,
            exten=self.exten, priority=self.priority, chanvars=self.chanvars)


class Sim:
    """A pretend Asterisk that writes the events a real one would."""

    def __init__(self, epoch: int = 1732156800, tag: str = "", start: int = 0) -> None:
        self.epoch = epoch
        # A tag (or a start offset) keeps several simulators' uniqueids and names apart.
        self.tag = tag
        self._uid = start
        self._seq = start
        self._bridge = start
        self.bridge_members: dict[str, set[str]] = {}

    # --- naming -----------------------------------------------------------------

    def _next_uid(self) -> str:
        self._uid += 1
        return f"{self.epoch}.{self.tag}{self._uid}"

    def _next_seq(self, seq: int | None) -> int:
        if seq is not None:
            self._seq = max(self._seq, seq)
            return seq
        self._seq += 1
        return self._seq

    def chan(
        self,
        device: str,
        *,
        linked: Chan | None = None,
        seq: int | None = None,
        state: int = 0,
        cid: tuple[str, str] = (UNKNOWN, UNKNOWN),
        context: str = "default",
        exten: str = "s",
    ) -> Chan:
        """A channel of ``device`` ("PJSIP/1001" -> "PJSIP/1001-0000000a")."""
        uid = self._next_uid()
        name = f"{device}-{self.tag}{self._next_seq(seq):08x}"
        return Chan(
            name,
            uid,
            linked.linkedid if linked else uid,
            state,
            cid[0],
            cid[1],
            context=context,
            exten=exten,
        )

    def local(
        self,
        target: str,
        *,
        linked: Chan | None = None,
        seq: int | None = None,
        cid: tuple[str, str] = (UNKNOWN, UNKNOWN),
    ) -> tuple[Chan, Chan]:
        """Both halves of Local/<target>: core_unreal gives them one sequence number."""
        number = self._next_seq(seq)
        exten, _, context = target.partition("@")
        one_uid = self._next_uid()
        two_uid = self._next_uid()
        linkedid = linked.linkedid if linked else one_uid
        base = f"Local/{target}-{self.tag}{number:08x}"
        one = Chan(f"{base};1", one_uid, linkedid, 0, cid[0], cid[1], context=context, exten=exten)
        two = Chan(f"{base};2", two_uid, linkedid, 0, cid[0], cid[1], context=context, exten=exten)
        return one, two

    def new_bridge(self) -> str:
        self._bridge += 1
        return f"b{self.tag}{self._bridge:04d}-0000-4000-8000-{self.epoch:012d}"

    # --- events -----------------------------------------------------------------

    def event(
        self,
        name: str,
        chan: Chan | None = None,
        extra: Iterable[tuple[str, str]] = (),
        *,
        privilege: str = "call,all",
        dest: Chan | None = None,
        before: Iterable[tuple[str, str]] = (),
    ) -> Ev:
        pairs: list[tuple[str, str]] = [("Event", name), ("Privilege", privilege)]
        pairs.extend(before)
        if chan is not None:
            pairs.extend(chan.snapshot())
        if dest is not None:
            pairs.extend(dest.snapshot("Dest"))
        pairs.extend(extra)
        return Ev(pairs)

    def newchannel(self, chan: Chan) -> Ev:
        return self.event("Newchannel", chan)

    def newstate(self, chan: Chan, state: int) -> Ev:
        chan.state = state
        return self.event("Newstate", chan)

    def newcallerid(self, chan: Chan, number: str, name: str) -> Ev:
        chan.cid_num, chan.cid_name = number, name
        return self.event("NewCallerid", chan, [("CID-CallingPres", "0 (Presentation Allowed)")])

    def newconnectedline(self, chan: Chan, number: str, name: str) -> Ev:
        chan.conn_num, chan.conn_name = number, name
        return self.event("NewConnectedLine", chan)

    def hangup(self, chan: Chan, cause: int = 16) -> Ev:
        text = {16: "Normal Clearing", 17: "User busy", 19: "No user response"}.get(cause, "")
        return self.event("Hangup", chan, [("Cause", str(cause)), ("Cause-txt", text)])

    def dial_begin(self, caller: Chan | None, dest: Chan, dialstring: str) -> Ev:
        # app_dial copies the caller's connected line into the callee (dial_exec_full).
        if caller is not None:
            dest.conn_num, dest.conn_name = caller.cid_num, caller.cid_name
        return self.event("DialBegin", caller, [("DialString", dialstring)], dest=dest)

    def dial_end(self, caller: Chan | None, dest: Chan, status: str) -> Ev:
        return self.event("DialEnd", caller, [("DialStatus", status)], dest=dest)

    def _bridge_fields(self, bridge: str, kind: str = "basic") -> list[tuple[str, str]]:
        technology = "softmix" if kind == "confbridge" else "simple_bridge"
        return [
            ("BridgeUniqueid", bridge),
            ("BridgeType", kind),
            ("BridgeTechnology", technology),
            ("BridgeCreator", UNKNOWN if kind == "basic" else "ConfBridge"),
            ("BridgeName", UNKNOWN),
            ("BridgeNumChannels", str(len(self.bridge_members.get(bridge, ())))),
            ("BridgeVideoSourceMode", "none"),
        ]

    def bridge_create(self, bridge: str, kind: str = "basic") -> Ev:
        self.bridge_members[bridge] = set()
        return self.event("BridgeCreate", before=self._bridge_fields(bridge, kind))

    def bridge_enter(
        self, bridge: str, chan: Chan, swap: Chan | None = None, kind: str = "basic"
    ) -> Ev:
        self.bridge_members.setdefault(bridge, set()).add(chan.uniqueid)
        extra = [("SwapUniqueid", swap.uniqueid)] if swap is not None else []
        return self.event("BridgeEnter", chan, extra, before=self._bridge_fields(bridge, kind))

    def bridge_leave(self, bridge: str, chan: Chan, kind: str = "basic") -> Ev:
        self.bridge_members.setdefault(bridge, set()).discard(chan.uniqueid)
        return self.event("BridgeLeave", chan, before=self._bridge_fields(bridge, kind))

    def bridge_destroy(self, bridge: str, kind: str = "basic") -> Ev:
        event = self.event("BridgeDestroy", before=self._bridge_fields(bridge, kind))
        self.bridge_members.pop(bridge, None)
        return event

    def varset(self, chan: Chan, variable: str, value: str) -> Ev:
        return self.event(
            "VarSet", chan, [("Variable", variable), ("Value", value)], privilege="dialplan,all"
        )

    def confbridge(self, joining: bool, chan: Chan, conference: str, bridge: str) -> Ev:
        if joining:
            self.bridge_members.setdefault(bridge, set()).add(chan.uniqueid)
        else:
            self.bridge_members.setdefault(bridge, set()).discard(chan.uniqueid)
        name = "ConfbridgeJoin" if joining else "ConfbridgeLeave"
        extra = [("Admin", "No")] + ([("Muted", "No")] if joining else [])
        before = [("Conference", conference), *self._bridge_fields(bridge, "confbridge")]
        return self.event(name, chan, extra, before=before)

    def hold(self, chan: Chan, on: bool) -> Ev:
        extra = [("MusicClass", "default")] if on else []
        return self.event("Hold" if on else "Unhold", chan, extra)

    def queue_member(
        self,
        name: str,
        queue: str,
        member: str,
        interface: str,
        state_interface: str | None = None,
        paused: bool = False,
        status: int = 1,
        in_call: bool = False,
    ) -> Ev:
        """QueueMemberAdded/Removed/Pause/Status as app_queue.c queue_member_blob_create."""
        pairs = queue_member_fields(
            queue, member, interface, login_time=self.epoch, state_interface=state_interface,
            in_call=in_call, status=status, paused=paused)
        return self.event(name, extra=pairs, privilege="agent,all")

    def queue_status_member(
        self,
        queue: str,
        member: str,
        location: str,
        state_interface: str | None = None,
        paused: bool = False,
        action_id: str = "resync-1",
    ) -> Ev:
        """A QueueStatus list item: Name/Location instead of MemberName/Interface."""
        pairs = queue_member_fields(
            queue, member, location, login_time=self.epoch, state_interface=state_interface,
            list_item=True, paused=paused)
        return Ev([("Event", "QueueMember"), ("ActionID", action_id), *pairs])

    def core_show_channel(
        self,
        chan: Chan,
        bridge: str = "",
        application: str = "",
        data: str = "",
        duration: str = "00:00:10",
        action_id: str = "resync-1",
    ) -> Ev:
        """A CoreShowChannel list item (manager.c action_coreshowchannels)."""
        pairs = [("Event", "CoreShowChannel"), ("ActionID", action_id), *chan.snapshot()]
        pairs += [
            ("BridgeId", bridge),
            ("Application", application),
            ("ApplicationData", data),
            ("Duration", duration),
        ]
        return Ev(pairs)

    def agent_login(self, chan: Chan, agent: str) -> Ev:
        return self.event("AgentLogin", chan, [("Agent", agent)], privilege="agent,all")

    def agent_logoff(self, chan: Chan, agent: str) -> Ev:
        return self.event(
            "AgentLogoff", chan, [("Agent", agent), ("Logintime", "60")], privilege="agent,all"
        )


# --- a standard call centre ---------------------------------------------------


def directory(*extra: AgentEntry) -> Directory:
    """Agents 1001/1002 (PJSIP + Local), 10 and 100 (prefix twins), 7001 on PJSIP/301."""
    agents = (
        AgentEntry("1001", "Alice", "red", ("PJSIP/1001", "Local/1001@agents")),
        AgentEntry("1002", "Bob", "red", ("PJSIP/1002", "Local/1002@agents")),
        AgentEntry("10", "Ten", "blue", ("PJSIP/10",)),
        AgentEntry("100", "Hundred", "blue", ("PJSIP/100",)),
        AgentEntry("7001", "Dora", "blue", ("PJSIP/301",)),
        *extra,
    )
    return Directory(
        agents=agents,
        supervisors=(),
        never_spy=frozenset(),
        customers={"5551000": "ACME Ltd"},
    )


def config(**overrides: object) -> ModelConfig:
    """Customer legs: contexts "customers" and "from-trunk", channels "PJSIP/trunk-"."""
    settings: dict[str, object] = {
        "trunk_contexts": frozenset({"customers", "from-trunk"}),
        "trunk_prefixes": ("PJSIP/trunk-",),
    }
    settings.update(overrides)
    return ModelConfig(**settings)  # type: ignore[arg-type]


# --- whole calls, each ending with every hangup (for interleaving tests) --------


def answer_through_local(
    sim: Sim, caller: Chan, one: Chan, two: Chan, phone: Chan, inner: str, outer: str
) -> list[Ev]:
    """``phone`` answers the call ``caller`` placed through the Local pair ``one``/``two``:
    ;2 bridges with the phone (``inner``), then ;1 with the caller (``outer``)."""
    return [
        sim.newstate(phone, 6),
        sim.dial_end(two, phone, "ANSWER"),
        sim.newstate(two, 6),
        sim.bridge_create(inner),
        sim.bridge_enter(inner, two),
        sim.bridge_enter(inner, phone),
        sim.newstate(one, 6),
        sim.dial_end(caller, one, "ANSWER"),
        sim.bridge_create(outer),
        sim.bridge_enter(outer, caller),
        sim.bridge_enter(outer, one),
    ]


def incoming_via_local(sim: Sim, agent: str, answer: bool = True) -> list[Ev]:
    """Local/cN@customers dials Local/<agent>@agents/n, whose ;2 half dials PJSIP/<agent>."""
    c1, c2 = sim.local("c1@customers", cid=("5551000", "Customer One"))
    a1, a2 = sim.local(f"{agent}@agents", linked=c1, cid=("5551000", "Customer One"))
    phone = sim.chan(f"PJSIP/{agent}", linked=c1, context="agents", exten=agent)
    phone.cid_num, phone.cid_name = "5551000", "Customer One"
    events = [
        sim.newchannel(c1),
        sim.newchannel(c2),
        sim.newstate(c2, 6),
        sim.newchannel(a1),
        sim.newchannel(a2),
        sim.dial_begin(c2, a1, f"{agent}@agents/n"),
        sim.newchannel(phone),
        sim.dial_begin(a2, phone, agent),
        sim.newstate(phone, 5),
        sim.newstate(a1, 5),
    ]
    if answer:
        inner, outer = sim.new_bridge(), sim.new_bridge()
        events += answer_through_local(sim, c2, a1, a2, phone, inner, outer)
        events += [
            sim.newstate(c1, 6),
            sim.bridge_leave(outer, c2),
            sim.bridge_leave(outer, a1),
            sim.bridge_destroy(outer),
            sim.bridge_leave(inner, a2),
            sim.bridge_leave(inner, phone),
            sim.bridge_destroy(inner),
        ]
    else:
        events += [sim.dial_end(a2, phone, "CANCEL"), sim.dial_end(c2, a1, "CANCEL")]
    events += [
        sim.hangup(phone),
        sim.hangup(a2),
        sim.hangup(a1),
        sim.hangup(c2),
        sim.hangup(c1),
    ]
    return events


def incoming_trunk(sim: Sim, agent: str, answer: bool = True) -> list[Ev]:
    """A trunk call dialled straight to PJSIP/<agent>."""
    trunk = sim.chan("PJSIP/trunk", state=4, cid=("5553000", "Widget Co"), context="from-trunk")
    trunk.exten = "100"
    phone = sim.chan(f"PJSIP/{agent}", linked=trunk, context="agents", exten="100")
    events = [sim.newchannel(trunk), sim.newchannel(phone), sim.dial_begin(trunk, phone, agent)]
    events.append(sim.newstate(phone, 5))
    if answer:
        bridge = sim.new_bridge()
        events += [
            sim.newstate(phone, 6),
            sim.dial_end(trunk, phone, "ANSWER"),
            sim.newstate(trunk, 6),
            sim.bridge_create(bridge),
            sim.bridge_enter(bridge, trunk),
            sim.bridge_enter(bridge, phone),
            sim.hold(trunk, True),
            sim.hold(trunk, False),
            sim.bridge_leave(bridge, phone),
            sim.bridge_leave(bridge, trunk),
            sim.bridge_destroy(bridge),
        ]
    else:
        events.append(sim.dial_end(trunk, phone, "CANCEL"))
    events += [sim.hangup(phone), sim.hangup(trunk)]
    return events


def outgoing(sim: Sim, agent: str, number: str = "5552000") -> list[Ev]:
    """PJSIP/<agent> dials <number> out through the trunk."""
    phone = sim.chan(f"PJSIP/{agent}", state=4, cid=(agent, "Agent"), context="agents-out")
    phone.exten = number
    trunk = sim.chan("PJSIP/trunk", linked=phone, context="from-trunk", exten=number)
    trunk.cid_num, trunk.cid_name = agent, "Agent"
    bridge = sim.new_bridge()
    return [
        sim.newchannel(phone),
        sim.newchannel(trunk),
        sim.dial_begin(phone, trunk, f"trunk/{number}"),
        sim.newstate(trunk, 5),
        sim.newstate(trunk, 6),
        sim.dial_end(phone, trunk, "ANSWER"),
        sim.newstate(phone, 6),
        sim.bridge_create(bridge),
        sim.bridge_enter(bridge, phone),
        sim.bridge_enter(bridge, trunk),
        sim.newconnectedline(phone, number, UNKNOWN),
        sim.bridge_leave(bridge, trunk),
        sim.bridge_leave(bridge, phone),
        sim.bridge_destroy(bridge),
        sim.hangup(trunk),
        sim.hangup(phone),
    ]


def blind_transfer(sim: Sim, first: str, second: str) -> list[Ev]:
    """A trunk call answered by <first>, who blind-transfers it to <second>."""
    trunk = sim.chan("PJSIP/trunk", state=4, cid=("5553000", "Widget Co"), context="from-trunk")
    one = sim.chan(f"PJSIP/{first}", linked=trunk, context="agents", exten=first)
    two = sim.chan(f"PJSIP/{second}", linked=trunk, context="agents", exten=second)
    bridge, again = sim.new_bridge(), sim.new_bridge()
    return [
        sim.newchannel(trunk),
        sim.newchannel(one),
        sim.dial_begin(trunk, one, first),
        sim.newstate(one, 5),
        sim.newstate(one, 6),
        sim.dial_end(trunk, one, "ANSWER"),
        sim.newstate(trunk, 6),
        sim.bridge_create(bridge),
        sim.bridge_enter(bridge, trunk),
        sim.bridge_enter(bridge, one),
        sim.event("BlindTransfer", one, [("Result", "Success"), ("Extension", second)]),
        sim.bridge_leave(bridge, trunk),
        sim.bridge_leave(bridge, one),
        sim.bridge_destroy(bridge),
        sim.hangup(one),
        sim.newchannel(two),
        sim.dial_begin(trunk, two, second),
        sim.newstate(two, 5),
        sim.newstate(two, 6),
        sim.dial_end(trunk, two, "ANSWER"),
        sim.bridge_create(again),
        sim.bridge_enter(again, trunk),
        sim.bridge_enter(again, two),
        sim.bridge_leave(again, two),
        sim.bridge_leave(again, trunk),
        sim.bridge_destroy(again),
        sim.hangup(two),
        sim.hangup(trunk),
    ]


def conference(sim: Sim, agent: str, room: str) -> list[Ev]:
    """PJSIP/<agent> sits in ConfBridge <room>; a trunk customer joins, then all leave."""
    phone = sim.chan(f"PJSIP/{agent}", state=4, cid=(agent, "Agent"), context="agents")
    phone.exten = room
    trunk = sim.chan("PJSIP/trunk", state=4, cid=("5554000", "Room Guest"), context="from-trunk")
    bridge = sim.new_bridge()
    return [
        sim.newchannel(phone),
        sim.newstate(phone, 6),
        sim.bridge_create(bridge),
        sim.bridge_enter(bridge, phone, kind="confbridge"),
        sim.confbridge(True, phone, room, bridge),
        sim.newchannel(trunk),
        sim.newstate(trunk, 6),
        sim.bridge_enter(bridge, trunk, kind="confbridge"),
        sim.confbridge(True, trunk, room, bridge),
        sim.confbridge(False, trunk, room, bridge),
        sim.bridge_leave(bridge, trunk, kind="confbridge"),
        sim.hangup(trunk),
        sim.confbridge(False, phone, room, bridge),
        sim.bridge_leave(bridge, phone, kind="confbridge"),
        sim.bridge_destroy(bridge, kind="confbridge"),
        sim.hangup(phone),
    ]
