"""A device belongs to an agent only while that agent is logged in on it (hot-desking)."""

from __future__ import annotations

import pytest

from fastagi_spy.model import LiveMap
from tests.unit.model_events import Chan, Ev, Sim, config, directory

T0 = 1_732_156_800.0
SERVER = "pbx1"


@pytest.fixture
def sim() -> Sim:
    return Sim()


def live(logged_in_by: str = "login") -> LiveMap:
    return LiveMap(directory(), {SERVER: config(logged_in_by=logged_in_by)})


def talking_on(sim: Sim, device: str) -> tuple[Chan, list[Ev]]:
    """A customer from the trunk talking with whoever answers on ``device``."""
    trunk = sim.chan("PJSIP/trunk", state=4, cid=("5551000", "x"), context="from-trunk")
    phone = sim.chan(device, linked=trunk, context="agents")
    bridge = sim.new_bridge()
    return phone, [
        sim.newchannel(trunk),
        sim.newchannel(phone),
        sim.newstate(phone, 6),
        sim.bridge_create(bridge),
        sim.bridge_enter(bridge, trunk),
        sim.bridge_enter(bridge, phone),
    ]


def test_a_hot_desk_phone_follows_the_queue_login(sim: Sim) -> None:
    """1001 logs in on PJSIP/2050 and out again; 1002 logs in on it and takes a call:
    the call is 1002's, and 1001 is not logged in at all."""
    m = live()
    m.ingest(SERVER, [
        sim.queue_member("QueueMemberAdded", "sales", "1001", "PJSIP/2050"),
        sim.queue_member("QueueMemberRemoved", "sales", "1001", "PJSIP/2050"),
        sim.queue_member("QueueMemberAdded", "sales", "1002", "PJSIP/2050"),
    ], T0)
    phone, call = talking_on(sim, "PJSIP/2050")
    m.ingest(SERVER, call, T0 + 1)
    got = m.resolve("1002")
    assert (got.ok, got.channel) == (True, phone.name)
    assert m.resolve("1001").reason == "not_logged_in"
    assert m.resolve("2050").agent_number == "1002"


def test_another_agent_logging_in_takes_the_phone_at_once(sim: Sim) -> None:
    """No logoff in between: 1002 logging in on 1001's hot-desk phone (another queue)
    takes it; 1001 keeps its own membership but not the phone."""
    m = live()
    m.ingest(SERVER, [
        sim.queue_member("QueueMemberAdded", "sales", "1001", "PJSIP/2050"),
        sim.queue_member("QueueMemberAdded", "support", "1002", "PJSIP/2050"),
    ], T0)
    phone, call = talking_on(sim, "PJSIP/2050")
    m.ingest(SERVER, call, T0 + 1)
    assert m.resolve("1002").channel == phone.name
    assert m.resolve("1001").reason == "not_on_call"


def test_an_agent_pool_login_releases_the_phone_on_logoff(sim: Sim) -> None:
    m = live()
    first = sim.chan("PJSIP/2050", state=6, context="agents")
    m.ingest(SERVER, [sim.newchannel(first), sim.agent_login(first, "1001"),
                      sim.agent_logoff(first, "1001"), sim.hangup(first)], T0)
    second = sim.chan("PJSIP/2050", state=6, context="agents")
    m.ingest(SERVER, [sim.newchannel(second), sim.agent_login(second, "1002")], T0 + 1)
    phone, call = talking_on(sim, "PJSIP/2050")
    m.ingest(SERVER, call, T0 + 2)
    assert m.resolve("1002").channel == phone.name  # the call, not the idle login leg
    assert m.resolve("1001").reason == "not_logged_in"
    owners = {a["number"] for a in m.snapshot(T0 + 2)["servers"][SERVER]["agents"]
              if "PJSIP/2050" in a["devices"]}
    assert owners == {"1002"}


