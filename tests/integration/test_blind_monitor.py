"""blind_monitor on the real Asterisk 22: the supervisor's phone is rung, answers, and spies.

Every launch is VICIdial's documented request over real HTTP, with only the host, the
credentials and the session changed. The phone is a Local channel into the sandbox's fsp-api-phones context, whose ;2 half is a
handset that answers at once, plays the supervisor's tone and records what it hears. Who
hears whom is proven by tone detection, as for the feature codes.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor

from fastagi_spy.sandbox import AsteriskSandbox
from fastagi_spy.service import SpyService, make_service, pin_hasher
from fastagi_spy.store.audit import AuditRecord
from fastagi_spy.store.tokens import new_token
from fastagi_spy.supervise.launch import Stage
from fastagi_spy.wire.ami import AMIMessage
from tests.integration.audio import heard
from tests.integration.driver import Driver, Predicate, is_event, sleep, tag
from tests.integration.site import TONE, AgentCall, agent_call, set_pins, site_config, wait_ready
from tests.integration.test_agi_peers import set_global
from tests.integration.test_vicidial_status import base, fetch

USER, PASSWORD = "6666", "blind-monitor-pw"  # VICIdial's docs use user 6666
PHONES = f"""
[[supervisors]]
number = "{USER}"
name = "Floor manager, API"
teams = ["sales"]
modes = ["listen", "whisper", "barge"]
api = true
user_level = 8
phone = "350a"
[[phones]]
login = "350a"
dial = "Local/2001@fsp-api-phones"
server = "sandbox"

[[phones]]
login = "350b"
dial = "Local/2002@fsp-api-phones"
server = "sandbox"
"""
PHONE_A = "Local/2001@fsp-api-phones-"  # its ;1 half runs the bundle and our AGI
HEARD, SILENT = 0.3, 0.02  # share of 100 ms windows carrying the tone


@pytest_twisted.async_yield_fixture()
async def site(sandbox: AsteriskSandbox, tmp_path: Path, driver: Driver
               ) -> AsyncIterator[SpyService]:
    service = make_service(site_config(sandbox, tmp_path, extra=PHONES), reactor)
    set_pins(service)
    hasher = pin_hasher(service.config)
    service.stores.passwords.set_hash(USER, hasher.hash_password(USER, PASSWORD), time.time())
    service.startService()
    await wait_ready(service)
    yield service
    await service.stopService()
    for name in ("FSP_API_REC", "FSP_API_HOLD"):
        await set_global(driver, name, "")


async def agent_status(site: SpyService, agent: str, user: str = USER,
                       password: str = PASSWORD) -> list[str]:
    """agent_status as a VICIdial client asks it: the pipe-separated fields (session last)."""
    url = (f"{base(site)}/vicidial/non_agent_api.php?source=test&user={user}&pass={password}"
           f"&function=agent_status&agent_user={agent}")
    code, _, text = await fetch(url)
    return text.strip().split("|") if code == 200 else []


async def session_of(site: SpyService, agent: str, user: str = USER,
                     password: str = PASSWORD) -> str:
    """The 7-digit session a client reads from agent_status once ``agent`` is on a call."""
    for _ in range(100):
        fields = await agent_status(site, agent, user, password)
        if fields[:1] == ["INCALL"] and fields[-1]:
            return fields[-1]
        await sleep(0.1)
    raise AssertionError(f"agent {agent} never INCALL in agent_status")


async def blind_monitor(site: SpyService, session: str, stage: Stage,
                        phone: str = "350a", server_ip: str = "127.0.0.1") -> str:
    """VICIdial's documented request (host, credentials, session changed); the man_id."""
    url = (f"{base(site)}/vicidial/non_agent_api.php?source=test&user={USER}&pass={PASSWORD}"
           f"&function=blind_monitor&phone_login={phone}&session_id={session}"
           f"&server_ip={server_ip}&stage={stage.value}")
    code, _, text = await fetch(url)
    number = {"350a": "2001", "350b": "2002"}[phone]
    padded = re.escape("".join(f"{int(octet):03d}*" for octet in server_ip.split(".")))
    found = re.fullmatch(
        rf"SUCCESS: blind_monitor HAS BEEN LAUNCHED - {phone}\|{padded}{session}"
        rf"\|{number}\|{session}\|([0-9]+)\|{USER}\n", text)
    assert code == 200 and found, (code, text)
    return found.group(1)


def is_spy_on(call: AgentCall) -> Predicate:
    def match(m: AMIMessage) -> bool:
        spyer = m.get("SpyerChannel") or ""
        return (m.event == "ChanSpyStart" and m.get("SpyeeChannel") == call.agent_leg
                and spyer.startswith(PHONE_A) and spyer.endswith(";1"))
    return match


