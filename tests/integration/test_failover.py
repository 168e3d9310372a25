"""Two instances, one bundle: the dialplan's fail-over on the real Asterisk 22.

Two services (A and B), each on its own FastAGI and HTTP port, share one PostgreSQL database
and one sandbox Asterisk, whose bundle lists both in FASTAGI_SPY_SERVERS (set as a global over AMI,
as an admin sets it in [globals]). A supervisor is served by A; with A stopped, by B, which
counts A's wrong PIN towards the lockout; with both stopped, the bundle's own fail-closed
prompt. A server that began a call and then failed is never followed by a second one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import reactor

from fastagi_spy.net.fastagi import AGISession
from fastagi_spy.sandbox import AsteriskSandbox, free_port
from fastagi_spy.service import SpyService, make_service
from fastagi_spy.store.audit import AuditRecord
from fastagi_spy.store.postgres import PostgresDatabase
from fastagi_spy.store.schema import migrate
from fastagi_spy.wire.ami import AMIMessage
from tests.integration.driver import Driver, is_event, sleep
from tests.integration.site import (
    Supervisor,
    agent_call,
    answer,
    heard_prompt,
    is_prompt,
    set_pins,
    site_config,
    supervisor_dials,
    wait_ready,
)

WRONG_PIN = "9999"


@dataclass
class Instance:
    """One running service and the FastAGI sessions its port began (by channel)."""

    service: SpyService
    port: int
    served: list[str] = field(default_factory=list)
    running: bool = True

    async def stop(self) -> None:
        if self.running:
            self.running = False
            await self.service.stopService()


def _counting(instance: Instance) -> None:
    """Wrap every route so the test knows which instance began which call."""
    def wrap(handler: Callable[[AGISession], Any]) -> Callable[[AGISession], Any]:
        async def counted(session: AGISession) -> Any:
            instance.served.append(session.env.channel)
            return await handler(session)
        return counted
    agi = instance.service.agi
    agi.routes = {path: wrap(handler) for path, handler in agi.routes.items()}


async def _start(sandbox: AsteriskSandbox, workdir: Path, url: str,
                 before_start: Callable[[SpyService], None] | None = None) -> Instance:
    workdir.mkdir()
    port = free_port()
    # lockout_failures = 2: one wrong PIN on A and one on B lock the phone only when B
    # sees A's failure in the shared database.
    config = site_config(sandbox, workdir, agi_port=port, store=f'url = "{url}"',
                         lockout_failures=2)
    service = make_service(config, reactor)
    set_pins(service)
    if before_start is not None:
        before_start(service)
    service.startService()
    instance = Instance(service, port)
    _counting(instance)
    await wait_ready(service)
    return instance


@pytest_twisted.async_yield_fixture()
async def pair(sandbox: AsteriskSandbox, driver: Driver, tmp_path: Path,
               postgres_url: str) -> AsyncIterator[tuple[Instance, Instance]]:
    # One PostgreSQL database for both, migrated first as an admin does (`fastagi-spy
    # migrate`): the service refuses an unmigrated PostgreSQL store.
    db = PostgresDatabase(postgres_url)
    try:
        migrate(db)
    finally:
        db.close()
    a = await _start(sandbox, tmp_path / "a", postgres_url)
    b = await _start(sandbox, tmp_path / "b", postgres_url)
    # A blank after the comma, as an admin may type it: the bundle drops it.
    await _set_servers(driver, f"127.0.0.1:{a.port}, 127.0.0.1:{b.port}")
    try:
        yield a, b
    finally:
        await _set_servers(driver, "")  # the other tests' bundle: FASTAGI_SPY_HOST/PORT
        await a.stop()
        await b.stop()


async def _set_servers(driver: Driver, servers: str) -> None:
    """Setvar without a channel sets a dialplan global, as [globals] does."""
    await driver.action("Setvar", [("Variable", "FASTAGI_SPY_SERVERS"), ("Value", servers)])


def _bundle_error(sup: Supervisor) -> Callable[[AMIMessage], bool]:
    """The bundle's own fail-closed branch on the supervisor's line: "all circuits busy"."""
    return lambda m: (m.event == "Newexten" and m.get("Channel") == sup.line
                      and m.get("Application") == "Playback"
                      and "all-circuits-busy-now" in (m.get("AppData") or ""))


async def _records_of(a: Instance, line: str, timeout: float = 10) -> list[AuditRecord]:
    """The closed audit records of the supervisor's line, read from the shared database."""
    for _ in range(int(timeout * 10)):
        records = [r for r in a.service.stores.audit.list(limit=50) if r.channel == line]
        if records and all(r.ended_at is not None for r in records):
            return records
        await sleep(0.1)
    raise AssertionError(f"no closed audit record for {line}")


def _instance_of(reader: Instance, record: AuditRecord) -> str | None:
    with reader.service.stores.db.transaction() as conn:
        row = conn.execute("SELECT instance FROM audit WHERE id = ?", (record.id,)).fetchone()
    return None if row is None else row[0]


