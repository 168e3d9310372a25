"""Supervisor feature codes end to end on the real Asterisk 22, through the real bundle.

Supervisors dial *222/*223/*224 from a simulated desk phone; PINs and targets are typed with
SendDTMF; who hears whom is proven by tone detection on each party's recording.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_twisted

from fastagi_spy.sandbox import AsteriskSandbox
from fastagi_spy.service import SpyService
from fastagi_spy.store.audit import AuditRecord
from tests.integration.audio import heard
from tests.integration.conftest import failures
from tests.integration.driver import Driver, is_event, sleep, tag
from tests.integration.site import (
    TONE,
    agent_call,
    answer,
    closed_records,
    heard_prompt,
    hears_service_unavailable,
    is_prompt,
    supervisor_dials,
)

# Every test that takes `site` (or `store`) runs on SQLite and on the real PostgreSQL.
pytestmark = pytest.mark.both_stores


def spy_started(mark_events: list, spyer: str) -> list:  # type: ignore[type-arg]
    return [e for e in mark_events if e.event == "ChanSpyStart" and e.get("SpyerChannel") == spyer]


async def last_record(site: SpyService, settle: float = 0.3) -> AuditRecord:
    await sleep(settle)
    return site.stores.audit.list(limit=1)[0]


# -- who hears whom ------------------------------------------------------------------------


async def _spy_with_recordings(driver: Driver, sandbox: AsteriskSandbox, code: str) -> dict[str, float]:
    rec = f"{sandbox.recordings}/{tag(code.strip('*'))}"
    call = await agent_call(driver, "1001", rec=rec)
    mark = driver.mark()
    sup = await supervisor_dials(driver, "2001", f"{code}1001", rec=rec)
    await answer(driver, sup, "agent-pass", "1234", since=mark)
    start = await driver.wait_for(is_event("ChanSpyStart", SpyerChannel=sup.line), since=mark,
                                  what="ChanSpyStart")
    assert start.get("SpyeeChannel") == call.agent_leg
    await sleep(3.0)
    await driver.hangup_all()
    await sleep(1.0)  # MixMonitor finishes its files on hangup
    levels = {}
    for party in ("customer", "agent", "supervisor"):
        path = sandbox.host_path(f"{rec}-{party}-hears.wav")
        for _ in range(50):
            if path.exists() and path.stat().st_size > 8000:
                break
            await sleep(0.1)
        for source, hz in TONE.items():
            if source != party:
                levels[f"{party} hears {source}"] = heard(Path(path), hz)
    return levels


HEARD, SILENT = 0.3, 0.02  # share of 100 ms windows carrying the tone


@pytest.mark.parametrize("code, agent_hears, customer_hears", [
    ("*222", False, False),  # listen: nobody hears the supervisor
    ("*223", True, False),  # whisper: the agent only
    ("*224", True, True),  # barge: agent and customer
])
@pytest_twisted.ensureDeferred
async def test_who_hears_the_supervisor_and_the_supervisor_hears_both(
        driver: Driver, site: SpyService, sandbox: AsteriskSandbox,
        code: str, agent_hears: bool, customer_hears: bool) -> None:
    """Proven by tone detection on each party's recording of what it hears; in every mode
    the supervisor hears both the agent and the customer."""
    levels = await _spy_with_recordings(driver, sandbox, code)
    for party, expected in (("agent", agent_hears), ("customer", customer_hears)):
        level = levels[f"{party} hears supervisor"]
        assert (level > HEARD) if expected else (level < SILENT), (party, levels)
    assert levels["supervisor hears agent"] > HEARD, levels
    assert levels["supervisor hears customer"] > HEARD, levels


# -- PIN and lockout -------------------------------------------------------------------------


async def _wrong_pins(driver: Driver, phone: str, pins: list[str]) -> None:
    mark = driver.mark()
    sup = await supervisor_dials(driver, phone, "*2221001")
    for pin in pins:
        here = driver.mark()
        await answer(driver, sup, "agent-pass", pin, since=here)
        await heard_prompt(driver, sup, "vm-incorrect", since=here)
    await driver.wait_for(is_event("Hangup", Channel=sup.line), since=mark, what="hangup")


@pytest_twisted.ensureDeferred
async def test_wrong_pin_three_times_then_locked_out_across_calls_until_unlocked(
        driver: Driver, site: SpyService) -> None:
    """3 wrong PINs end the call; the next call's failure locks the phone (and the
    supervisor on it) out, and the call goes on exactly as after a wrong PIN; then even the
    right PIN is refused until `unlock`, after which it works."""
    await agent_call(driver, "1001")
    mark = driver.mark()
    await _wrong_pins(driver, "2001", ["1111", "2222", "3333"])
    records = await closed_records(site, 1)
    assert records[0].auth_result == "bad_pin" and records[0].end_reason == "bad_pin"
    await _wrong_pins(driver, "2001", ["4444", "5555", "6666"])  # 4th failure: locked
    records = await closed_records(site, 1)
    assert records[0].end_reason == "locked_out"
    # The right PIN now sounds exactly like a wrong one.
    await _wrong_pins(driver, "2001", ["1234", "1234", "1234"])
    assert (await closed_records(site, 1))[0].end_reason == "locked_out"
    assert not driver.seen(is_event("ChanSpyStart"), since=mark)
    # The admin lifts it (what `fastagi-spy unlock` calls); the right PIN works again.
    assert site.stores.lockouts.unlock("supervisor:2001")
    assert site.stores.lockouts.unlock("device:Local/2001@fsp-phones")
    here = driver.mark()
    sup = await supervisor_dials(driver, "2001", "*2221001")
    await answer(driver, sup, "agent-pass", "1234", since=here)
    await driver.wait_for(is_event("ChanSpyStart", SpyerChannel=sup.line), since=here,
                          what="ChanSpyStart after unlock")


@pytest_twisted.ensureDeferred
async def test_unknown_phone_types_supervisor_number_then_pin(
        driver: Driver, site: SpyService) -> None:
    """From a phone not in the directory, the supervisor number is asked first, then the PIN."""
    await agent_call(driver, "1003")
    mark = driver.mark()
    sup = await supervisor_dials(driver, "2999", "*2221003")
    await answer(driver, sup, "agent-user", "2009", since=mark)
    await answer(driver, sup, "agent-pass", "4321", since=mark)
    start = await driver.wait_for(is_event("ChanSpyStart", SpyerChannel=sup.line), since=mark,
                                  what="ChanSpyStart")
    assert (start.get("SpyeeChannel") or "").startswith("Local/1003@fsp-agents-")
    record = await last_record(site)
    assert record.supervisor == "2009" and record.auth_result == "ok"


# -- targeting -----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_agent_10_never_attaches_to_agent_100(driver: Driver, site: SpyService) -> None:
    """Both on calls: spying on 10 attaches to 10's exact leg, never to 100's."""
    ten = await agent_call(driver, "10")
    hundred = await agent_call(driver, "100")
    mark = driver.mark()
    sup = await supervisor_dials(driver, "2001", "*22210")
    await answer(driver, sup, "agent-pass", "1234", since=mark)
    start = await driver.wait_for(is_event("ChanSpyStart", SpyerChannel=sup.line), since=mark,
                                  what="ChanSpyStart")
    assert start.get("SpyeeChannel") == ten.agent_leg
    await sleep(1.0)
    spyees = {e.get("SpyeeChannel") for e in driver.seen(is_event("ChanSpyStart"), since=mark)}
    assert hundred.agent_leg not in spyees
    record = await last_record(site)
    assert record.agent == "10" and record.resolved_channel == ten.agent_leg


@pytest.mark.parametrize("agent, reason", [("1003", "team"), ("1004", "never_spy")])
@pytest_twisted.ensureDeferred
async def test_other_team_or_never_spy_is_refused_with_a_prompt_and_no_spy(
        driver: Driver, site: SpyService, agent: str, reason: str) -> None:
    """Refused with "feature not available", no ChanSpyStart, and the audit says why."""
    await agent_call(driver, agent)
    mark = driver.mark()
    sup = await supervisor_dials(driver, "2001", f"*222{agent}")
    await answer(driver, sup, "agent-pass", "1234", since=mark)
    await heard_prompt(driver, sup, "feature-not-avail-line", since=mark)
    # ... and is offered the target prompt again, rather than silence.
    await driver.wait_for(is_prompt(sup, "GET DATA", "agent-newlocation"), since=mark,
                          what="target prompt again")
    assert not driver.seen(is_event("ChanSpyStart"), since=mark)
    await driver.hangup(sup.line)
    records = await closed_records(site, 2)
    denied = [r for r in records if r.end_reason == "denied"]
    assert denied and denied[0].detail == reason and denied[0].agent == agent


@pytest_twisted.ensureDeferred
async def test_mode_not_granted_is_refused(driver: Driver, site: SpyService) -> None:
    """A listen-only supervisor dialling *224 (barge) is refused; no spy starts."""
    await agent_call(driver, "1002")
    mark = driver.mark()
    sup = await supervisor_dials(driver, "2002", "*2241002")
    await answer(driver, sup, "agent-pass", "5678", since=mark)
    await heard_prompt(driver, sup, "feature-not-avail-line", since=mark)
    assert not driver.seen(is_event("ChanSpyStart"), since=mark)


@pytest_twisted.ensureDeferred
async def test_target_by_prompt_not_found_then_another(driver: Driver, site: SpyService) -> None:
    """*222 alone: asked for a target; an unknown one says so and asks again; then it spies."""
    await agent_call(driver, "1002")
    mark = driver.mark()
    sup = await supervisor_dials(driver, "2001", "*222")
    await answer(driver, sup, "agent-pass", "1234", since=mark)
    await answer(driver, sup, "agent-newlocation", "4242", since=mark)
    await heard_prompt(driver, sup, "pbx-invalid", since=mark)
    here = driver.mark()
    await answer(driver, sup, "agent-newlocation", "1002", since=here)
    await driver.wait_for(is_event("ChanSpyStart", SpyerChannel=sup.line), since=here,
                          what="ChanSpyStart")


@pytest_twisted.ensureDeferred
async def test_hostile_targets_are_refused(driver: Driver, site: SpyService) -> None:
    """'1001,B' / '1001)' in the AGI args, '10*01' typed, '*2221001B' dialled: all refused."""
    await agent_call(driver, "1001")
    mark = driver.mark()
    for raw in ("1001|B", "1001)"):  # "|": two AGI arguments, as a smuggled comma gives
        sup = await supervisor_dials(driver, "2001", "raw", raw_args=raw)
        await heard_prompt(driver, sup, "privacy-incorrect", since=mark)
        await driver.wait_for(is_event("Hangup", Channel=sup.line), since=mark, what="hangup")
    sup = await supervisor_dials(driver, "2001", "*222")
    await answer(driver, sup, "agent-pass", "1234", since=mark)
    here = driver.mark()
    await answer(driver, sup, "agent-newlocation", "10*01", since=here)
    await heard_prompt(driver, sup, "privacy-incorrect", since=here)
    await driver.hangup(sup.line)
    # Dialled with a letter: the bundle refuses before any AGI.
    here = driver.mark()
    sup = await supervisor_dials(driver, "2001", "*2221001B")
    await driver.wait_for(lambda m: m.event == "Newexten" and m.get("Channel") == sup.line
                          and m.get("AppData") == "privacy-incorrect", since=here,
                          what="bundle refusal")
    assert not driver.seen(is_event("ChanSpyStart"), since=mark)
    assert not driver.seen(lambda m: m.event == "AGIExecStart" and m.get("Channel") == sup.line,
                           since=here)


# -- hangups ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["pin", "target", "spy"])
@pytest_twisted.ensureDeferred
async def test_supervisor_hangup_at_each_stage_is_clean_and_audited(
        driver: Driver, site: SpyService, stage: str,
        log_events: list[dict[str, object]]) -> None:
    """Hang up at the PIN prompt, the target prompt or during the spy: no traceback, the
    session is freed and the audit record is closed with the right reason."""
    await agent_call(driver, "1001")
    mark = driver.mark()
    sup = await supervisor_dials(driver, "2001", "*222" if stage == "target" else "*2221001")
    if stage == "pin":
        await driver.wait_for(is_prompt(sup, "GET DATA", "agent-pass"), since=mark)
    else:
        await answer(driver, sup, "agent-pass", "1234", since=mark)
        if stage == "target":
            await driver.wait_for(is_prompt(sup, "GET DATA", "agent-newlocation"), since=mark)
        else:
            await driver.wait_for(is_event("ChanSpyStart", SpyerChannel=sup.line), since=mark)
    await driver.hangup(sup.line)
    record = (await closed_records(site, 1))[0]
    expected = {"pin": ("abandoned", "hung up at pin prompt"),
                "target": ("abandoned", "hung up at target prompt"),
                "spy": ("supervisor_hangup", None)}[stage]
    assert (record.end_reason, record.detail) == expected
    if stage == "spy":
        assert record.spy_started_at is not None and record.spy_stopped_at is not None
    for _ in range(30):
        if not site.agi.sessions:
            break
        await sleep(0.1)
    assert site.agi.sessions == set()
    assert failures(log_events) == []


@pytest_twisted.ensureDeferred
async def test_agent_hangup_returns_the_supervisor_to_the_target_prompt(
        driver: Driver, site: SpyService) -> None:
    """The monitored call ends: ChanSpyStop, the record closes as agent_hangup, and the
    supervisor is asked for the next agent instead of being hung up on."""
    call = await agent_call(driver, "1001")
    mark = driver.mark()
    sup = await supervisor_dials(driver, "2001", "*2221001")
    await answer(driver, sup, "agent-pass", "1234", since=mark)
    await driver.wait_for(is_event("ChanSpyStart", SpyerChannel=sup.line), since=mark)
    await sleep(1.0)
    here = driver.mark()
    await driver.hangup(call.customer_handset)
    await driver.wait_for(is_event("ChanSpyStop", SpyerChannel=sup.line), since=here)
    await driver.wait_for(is_prompt(sup, "GET DATA", "agent-newlocation"), since=here,
                          what="target prompt after the agent hung up")
    records = site.stores.audit.list(limit=2)
    spied = [r for r in records if r.end_reason == "agent_hangup"]
    assert spied and spied[0].spy_started_at and spied[0].spy_stopped_at
    assert spied[0].spy_stopped_at >= spied[0].spy_started_at


# -- failures ---------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_server_down_caller_hears_an_error_and_no_spy(
        driver: Driver, sandbox: AsteriskSandbox) -> None:
    """Nothing listens on the AGI port: the bundle plays its error and hangs up; no ChanSpy."""
    await agent_call(driver, "1001")
    mark = driver.mark()
    sup = await supervisor_dials(driver, "2001", "*2221001")
    await driver.wait_for(lambda m: m.event == "Newexten" and m.get("Channel") == sup.line
                          and "all-circuits-busy-now" in (m.get("AppData") or ""), since=mark,
                          what="the bundle's error prompt")
    await driver.wait_for(is_event("Hangup", Channel=sup.line), since=mark)
    assert not driver.seen(is_event("ChanSpyStart"), since=mark)
    assert not driver.seen(lambda m: m.event == "Newexten" and m.get("Application") == "ChanSpy",
                           since=mark)


@pytest_twisted.ensureDeferred
async def test_ami_down_means_service_unavailable_not_a_guess(
        driver: Driver, site: SpyService) -> None:
    """With our AMI link down the map is stale: the supervisor hears 'all circuits busy'."""
    await agent_call(driver, "1001")
    await site.clients["sandbox"].stop()
    await hears_service_unavailable(driver)
    assert (await closed_records(site, 1))[0].end_reason == "service_unavailable"
