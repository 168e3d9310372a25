"""Cross-server spying on two real Asterisk 22 servers joined by an IAX2 trunk on loopback.

The session's sandbox is "sandbox", where the supervisors' phones are; a second sandbox,
"second", booted once for this module, holds the agents' calls. One server process serves
both ([[asterisk]] twice, both from 127.0.0.1, told apart by ?server= in the AGI URL) with a
[[cross_server]] trunk from sandbox to second.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_twisted

from fastagi_spy.config import Config
from fastagi_spy.sandbox import AsteriskSandbox
from fastagi_spy.service import SpyService
from fastagi_spy.store.audit import AuditRecord
from fastagi_spy.store.tokens import new_token
from fastagi_spy.wire.ami import AMIMessage
from tests.integration.audio import heard
from tests.integration.conftest import TEAMS
from tests.integration.driver import Driver, Predicate, is_event, sleep, tag
from tests.integration.site import TONE, agent_call, answer, site_config, supervisor_dials
from tests.integration.test_agi_peers import running, set_global

SECOND = "second"
TRUNK_SECRET = "fsp-cross-trunk-secret-0123"  # sandbox-only trunk on loopback
HEARD = 0.3  # share of 100 ms windows carrying the tone (as in test_feature_codes)


@pytest.fixture(scope="module")
def second(sandbox: AsteriskSandbox) -> Iterator[AsteriskSandbox]:
    """The agents' server: its bundle reaches the same FastAGI port under its own name, and
    takes the trunk from the session's sandbox into fastagi-spy-cross only."""
    box = AsteriskSandbox(
        name=f"fsp-test-second-{os.getpid()}", agi_port=sandbox.agi_port, teams=TEAMS,
        extra_config={
            "fsp_globals.conf": f"FASTAGI_SPY_SERVER = {SECOND}\n",
            "iax.conf": ("[fsp-from-sandbox]\ntype = user\nauth = md5\n"
                         f"secret = {TRUNK_SECRET}\ncontext = fastagi-spy-cross\n"),
        })
    box.start()
    # The supervisors' side of the trunk, on the session's sandbox.
    iax = sandbox.host_path(f"{sandbox.base}/etc/iax.conf")
    with iax.open("a") as conf:
        conf.write(f"\n[fsp-trunk-b]\ntype = peer\nhost = 127.0.0.1\nport = {box.iax_port}\n"
                   f"username = fsp-from-sandbox\nauth = md5\nsecret = {TRUNK_SECRET}\n")
    sandbox.cli("iax2 reload")
    yield box
    box.stop()
    shutil.rmtree(box.host_path(box.base), ignore_errors=True)


@pytest_twisted.async_yield_fixture()
async def driver_b(second: AsteriskSandbox) -> AsyncIterator[Driver]:
    drv = Driver(second)
    await drv.connect()
    yield drv
    await drv.hangup_all()
    await drv.close()


@pytest_twisted.async_yield_fixture()
async def named(driver: Driver) -> AsyncIterator[None]:
    """The session's sandbox names itself in the AGI URL: both servers share 127.0.0.1."""
    await set_global(driver, "FASTAGI_SPY_SERVER", "sandbox")
    yield
    await set_global(driver, "FASTAGI_SPY_SERVER", "")


def cross_config(sandbox: AsteriskSandbox, second: AsteriskSandbox, workdir: Path) -> Config:
    extra = f"""
[[asterisk]]
name = "{SECOND}"
ami_port = {second.ami_port}
ami_username = "fastagi-spy"
ami_secret = "change-me-fastagi-spy"
ping_interval = 5
agi_peers = ["127.0.0.1"]

[[cross_server]]
from = "sandbox"
to = "{SECOND}"
dial = "IAX2/fsp-trunk-b/{{token}}"
"""
    return site_config(sandbox, workdir, extra=extra)


async def record_where(service: SpyService, match: str, timeout: float = 10) -> AuditRecord:
    """The newest closed audit record whose channel starts with ``match``."""
    for _ in range(int(timeout * 10)):
        for record in service.stores.audit.list(limit=20):
            if (record.channel or "").startswith(match) and record.ended_at is not None:
                return record
        await sleep(0.1)
    raise AssertionError(f"no closed record for {match}: {service.stores.audit.list(limit=5)}")


def is_prompt_on(channel: str, sound: str) -> Predicate:
    def match(m: AMIMessage) -> bool:
        command = m.get("Command") or ""
        return (m.event == "AGIExecStart" and m.get("Channel") == channel
                and command.startswith("STREAM FILE") and f'"{sound}"' in command)
    return match


async def trunk_call(driver: Driver, number: str) -> None:
    """What anyone with the trunk can do: dial a number of their choosing into it."""
    await driver.originate(f"IAX2/fsp-trunk-b/{number}", "fsp-handsets", "supervisor")