def test_a_configured_phone_is_lent_and_comes_back(sim: Sim) -> None:
    """1002 logs in on 1001's own desk phone: the phone's calls are 1002's until 1002
    leaves the queue, then 1001's again; 1001's other device was never touched."""
    m = live("registration")
    m.ingest(SERVER, [sim.queue_member("QueueMemberAdded", "sales", "1002", "PJSIP/1001")], T0)
    phone, call = talking_on(sim, "PJSIP/1001")
    m.ingest(SERVER, call, T0 + 1)
    assert m.resolve("1002").channel == phone.name
    assert m.resolve("1001").reason == "not_on_call"
    m.ingest(SERVER, [sim.queue_member("QueueMemberRemoved", "sales", "1002", "PJSIP/1001")],
             T0 + 2)
    assert m.resolve("1001").channel == phone.name
    assert m.resolve("1002").reason == "not_on_call"  # still logged in by its own phones


def test_a_configured_phone_of_the_agent_itself_stays_after_its_queue_logout(sim: Sim) -> None:
    m = live()
    m.ingest(SERVER, [
        sim.queue_member("QueueMemberAdded", "sales", "1001", "PJSIP/1001"),
        sim.queue_member("QueueMemberRemoved", "sales", "1001", "PJSIP/1001"),
        sim.queue_member("QueueMemberAdded", "sales", "1001", "PJSIP/1001"),
    ], T0)
    phone, call = talking_on(sim, "PJSIP/1001")
    m.ingest(SERVER, call, T0 + 1)
    assert m.resolve("1001").channel == phone.name


def device_state(sim: Sim, device: str, state: str) -> Ev:
    return sim.event("DeviceStateChange", extra=[("Device", device), ("State", state)],
                     privilege="call,all")


def test_registration_is_the_login_where_the_site_has_no_other(sim: Sim) -> None:
    """An agent whose configured phones all unregister is logged out; one coming back
    logs them in again.  Under "login", registration alone logs nobody in."""
    m = live("registration")
    assert m.resolve("10").reason == "not_on_call"
    m.ingest(SERVER, [device_state(sim, "PJSIP/10", "UNAVAILABLE")], T0)
    assert m.resolve("10").reason == "not_logged_in"
    m.ingest(SERVER, [device_state(sim, "PJSIP/10", "NOT_INUSE")], T0 + 1)
    assert m.resolve("10").reason == "not_on_call"
    # 1001 has two devices: one unregistered phone does not log them out.
    m.ingest(SERVER, [device_state(sim, "PJSIP/1001", "UNAVAILABLE")], T0 + 2)
    assert m.resolve("1001").reason == "not_on_call"
    assert live("login").resolve("10").reason == "not_logged_in"


def test_a_resync_takes_registrations_from_the_device_state_list(sim: Sim) -> None:
    """After a reconnect, DeviceStateList is the truth; without it the states seen before
    the reconnect are kept."""
    m = live("registration")
    m.ingest(SERVER, [device_state(sim, "PJSIP/10", "UNAVAILABLE")], T0)
    m.mark_stale(SERVER, T0 + 1)
    m.resync(SERVER, [], [], T0 + 2)
    assert m.resolve("10").reason == "not_logged_in"
    m.resync(SERVER, [], [], T0 + 3, [device_state(sim, "PJSIP/10", "NOT_INUSE")])
    assert m.resolve("10").reason == "not_on_call"
    m.resync(SERVER, [], [], T0 + 4, [device_state(sim, "PJSIP/10", "UNAVAILABLE"),
                                      device_state(sim, "PJSIP/100", "INUSE")])
    assert m.resolve("10").reason == "not_logged_in"
    assert m.resolve("100").reason == "not_on_call"


# --- AgentLogin logins rebuilt at resync (the Agents action) ------------------------------


def pool_item(chan: Chan | None, agent: str, status: str = "AGENT_IDLE") -> Ev:
    """An "Agents" list item as app_agent_pool.c action_agents writes it: a logged-in
    agent carries the snapshot of the channel that ran AgentLogin."""
    pairs = [("Event", "Agents"), ("ActionID", "resync-1"), ("Agent", agent),
             ("Name", f"Pool Agent {agent}"), ("Status", status)]
    if chan is not None:
        pairs += [("LoggedInTime", "1732156800"), *chan.snapshot()]
    return Ev(pairs)


