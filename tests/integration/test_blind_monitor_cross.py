"""blind_monitor across servers: the supervisor's phone is on one Asterisk 22, the agent on
another; the answered phone goes over the [[cross_server]] trunk, as a feature code does."""

from __future__ import annotations

import time
from pathlib import Path

import pytest_twisted

from fastagi_spy.config import Config
from fastagi_spy.sandbox import AsteriskSandbox
from fastagi_spy.service import pin_hasher
from fastagi_spy.supervise.launch import Stage
from tests.integration.driver import Driver, is_event
from tests.integration.site import agent_call, site_config
from tests.integration.test_agi_peers import running
from tests.integration.test_blind_monitor import (
    PASSWORD,
    PHONE_A,
    PHONES,
    USER,
    blind_monitor,
    closed_row,
    session_of,
)
from tests.integration.test_cross_server import (  # noqa: F401 (fixtures)
    SECOND,
    driver_b,
    named,
    record_where,
    second,
)

SECOND_IP = "127.0.0.2"  # VICIdial's server_ip for the agents' server (a label here)


def config(sandbox: AsteriskSandbox, other: AsteriskSandbox, workdir: Path, route: bool
           ) -> Config:
    trunk = ('[[cross_server]]\nfrom = "sandbox"\nto = "second"\n'
             'dial = "IAX2/fsp-trunk-b/{token}"\n') if route else ""
    return site_config(sandbox, workdir, extra=f"""
[[asterisk]]
name = "{SECOND}"
server_ip = "{SECOND_IP}"
ami_port = {other.ami_port}
ami_username = "fastagi-spy"
ami_secret = "change-me-fastagi-spy"
ping_interval = 5
agi_peers = ["127.0.0.1"]

{trunk}
{PHONES}
""")


@pytest_twisted.ensureDeferred
async def test_the_phone_goes_over_the_trunk_to_the_agents_server(
        driver: Driver, driver_b: Driver, named: None, sandbox: AsteriskSandbox,  # noqa: F811
        second: AsteriskSandbox, tmp_path: Path) -> None:  # noqa: F811
    """1001 talks on second; blind_monitor with second's server_ip rings 350a on sandbox;
    ChanSpyStart follows on second, on 1001's leg, spied by the trunk's channel."""
    async with running(config(sandbox, second, tmp_path, route=True)) as service:
        hasher = pin_hasher(service.config)
        service.stores.passwords.set_hash(USER, hasher.hash_password(USER, PASSWORD),
                                          time.time())
        call = await agent_call(driver_b, "1001")
        session = await session_of(service, "1001")
        mark, mark_b = driver.mark(), driver_b.mark()
        await blind_monitor(service, session, Stage.MONITOR, server_ip=SECOND_IP)
        start = await driver_b.wait_for(
            lambda m: m.event == "ChanSpyStart" and m.get("SpyeeChannel") == call.agent_leg,
            since=mark_b, what="ChanSpyStart on the second server")
        assert (start.get("SpyerChannel") or "").startswith("IAX2/fsp-from-sandbox-")
        assert not driver.seen(is_event("ChanSpyStart"), since=mark)
        phone = await driver.new_channel(PHONE_A, ";1", since=mark)
        await driver.hangup(phone)
        on_b = await record_where(service, "IAX2/fsp-from-sandbox-")
        assert (on_b.via, on_b.supervisor, on_b.agent, on_b.server) == (
            "cross_server", USER, "1001", SECOND)
        on_a = await closed_row(service, phone)
        assert (on_a.via, on_a.supervisor, on_a.server) == ("api", USER, SECOND)
        assert on_a.detail == f"cross_server to {SECOND}"


@pytest_twisted.ensureDeferred
async def test_without_a_route_blind_monitor_is_refused_before_any_ring(
        driver: Driver, driver_b: Driver, named: None, sandbox: AsteriskSandbox,  # noqa: F811
        second: AsteriskSandbox, tmp_path: Path) -> None:  # noqa: F811
    """No [[cross_server]] from the phone's server to the agent's: a clear ERROR line, no
    Originate."""
    from tests.integration.test_vicidial_status import base, fetch

    async with running(config(sandbox, second, tmp_path, route=False)) as service:
        hasher = pin_hasher(service.config)
        service.stores.passwords.set_hash(USER, hasher.hash_password(USER, PASSWORD),
                                          time.time())
        await agent_call(driver_b, "1001")
        session = await session_of(service, "1001")
        mark = driver.mark()
        code, _, text = await fetch(
            f"{base(service)}/vicidial/non_agent_api.php?source=test&user={USER}"
            f"&pass={PASSWORD}&function=blind_monitor&phone_login=350a&session_id={session}"
            f"&server_ip={SECOND_IP}&stage=MONITOR")
        assert (code, text) == (200, "ERROR: blind_monitor NO ROUTE FROM THE PHONE'S SERVER "
                                     f"TO THE AGENT'S SERVER - {session}|{USER}\n")
        assert not driver.seen(lambda m: m.event == "Newchannel"
                               and (m.get("Channel") or "").startswith(PHONE_A), since=mark)
