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