def test_a_resync_keeps_an_agent_pool_login_from_the_agents_list(sim: Sim) -> None:
    """1001 ran AgentLogin on hot-desk phone PJSIP/2050 before AMI dropped. After the
    reconnect the Agents list says so: 1001 is still logged in on that phone, and a call on
    it is 1001's; an agent the list shows logged off is not logged in."""
    m = live()
    login_leg = sim.chan("PJSIP/2050", state=6, context="agents")
    m.ingest(SERVER, [sim.newchannel(login_leg), sim.agent_login(login_leg, "1001")], T0)
    m.mark_stale(SERVER, T0 + 1)
    listed = [sim.core_show_channel(login_leg, application="AgentLogin", data="1001")]
    m.resync(SERVER, listed, [], T0 + 3, None,
             [pool_item(login_leg, "1001"), pool_item(None, "1002", "AGENT_LOGGEDOFF")])
    phone, call = talking_on(sim, "PJSIP/2050")
    m.ingest(SERVER, call, T0 + 4)
    assert m.resolve("1001").channel == phone.name
    assert m.resolve("2050").agent_number == "1001"
    assert m.resolve("1002").reason == "not_logged_in"
    # The next reconnect finds 1001 logged off: the phone is nobody's any more.
    m.resync(SERVER, listed, [], T0 + 5, None, [pool_item(None, "1001", "AGENT_LOGGEDOFF")])
    assert m.resolve("1001").reason == "not_logged_in"
    assert m.resolve("2050").reason == "not_found"


def test_a_pool_item_without_its_channel_is_counted_and_logs_nobody_in(sim: Sim) -> None:
    m = live()
    m.resync(SERVER, [], [], T0, None, [pool_item(None, "1001", "AGENT_ONCALL")])
    assert m.resolve("1001").reason == "not_logged_in"
    assert m.server(SERVER).malformed == 1


# --- FASTAGI_SPY_AGENT: the site names the agent on a leg (pre-dial handler, dialler) ---


def claimed_call(sim: Sim, device: str, agent: str) -> tuple[Chan, list[Ev]]:
    """A customer talking with ``device``, whose leg a pre-dial handler marked as ``agent``'s."""
    phone, call = talking_on(sim, device)
    return phone, [*call[:2], sim.varset(phone, "FASTAGI_SPY_AGENT", agent), *call[2:]]


def test_a_leg_marked_with_the_agent_variable_is_that_agent_while_it_lives(sim: Sim) -> None:
    """1001 answers on hot-desk phone PJSIP/3050, marked FASTAGI_SPY_AGENT=1001: *2221001
    reaches that leg (and 1001 counts as logged in where logins are the truth). Once the
    leg hangs up the phone is nobody's: its next call is not 1001's."""
    m = live("login")
    assert m.resolve("1001").reason == "not_logged_in"
    phone, call = claimed_call(sim, "PJSIP/3050", "1001")
    m.ingest(SERVER, call, T0)
    assert m.resolve("1001").channel == phone.name
    assert m.resolve("3050").agent_number == "1001"
    m.ingest(SERVER, [sim.hangup(phone)], T0 + 1)
    assert m.resolve("1001").reason == "not_logged_in"
    _, call = talking_on(sim, "PJSIP/3050")
    m.ingest(SERVER, call, T0 + 2)
    assert m.resolve("3050").reason == "not_found"
    assert m.server(SERVER).malformed == 0


def test_clearing_the_agent_variable_releases_the_phone(sim: Sim) -> None:
    m = live("login")
    phone, call = claimed_call(sim, "PJSIP/3050", "1001")
    m.ingest(SERVER, call, T0)
    assert m.resolve("1001").channel == phone.name
    m.ingest(SERVER, [sim.varset(phone, "FASTAGI_SPY_AGENT", "")], T0 + 1)
    assert m.resolve("1001").reason == "not_logged_in"
    assert m.resolve("3050").reason == "not_found"


@pytest.mark.parametrize("value", [
    "99999",  # digits, but no directory agent
    "1001;B",  # a smuggled option
    "1001 ",
    "\u0661\u0660\u0660\u0661",  # Arabic-Indic digits for 1001
    "1" * 11,  # longer than any target
    "PJSIP/1001",
])
def test_a_hostile_agent_variable_is_ignored_and_counted(sim: Sim, value: str) -> None:
    m = live("login")
    _, call = claimed_call(sim, "PJSIP/3050", value)
    m.ingest(SERVER, call, T0)
    assert m.resolve("1001").reason == "not_logged_in"
    assert m.resolve("3050").reason == "not_found"
    assert m.server(SERVER).malformed == 1