def is_prompt_on(channel: str, sound: str) -> Predicate:
    def match(m: AMIMessage) -> bool:
        command = m.get("Command") or ""
        return (m.event == "AGIExecStart" and m.get("Channel") == channel
                and command.startswith("STREAM FILE") and f'"{sound}"' in command)
    return match


async def closed_row(site: SpyService, match: str) -> AuditRecord:
    """The newest closed audit row whose channel starts with ``match``."""
    for _ in range(100):
        for record in site.stores.audit.list(limit=20):
            if (record.channel or "").startswith(match) and record.ended_at is not None:
                return record
        await sleep(0.1)
    raise AssertionError(f"no closed row for {match}: {site.stores.audit.list(limit=5)}")


async def levels(sandbox: AsteriskSandbox, rec: str, parties: tuple[str, ...]
                 ) -> dict[str, float]:
    found = {}
    for party in parties:
        path = sandbox.host_path(f"{rec}-{party}-hears.wav")
        for _ in range(50):
            if path.exists() and path.stat().st_size > 8000:
                break
            await sleep(0.1)
        for source, hz in TONE.items():
            if source != party:
                found[f"{party} hears {source}"] = heard(Path(path), hz)
    return found


@pytest.mark.parametrize("stage, agent_hears, customer_hears", [
    (Stage.MONITOR, False, False),
    (Stage.WHISPER, True, False),
    (Stage.BARGE, True, True),
])
@pytest_twisted.ensureDeferred
async def test_blind_monitor_rings_the_phone_which_spies_in_the_stages_mode(
        driver: Driver, site: SpyService, sandbox: AsteriskSandbox,
        stage: Stage, agent_hears: bool, customer_hears: bool) -> None:
    """ChanSpyStart from the rung phone on 1001's leg; who hears the supervisor is the
    stage's mode; the answer's audit row (via api) names the launch, source and user."""
    rec = f"{sandbox.recordings}/{tag('bm')}"
    call = await agent_call(driver, "1001", rec=rec)
    session = await session_of(site, "1001")
    await set_global(driver, "FSP_API_REC", rec)
    mark = driver.mark()
    man_id = await blind_monitor(site, session, stage)
    start = await driver.wait_for(is_spy_on(call), since=mark, what="ChanSpyStart from the phone")
    await sleep(3.0)
    await driver.hangup_all()
    await sleep(1.0)  # MixMonitor finishes its files on hangup
    heard_levels = await levels(sandbox, rec, ("customer", "agent", "supervisor"))
    for party, expected in (("agent", agent_hears), ("customer", customer_hears)):
        level = heard_levels[f"{party} hears supervisor"]
        assert (level > HEARD) if expected else (level < SILENT), (party, heard_levels)
    assert heard_levels["supervisor hears agent"] > HEARD, heard_levels
    assert heard_levels["supervisor hears customer"] > HEARD, heard_levels

    row = await closed_row(site, start.get("SpyerChannel") or "")
    assert (row.via, row.supervisor, row.agent, row.resolved_channel) == (
        "api", USER, "1001", call.agent_leg)
    assert row.detail == f"blind_monitor {stage.value} source=test phone=350a launch=#{man_id}"
    assert row.spy_started_at is not None and row.modes
    launch_row = site.stores.audit.get(int(man_id))
    assert launch_row is not None
    assert (launch_row.via, launch_row.end_reason, launch_row.requested_target) == (
        "api", "completed", session)