async def _wrong_pin_then_hang_up(driver: Driver, mark: int) -> Supervisor:
    sup = await supervisor_dials(driver, "2001", "*2221001")
    await answer(driver, sup, "agent-pass", WRONG_PIN, since=mark)
    await heard_prompt(driver, sup, "vm-incorrect", since=mark)
    await driver.hangup(sup.line)
    await driver.wait_for(is_event("Hangup", Channel=sup.line), since=mark)
    return sup


@pytest_twisted.ensureDeferred
async def test_a_serves_then_b_serves_with_a_s_lockout_count_then_none_fails_closed(
        driver: Driver, pair: tuple[Instance, Instance]) -> None:
    a, b = pair
    await agent_call(driver, "1001")

    # 1. A is first in the list and up: A serves; a wrong PIN is counted.
    mark = driver.mark()
    first = await _wrong_pin_then_hang_up(driver, mark)
    assert a.served == [first.line] and b.served == []
    [on_a] = await _records_of(a, first.line)
    assert on_a.auth_result == "bad_pin"

    # 2. A stops (its port closes): the same dial is served by B. A second wrong PIN
    # reaches lockout_failures = 2 only with A's failure counted, so the right PIN typed
    # next on this call is refused as locked out: no spy.
    await a.stop()
    mark = driver.mark()
    second = await supervisor_dials(driver, "2001", "*2221001")
    await answer(driver, second, "agent-pass", WRONG_PIN, since=mark)
    await heard_prompt(driver, second, "vm-incorrect", since=mark)
    here = driver.mark()
    await answer(driver, second, "agent-pass", "1234", since=here)
    await heard_prompt(driver, second, "vm-incorrect", since=here)  # as a wrong PIN sounds
    await driver.hangup(second.line)
    await driver.wait_for(is_event("Hangup", Channel=second.line), since=mark)
    assert b.served == [second.line] and a.served == [first.line]
    assert not driver.seen(is_event("ChanSpyStart"), since=mark)
    [on_b] = await _records_of(b, second.line)
    assert on_b.auth_result == "locked_out"
    # The audit trail in the shared database holds both attempts, whoever served them,
    # each row naming the instance that opened it (what a restart reconciles by).
    lines = {r.channel for r in b.service.stores.audit.list(limit=50)}
    assert {first.line, second.line} <= lines
    assert _instance_of(b, on_a) == a.service.reconciler.instance
    assert _instance_of(b, on_b) == b.service.reconciler.instance != a.service.reconciler.instance

    # 3. Both stopped: the bundle plays its fail-closed prompt, never silence.
    await b.stop()
    mark = driver.mark()
    third = await supervisor_dials(driver, "2001", "*2221001")
    await driver.wait_for(_bundle_error(third), since=mark, what="the bundle's error prompt")
    await driver.wait_for(is_event("Hangup", Channel=third.line), since=mark)
    assert not driver.seen(lambda m: m.event == "AGIExecStart" and m.get("Channel") == third.line,
                           since=mark)
    assert not driver.seen(is_event("ChanSpyStart"), since=mark)


@pytest_twisted.ensureDeferred
async def test_no_fail_over_once_the_first_server_began_the_call(
        driver: Driver, pair: tuple[Instance, Instance]) -> None:
    """A begins the call (its session's first command marks the channel), answers, then drops
    the AGI mid-session: the caller hears the bundle's error, and B is never asked (which
    would prompt for the PIN a second time)."""
    a, b = pair

    async def breaks_mid_session(session: AGISession) -> None:
        a.served.append(session.env.channel)
        await session.answer()
        session.close()

    a.service.agi.routes["spy/listen"] = breaks_mid_session
    await agent_call(driver, "1001")
    mark = driver.mark()
    sup = await supervisor_dials(driver, "2001", "*2221001")
    await driver.wait_for(_bundle_error(sup), since=mark, what="the bundle's error prompt")
    await driver.wait_for(is_event("Hangup", Channel=sup.line), since=mark)
    assert a.served == [sup.line]
    assert b.served == []
    assert not driver.seen(is_prompt(sup, "GET DATA", "agent-pass"), since=mark)


@pytest_twisted.ensureDeferred
async def test_a_draining_server_hands_the_call_to_the_next(
        driver: Driver, pair: tuple[Instance, Instance]) -> None:
    """A server shutting down refuses new calls before any command: the next one serves."""
    a, b = pair
    a.service.agi.draining = True  # what stopService sets first, while calls drain
    await agent_call(driver, "1001")
    mark = driver.mark()
    sup = await supervisor_dials(driver, "2001", "*2221001")
    await answer(driver, sup, "agent-pass", "1234", since=mark)
    await driver.wait_for(is_event("ChanSpyStart", SpyerChannel=sup.line), since=mark)
    assert a.served == [] and b.served == [sup.line]