def test_a_hostile_value_ends_the_claim_before_it(sim: Sim) -> None:
    """Fail closed: a leg whose variable is overwritten with garbage is nobody's."""
    m = live("login")
    phone, call = claimed_call(sim, "PJSIP/3050", "1001")
    m.ingest(SERVER, [*call, sim.varset(phone, "FASTAGI_SPY_AGENT", "1001")], T0)  # again
    assert m.resolve("1001").channel == phone.name
    m.ingest(SERVER, [sim.varset(phone, "FASTAGI_SPY_AGENT", "1001x")], T0 + 1)
    assert m.resolve("1001").reason == "not_logged_in"
    assert m.resolve("3050").reason == "not_found"


def test_the_agent_variable_on_a_customer_leg_is_refused(sim: Sim) -> None:
    """A trunk leg (whose variables a caller may reach through headers) never names an agent."""
    m = live("login")
    trunk = sim.chan("PJSIP/trunk", state=6, cid=("5551000", "x"), context="from-trunk")
    m.ingest(SERVER, [sim.newchannel(trunk), sim.varset(trunk, "FASTAGI_SPY_AGENT", "1001")], T0)
    assert m.resolve("1001").reason == "not_logged_in"
    assert m.server(SERVER).malformed == 1


def test_another_agents_login_on_the_phone_takes_it_from_the_variable(sim: Sim) -> None:
    m = live("login")
    phone, call = claimed_call(sim, "PJSIP/3050", "1001")
    m.ingest(SERVER, [*call, sim.queue_member("QueueMemberAdded", "sales", "1002", "PJSIP/3050")],
             T0)
    assert m.resolve("1002").channel == phone.name
    assert m.resolve("1001").reason == "not_on_call"  # logged in by the variable, on no call
    m.ingest(SERVER, [sim.hangup(phone)], T0 + 1)  # the variable's leg ends: 1002 keeps it
    assert m.resolve("3050").agent_number == "1002"


def test_the_agent_variable_never_stands_in_for_configured_devices(sim: Sim) -> None:
    """1002 is marked on a call on 1001's own desk phone: lent to 1002 while the leg lives,
    1001's again afterwards; 1001's other configured device stays 1001's throughout."""
    m = live("registration")
    phone, call = claimed_call(sim, "PJSIP/1001", "1002")
    m.ingest(SERVER, call, T0)
    assert m.resolve("1002").channel == phone.name
    own, other = talking_on(sim, "Local/1001@agents")
    m.ingest(SERVER, other, T0 + 1)
    assert m.resolve("1001").channel == own.name
    m.ingest(SERVER, [sim.hangup(phone), sim.hangup(own)], T0 + 2)
    again, call = talking_on(sim, "PJSIP/1001")
    m.ingest(SERVER, call, T0 + 3)
    assert m.resolve("1001").channel == again.name
    assert m.resolve("1002").reason == "not_on_call"


def test_a_resync_reads_the_agent_variable_from_the_channel_list(sim: Sim) -> None:
    """channelvars=FASTAGI_SPY_AGENT: CoreShowChannels repeats it, so the leg is still
    1001's after a reconnect; a bad value there is ignored like a bad VarSet."""
    m = live("login")
    phone = sim.chan("PJSIP/3050", state=6, context="agents")
    phone.chanvars = ["FASTAGI_SPY_SESSION=", "FASTAGI_SPY_AGENT=1001"]
    trunk = sim.chan("PJSIP/trunk", state=6, linked=phone, context="from-trunk")
    bridge = sim.new_bridge()
    items = [sim.core_show_channel(phone, bridge=bridge), sim.core_show_channel(trunk, bridge=bridge)]
    m.resync(SERVER, items, [], T0)
    assert m.resolve("1001").channel == phone.name
    phone.chanvars = ["FASTAGI_SPY_AGENT=7"]
    m.resync(SERVER, [sim.core_show_channel(phone, bridge=bridge)], [], T0 + 1)
    assert m.resolve("1001").reason == "not_logged_in"
