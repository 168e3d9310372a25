"""Synthetic AMI for benchmarks and tests: channel snapshots and queue members as Asterisk 22
prints them, and CoreShowChannel items of agents on bridged calls with customers."""

from __future__ import annotations

from collections.abc import Iterable

from fastagi_spy.wire.ami import AMIMessage

# ast_state2str (main/channel.c); other numbers print as "Unknown (N)".
STATE_DESC = {
    0: "Down",
    1: "Rsrvd",
    2: "OffHook",
    3: "Dialing",
    4: "Ring",
    5: "Ringing",
    6: "Up",
    7: "Busy",
    8: "Dialing Offhook",
    9: "Pre-ring",
}
UNKNOWN = "<unknown>"


def channel_snapshot(
    prefix: str,
    *,
    name: str,
    state: int,
    uniqueid: str,
    linkedid: str,
    cid_num: str = UNKNOWN,
    cid_name: str = UNKNOWN,
    conn_num: str = UNKNOWN,
    conn_name: str = UNKNOWN,
    context: str = "default",
    exten: str = "s",
    priority: int = 1,
    chanvars: Iterable[str] = (),
) -> list[tuple[str, str]]:
    """The headers manager_channels.c prints for one channel snapshot, names prefixed
    ("Dest" for a dial's destination), ``channelvars`` lines last."""
    pairs = [
        (f"{prefix}Channel", name),
        (f"{prefix}ChannelState", str(state)),
        (f"{prefix}ChannelStateDesc", STATE_DESC.get(state, f"Unknown ({state})")),
        (f"{prefix}CallerIDNum", cid_num),
        (f"{prefix}CallerIDName", cid_name),
        (f"{prefix}ConnectedLineNum", conn_num),
        (f"{prefix}ConnectedLineName", conn_name),
        (f"{prefix}Language", "en"),
        (f"{prefix}AccountCode", ""),
        (f"{prefix}Context", context),
        (f"{prefix}Exten", exten),
        (f"{prefix}Priority", str(priority)),
        (f"{prefix}Uniqueid", uniqueid),
        (f"{prefix}Linkedid", linkedid),
    ]
    pairs.extend((f"{prefix}ChanVariable", item) for item in chanvars)
    return pairs


def _item(channel: str, uniqueid: str, linkedid: str, bridge: str, context: str,
          caller: str, connected: str, app: str) -> AMIMessage:
    snapshot = channel_snapshot("", name=channel, state=6, uniqueid=uniqueid, linkedid=linkedid,
                                cid_num=caller, conn_num=connected, context=context)
    return AMIMessage((
        ("Event", "CoreShowChannel"), ("ActionID", "bench-1"), *snapshot,
        ("Application", app), ("ApplicationData", ""), ("Duration", "00:01:00"),
        ("BridgeId", bridge),
    ))


def queue_member_fields(
    queue: str,
    member: str,
    interface: str,
    *,
    login_time: int,
    state_interface: str | None = None,
    list_item: bool = False,
    calls_taken: int = 0,
    last_call: int = 0,
    in_call: bool = False,
    status: int = 1,
    paused: bool = False,
) -> list[tuple[str, str]]:
    """The fields app_queue.c prints for one queue member: the QueueMember* events
    (queue_member_blob_create) name it MemberName/Interface; a QueueStatus list item
    (``list_item``) names it Name/Location and has no Ringinuse."""
    name_key, interface_key = ("Name", "Location") if list_item else ("MemberName", "Interface")
    pairs = [
        ("Queue", queue),
        (name_key, member),
        (interface_key, interface),
        ("StateInterface", state_interface or interface),
        ("Membership", "dynamic"),
        ("Penalty", "0"),
        ("CallsTaken", str(calls_taken)),
        ("LastCall", str(last_call)),
        ("LastPause", "0"),
        ("LoginTime", str(login_time)),
        ("InCall", "1" if in_call else "0"),
        ("Status", str(status)),
        ("Paused", "1" if paused else "0"),
        ("PausedReason", ""),
    ]
    if not list_item:
        pairs.append(("Ringinuse", "0"))
    pairs.append(("Wrapuptime", "0"))
    return pairs

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
