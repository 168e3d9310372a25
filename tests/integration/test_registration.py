"""'Logged in' follows the phone's registration, on real Asterisk 22 PJSIP over loopback.

Two sandbox Asterisks of their own: "pbx" runs the bundle and our service (agent 1001's
device is PJSIP/1001 there, and the default logged_in_by = "registration" holds); "phone"
is 1001's desk phone: a PJSIP outbound registration to pbx, answering the calls pbx sends
it. The session's sandbox has no PJSIP and stays as it is.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_twisted

from fastagi_spy.sandbox import AsteriskSandbox, free_udp_port
from tests.integration.conftest import TEAMS
from tests.integration.driver import Driver, Predicate, is_event
from tests.integration.site import (
    TONE,
    answer,
    heard_prompt,
    site_config,
    supervisor_dials,
)
from tests.integration.test_agi_peers import running

# What PJSIP needs in these sandboxes (the shared modules.conf loads none of it).
PJSIP_MODULES = "".join(f"load => {name}.so\n" for name in (
    "res_pjproject", "res_pjsip", "res_pjsip_pubsub", "res_pjsip_session", "chan_pjsip",
    "res_pjsip_registrar", "res_pjsip_outbound_registration",
    "res_pjsip_endpoint_identifier_user", "res_pjsip_endpoint_identifier_ip",
    "res_pjsip_sdp_rtp", "res_rtp_asterisk",
))


def transport(port: int) -> str:
    return f"[loopback]\ntype = transport\nprotocol = udp\nbind = 127.0.0.1:{port}\n"


def pbx_config(sip_port: int) -> dict[str, str]:
    """Endpoint 1001 registers by username (loopback only, so no auth in the sandbox);
    customers reach it through fsp-customers-sip, whose pre-dial handler sets SPYGROUP."""
    return {
        "modules.conf": PJSIP_MODULES,
        "pjsip.conf": transport(sip_port) + (
            "[1001]\ntype = aor\nmax_contacts = 1\nremove_existing = yes\n"
            "[1001]\ntype = endpoint\ntransport = loopback\ncontext = fsp-agents\n"
            "aors = 1001\nidentify_by = username\ndisallow = all\nallow = ulaw\n"),
        "extensions.conf": (
            "[fsp-customers-sip]\n"
            "exten => _X.,1,Dial(PJSIP/${EXTEN},,b(fsp-agent-leg^${EXTEN}^1))\n"
            " same => n,Hangup()\n"),
    }


def phone_config(sip_port: int, pbx_port: int) -> dict[str, str]:
    """Registers as 1001 with pbx; a call from pbx is answered by the agent's handset."""
    return {
        "modules.conf": PJSIP_MODULES,
        "pjsip.conf": transport(sip_port) + (
            "[pbx]\ntype = registration\ntransport = loopback\n"
            f"server_uri = sip:127.0.0.1:{pbx_port}\nclient_uri = sip:1001@127.0.0.1:{pbx_port}\n"
            "contact_user = 1001\nexpiration = 300\nretry_interval = 2\n"
            "[pbx]\ntype = endpoint\ntransport = loopback\ncontext = fsp-phone-rings\n"
            "disallow = all\nallow = ulaw\n"
            "[pbx]\ntype = identify\nendpoint = pbx\nmatch = 127.0.0.1\n"),
        "extensions.conf": (
            "[fsp-phone-rings]\n"
            "exten => 1001,1,Answer()\n"
            f" same => n,Set(FSP_TONE_agent={TONE['agent']})\n"
            " same => n,Goto(fsp-handset,agent,1)\n"),
    }


def remove(box: AsteriskSandbox) -> None:
    if box.install is None:
        return  # never started
    box.stop()
    shutil.rmtree(box.host_path(box.base), ignore_errors=True)


@pytest.fixture(scope="module")
def pbx_port() -> int:
    return free_udp_port()


@pytest.fixture(scope="module")
def pbx(pbx_port: int) -> Iterator[AsteriskSandbox]:
    box = AsteriskSandbox(name=f"fsp-test-pbx-{os.getpid()}", teams=TEAMS,
                          extra_config=pbx_config(pbx_port))
    box.start()
    yield box
    remove(box)