@pytest_twisted.ensureDeferred
async def test_hijack_gives_the_customer_to_the_supervisor_and_releases_the_agent(
        driver: Driver, site: SpyService, sandbox: AsteriskSandbox) -> None:
    """HIJACK: the customer's leg enters the phone's bridge, the agent's leg is hung up,
    supervisor and customer hear each other; the row says hijack."""
    rec = f"{sandbox.recordings}/{tag('hj')}"
    call = await agent_call(driver, "1001", rec=rec)
    customer = call.customer_handset[:-2] + ";2"  # the half facing the agent's leg
    session = await session_of(site, "1001")
    await set_global(driver, "FSP_API_REC", rec)
    mark = driver.mark()
    await blind_monitor(site, session, Stage.HIJACK)
    phone_in = await driver.wait_for(
        lambda m: m.event == "BridgeEnter" and (m.get("Channel") or "").startswith(PHONE_A),
        since=mark, what="the phone entering a bridge")
    bridge = phone_in.get("BridgeUniqueid")
    await driver.wait_for(is_event("BridgeEnter", Channel=customer, BridgeUniqueid=bridge),
                          since=mark, what="the customer in the phone's bridge")
    await driver.wait_for(is_event("Hangup", Channel=call.agent_leg), since=mark,
                          what="the agent's leg released")
    await sleep(3.0)
    phone = phone_in.get("Channel") or ""
    assert driver.seen(lambda m: m.event == "Hangup" and m.get("Channel") == customer,
                       since=mark) == []  # the customer is still there
    await driver.hangup(phone)
    await driver.wait_for(is_event("Hangup", Channel=customer), since=mark,
                          what="the customer hung up with the supervisor")
    await driver.hangup_all()
    await sleep(1.0)
    heard_levels = await levels(sandbox, rec, ("customer", "supervisor"))
    assert heard_levels["supervisor hears customer"] > HEARD, heard_levels
    assert heard_levels["customer hears supervisor"] > HEARD, heard_levels
    assert not driver.seen(is_event("ChanSpyStart"), since=mark)

    row = await closed_row(site, phone)
    assert (row.via, row.agent, row.resolved_channel) == ("api", "1001", call.agent_leg)
    assert row.detail is not None and "hijack" in row.detail, row.detail
    assert row.spy_started_at is not None and row.end_reason == "supervisor_hangup"


@pytest_twisted.ensureDeferred
async def test_the_agent_hangs_up_before_the_phone_answers_a_prompt_and_no_spy(
        driver: Driver, site: SpyService) -> None:
    """The phone rings (held); the agent's call ends; then the phone answers: it hears
    'the number is not answering', no ChanSpy starts, and the row says why."""
    call = await agent_call(driver, "1001")
    session = await session_of(site, "1001")
    await set_global(driver, "FSP_API_HOLD", "2002")
    mark = driver.mark()
    await blind_monitor(site, session, Stage.MONITOR, phone="350b")
    ringing = await driver.new_channel("Local/2002@fsp-api-phones-", ";2", since=mark)
    await driver.hangup(call.agent_leg)
    await driver.wait_for(is_event("Hangup", Channel=call.agent_leg), since=mark)
    for _ in range(100):  # the server has seen the call end too (as agent_status says)
        if (await agent_status(site, "1001"))[:1] != ["INCALL"]:
            break
        await sleep(0.1)
    await driver.action("Redirect", [("Channel", ringing), ("Context", "fsp-api-phones"),
                                     ("Exten", "answer"), ("Priority", "1")])
    line = ringing[:-2] + ";1"
    await driver.wait_for(is_prompt_on(line, "number-not-answering"), since=mark,
                          what="the prompt on the phone")
    await driver.wait_for(is_event("Hangup", Channel=line), since=mark)
    assert not driver.seen(is_event("ChanSpyStart"), since=mark)
    row = await closed_row(site, line)
    assert (row.via, row.end_reason) == ("api", "not_on_call")
    assert row.detail is not None and "call ended before the phone answered" in row.detail


@pytest_twisted.ensureDeferred
async def test_a_replayed_or_forged_token_is_refused_and_audited(
        driver: Driver, site: SpyService) -> None:
    """The token of a spy that ran, dialled into [fastagi-spy-api] again: refused with a
    prompt, no ChanSpy, audited as replayed; one we never issued: forged."""
    call = await agent_call(driver, "1001")
    session = await session_of(site, "1001")
    mark = driver.mark()
    await blind_monitor(site, session, Stage.MONITOR)
    start = await driver.wait_for(is_spy_on(call), since=mark, what="the first spy")
    spyer = start.get("SpyerChannel") or ""
    token = next(m.get("Exten") for m in driver.seen(
        lambda m: m.event == "Newexten" and m.get("Channel") == spyer
        and m.get("Context") == "fastagi-spy-api", since=mark))
    await driver.hangup(spyer)
    for token_used, why in ((token or "", "replayed"), (new_token(), "forged")):
        here = driver.mark()
        await driver.originate("Local/2001@fsp-api-phones", "fastagi-spy-api", token_used)
        line = await driver.new_channel(PHONE_A, ";1", since=here)
        await driver.wait_for(is_prompt_on(line, "feature-not-avail-line"), since=here,
                              what=f"the refusal of a {why} token")
        await driver.wait_for(is_event("Hangup", Channel=line), since=here)
        assert not driver.seen(is_event("ChanSpyStart"), since=here)
        row = await closed_row(site, line)
        assert (row.via, row.end_reason, row.detail) == ("api", "denied", f"api token {why}")