@pytest_twisted.ensureDeferred
async def test_a_spy_one_instance_started_is_explained_to_the_other(
        driver: Driver, pair: tuple[Instance, Instance]) -> None:
    """Both instances watch the same Asterisk: B sees the ChanSpy A started, and A's audit
    row in the shared database explains it, so B writes no "unexplained" row."""
    a, b = pair
    call = await agent_call(driver, "1001")
    mark = driver.mark()
    sup = await supervisor_dials(driver, "2001", "*2221001")
    await answer(driver, sup, "agent-pass", "1234", since=mark)
    spy = await driver.wait_for(is_event("ChanSpyStart", SpyerChannel=sup.line), since=mark)
    assert spy.get("SpyeeChannel") == call.agent_leg
    assert a.served == [sup.line] and b.served == []
    await sleep(1.0)  # B's AMI link has read the same ChanSpyStart by now
    await driver.hangup(sup.line)
    await driver.wait_for(is_event("ChanSpyStop", SpyerChannel=sup.line), since=mark)
    await sleep(0.5)
    rows = b.service.stores.audit.list(limit=50)
    assert [r.channel for r in rows if r.channel == sup.line and r.via == "phone"]
    assert not [r for r in rows if r.via == "unexplained"], rows


@pytest_twisted.ensureDeferred
async def test_a_spy_nobody_started_is_one_row_between_the_instances(
        driver: Driver, pair: tuple[Instance, Instance]) -> None:
    """A ChanSpy from another dialplan: both instances see it on AMI; the shared audit log
    gets one unexplained row, closed with Asterisk's stop time."""
    a, b = pair
    call = await agent_call(driver, "1001")
    mark = driver.mark()
    await driver.originate("Local/rogue-spy@fsp-tests/n", "fsp-handsets", "supervisor",
                           variables={"_FSP_SPY_ON": call.agent_leg})
    start = await driver.wait_for(is_event("ChanSpyStart", SpyeeChannel=call.agent_leg),
                                  since=mark, what="the rogue ChanSpyStart")
    spyer = start.get("SpyerChannel") or ""
    await sleep(1.0)
    await driver.hangup(spyer)
    stop = await driver.wait_for(is_event("ChanSpyStop", SpyerChannel=spyer), since=mark)
    for _ in range(50):
        found = [r for r in a.service.stores.audit.list(limit=50) if r.via == "unexplained"]
        if found and all(r.ended_at is not None for r in found):
            break
        await sleep(0.1)
    await sleep(0.5)  # the slower instance has read the same events by now
    found = [r for r in b.service.stores.audit.list(limit=50) if r.via == "unexplained"]
    assert [(r.channel, r.ended_at) for r in found] == [
        (spyer, float(stop.get("Timestamp") or ""))]


@pytest_twisted.ensureDeferred
async def test_stopping_one_instance_leaves_the_others_spies_running(
        driver: Driver, pair: tuple[Instance, Instance]) -> None:
    """B serves a spy (A is draining); A then stops and hangs up its own spies at shutdown:
    none of B's. B's spy runs on and its record stays open until the supervisor hangs up."""
    a, b = pair
    a.service.agi.draining = True
    await agent_call(driver, "1001")
    mark = driver.mark()
    sup = await supervisor_dials(driver, "2001", "*2221001")
    await answer(driver, sup, "agent-pass", "1234", since=mark)
    await driver.wait_for(is_event("ChanSpyStart", SpyerChannel=sup.line), since=mark)
    assert b.served == [sup.line]
    await a.stop()
    await sleep(1.5)
    assert not driver.seen(is_event("ChanSpyStop", SpyerChannel=sup.line), since=mark)
    [row] = [r for r in b.service.stores.audit.list(limit=50) if r.channel == sup.line]
    assert row.ended_at is None and row.spy_started_at is not None
    await driver.hangup(sup.line)
    await driver.wait_for(is_event("ChanSpyStop", SpyerChannel=sup.line), since=mark)
    [row] = await _records_of(b, sup.line)
    assert row.end_reason == "supervisor_hangup"


@pytest_twisted.ensureDeferred
async def test_a_third_instance_starting_leaves_a_live_spy_of_another_alone(
        driver: Driver, sandbox: AsteriskSandbox, tmp_path: Path, postgres_url: str,
        pair: tuple[Instance, Instance]) -> None:
    """A spies; instance C starts on the same database and reconciles the rows left open:
    A's open row is A's attempt in progress, not a crash's leftover, so C neither hangs
    A's spy up nor closes its row."""
    a, _b = pair
    await agent_call(driver, "1001")
    mark = driver.mark()
    sup = await supervisor_dials(driver, "2001", "*2221001")
    await answer(driver, sup, "agent-pass", "1234", since=mark)
    await driver.wait_for(is_event("ChanSpyStart", SpyerChannel=sup.line), since=mark)
    assert a.served == [sup.line]
    c = await _start(sandbox, tmp_path / "c", postgres_url)
    try:
        await sleep(2.0)  # C's AMI is up and its reconciliation has run
        assert c.service.reconciler.pending == 0
        assert not driver.seen(is_event("ChanSpyStop", SpyerChannel=sup.line), since=mark)
        [row] = [r for r in c.service.stores.audit.list(limit=50) if r.channel == sup.line]
        assert row.ended_at is None
    finally:
        await c.stop()
    await driver.hangup(sup.line)
    [row] = await _records_of(a, sup.line)
    assert row.end_reason == "supervisor_hangup"