@pytest_twisted.async_yield_fixture()
async def on_pbx(pbx: AsteriskSandbox) -> AsyncIterator[Driver]:
    drv = Driver(pbx)
    await drv.connect()
    yield drv
    await drv.hangup_all()
    await drv.close()


@pytest.fixture()
def phone(pbx_port: int) -> Iterator[AsteriskSandbox]:
    """1001's desk phone, switched off until the test boots it."""
    box = AsteriskSandbox(name=f"fsp-test-phone-{os.getpid()}",
                          extra_config=phone_config(free_udp_port(), pbx_port))
    yield box
    remove(box)


async def not_logged_in(driver: Driver) -> None:
    """Supervisor 2001 dials *2221001 and types the PIN: 'is unavailable', no spy."""
    mark = driver.mark()
    sup = await supervisor_dials(driver, "2001", "*2221001")
    await answer(driver, sup, "agent-pass", "1234", since=mark)
    await heard_prompt(driver, sup, "vm-isunavail", since=mark)
    await driver.hangup(sup.line)
    await driver.wait_for(is_event("Hangup", Channel=sup.line), since=mark)
    assert not driver.seen(is_event("ChanSpyStart"), since=mark)


def is_device_state(state: str) -> Predicate:
    return is_event("DeviceStateChange", Device="PJSIP/1001", State=state)


@pytest_twisted.ensureDeferred
async def test_an_agent_is_logged_in_while_the_desk_phone_is_registered(
        on_pbx: Driver, pbx: AsteriskSandbox, phone: AsteriskSandbox, tmp_path: Path) -> None:
    """Phone off: *2221001 hears 'not logged in'. The phone registers and 1001 takes a
    customer call on it: *2221001 spies on that PJSIP/1001 leg. The phone unregisters
    (PJSIPUnregister): 'not logged in' again, no spy."""
    config = site_config(pbx, tmp_path, devices={"1001": "PJSIP/1001"})
    async with running(config):
        await not_logged_in(on_pbx)

        mark = on_pbx.mark()
        phone.start()
        on_phone = Driver(phone)
        await on_phone.connect()
        try:
            await on_phone.action("PJSIPRegister", [("Registration", "pbx")])
            await on_pbx.wait_for(is_device_state("NOT_INUSE"), since=mark,
                                  what="PJSIP/1001 registered")
            leg = await customer_calls_the_desk_phone(on_pbx)
            assert await spyee_of(on_pbx) == leg

            mark = on_pbx.mark()
            await on_pbx.hangup_all()  # the call ends; then the phone goes off the network
            await on_pbx.wait_for(is_device_state("NOT_INUSE"), since=mark,
                                  what="PJSIP/1001 idle again")
            mark = on_pbx.mark()
            done = await on_phone.action("PJSIPUnregister", [("Registration", "pbx")])
            assert done.success, done.response
            await on_pbx.wait_for(is_device_state("UNAVAILABLE"), since=mark,
                                  what="PJSIP/1001 unregistered")
            await not_logged_in(on_pbx)
        finally:
            await on_phone.close()


async def customer_calls_the_desk_phone(driver: Driver) -> str:
    """A customer dials PJSIP/1001; the phone answers. Returns 1001's leg on pbx."""
    mark = driver.mark()
    await driver.originate("Local/1001@fsp-customers-sip/n", "fsp-handsets", "customer",
                           variables={"FSP_TONE_customer": str(TONE["customer"])},
                           caller_id="Customer <5551234>")
    leg = await driver.new_channel("PJSIP/1001-", "", since=mark)
    await driver.wait_for(lambda m: m.event == "BridgeEnter" and m.get("Channel") == leg,
                          since=mark, what="1001's desk phone in the call")
    return leg


async def spyee_of(driver: Driver) -> str:
    """Supervisor 2001 dials *2221001 and types the PIN: the channel ChanSpy started on."""
    mark = driver.mark()
    sup = await supervisor_dials(driver, "2001", "*2221001")
    await answer(driver, sup, "agent-pass", "1234", since=mark)
    start = await driver.wait_for(is_event("ChanSpyStart", SpyerChannel=sup.line), since=mark,
                                  what="ChanSpyStart")
    await driver.hangup(sup.line)
    await driver.wait_for(is_event("Hangup", Channel=sup.line), since=mark)
    return start.get("SpyeeChannel") or ""