async def refused_over_the_trunk(driver: Driver, driver_b: Driver, service: SpyService,
                                 number: str) -> AuditRecord:
    """A trunk call with ``number`` hears "not available" on second and no spy starts."""
    mark_b = driver_b.mark()
    await trunk_call(driver, number)
    channel = await driver_b.new_channel("IAX2/fsp-from-sandbox-", "", since=mark_b)
    await driver_b.wait_for(is_prompt_on(channel, "feature-not-avail-line"), since=mark_b,
                            what="the refusal prompt over the trunk")
    await driver_b.wait_for(is_event("Hangup", Channel=channel), since=mark_b)
    assert not driver_b.seen(is_event("ChanSpyStart"), since=mark_b)
    return await record_where(service, channel)


@pytest_twisted.ensureDeferred
async def test_a_supervisor_spies_over_the_trunk_and_its_token_cannot_be_replayed(
        driver: Driver, driver_b: Driver, named: None, sandbox: AsteriskSandbox,
        second: AsteriskSandbox, tmp_path: Path) -> None:
    """1001 talks on second; supervisor 2001 dials *2221001 on sandbox and types the PIN:
    ChanSpyStart on second on 1001's leg, spied by the trunk's channel, and the supervisor
    on sandbox hears the customer and the agent. The token, read off sandbox's Dial, is
    refused when dialled into the trunk again."""
    async with running(cross_config(sandbox, second, tmp_path)) as service:
        call = await agent_call(driver_b, "1001")
        rec = f"{sandbox.recordings}/{tag('cross')}"
        mark, mark_b = driver.mark(), driver_b.mark()
        sup = await supervisor_dials(driver, "2001", "*2221001", rec=rec)
        await answer(driver, sup, "agent-pass", "1234", since=mark)
        start = await driver_b.wait_for(
            lambda m: m.event == "ChanSpyStart" and m.get("SpyeeChannel") == call.agent_leg,
            since=mark_b, what="ChanSpyStart on the second server")
        assert (start.get("SpyerChannel") or "").startswith("IAX2/fsp-from-sandbox-")
        assert not driver.seen(is_event("ChanSpyStart"), since=mark)  # nothing on sandbox
        await sleep(3.0)
        await driver.hangup(sup.line)  # the supervisor hangs up; the trunk call ends with it
        await sleep(1.0)  # MixMonitor finishes its file on hangup
        await driver.hangup_all()
        path = sandbox.host_path(f"{rec}-supervisor-hears.wav")
        for _ in range(50):
            if path.exists() and path.stat().st_size > 8000:
                break
            await sleep(0.1)
        levels = {party: heard(Path(path), TONE[party]) for party in ("customer", "agent")}
        assert min(levels.values()) > HEARD, levels

        on_b = await record_where(service, "IAX2/fsp-from-sandbox-")
        assert (on_b.via, on_b.detail, on_b.server) == ("cross_server", "cross_server from sandbox",
                                                        SECOND)
        assert (on_b.supervisor, on_b.agent, on_b.resolved_channel) == ("2001", "1001",
                                                                         call.agent_leg)
        assert on_b.spy_started_at is not None
        # The trunk's ChanSpy on second is ours (watched, and on record): never unexplained.
        assert [r for r in service.stores.audit.list(limit=50) if r.via == "unexplained"] == []
        on_a = await record_where(service, sup.line)
        assert (on_a.via, on_a.server, on_a.detail) == ("phone", SECOND, f"cross_server to {SECOND}")
        assert on_a.end_reason == "supervisor_hangup"

        dialled = [m.get("Command") or "" for m in driver.seen(
            is_event("AGIExecStart", Channel=sup.line), since=mark)
            if (m.get("Command") or "").startswith('EXEC "Dial"')]
        found = re.search(r"IAX2/fsp-trunk-b/([0-9]{32}),", dialled[0])
        assert found, dialled
        replayed = await refused_over_the_trunk(driver, driver_b, service, found.group(1))
        assert replayed.via == "cross_server" and replayed.end_reason == "denied"
        assert replayed.detail == "cross_server token replayed"


@pytest_twisted.ensureDeferred
async def test_a_forged_token_over_the_trunk_is_refused_and_audited(
        driver: Driver, driver_b: Driver, named: None, sandbox: AsteriskSandbox,
        second: AsteriskSandbox, tmp_path: Path) -> None:
    """32 digits we never issued: the server refuses them with a prompt, audited as forged.
    Anything but 32 digits: the bundle refuses it before any AGI."""
    async with running(cross_config(sandbox, second, tmp_path)) as service:
        await agent_call(driver_b, "1001")
        forged = await refused_over_the_trunk(driver, driver_b, service, new_token())
        assert forged.via == "cross_server" and forged.end_reason == "denied"
        assert forged.detail == "cross_server token forged" and forged.supervisor is None

        mark_b = driver_b.mark()
        await trunk_call(driver, "1001")
        await driver_b.wait_for(
            lambda m: m.event == "Newexten" and m.get("Application") == "Playback"
            and "privacy-incorrect" in (m.get("AppData") or ""), since=mark_b,
            what="the bundle's refusal")
        assert not driver_b.seen(lambda m: m.event == "AGIExecStart", since=mark_b)
