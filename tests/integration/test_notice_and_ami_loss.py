"""A required notice on the real Asterisk, and AMI lost just as ChanSpy starts.

notice_mode = "required": the agent's side hears the whole notice before any of the
supervisor's audio (proven on the agent's recording), and a notice Asterisk cannot play
means no ChanSpy at all and a row closed notice_failed. AMI cut by a loopback relay the
moment ChanSpyStart goes by: the row is still the spy's (start from EXEC ChanSpy, stop from
Asterisk's ChanSpyStop after the resync), marked uncertain, never "denied".
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IListeningPort
from twisted.protocols import portforward

from fastagi_spy.config import load
from fastagi_spy.sandbox import AsteriskSandbox, write_tone
from fastagi_spy.service import SpyService, make_service
from tests.integration.audio import tone_shares
from tests.integration.conftest import check_backend
from tests.integration.driver import Driver, is_event, sleep, tag
from tests.integration.site import (
    TONE,
    agent_call,
    answer,
    closed_records,
    heard_prompt,
    is_prompt,
    set_pins,
    site_config,
    supervisor_dials,
    wait_ready,
)

# Every test that takes `site` (or `store`) runs on SQLite and on the real PostgreSQL.
pytestmark = pytest.mark.both_stores

NOTICE_HZ = 1400
NOTICE = "custom/fsp-notice-1400"  # 1.5 s of 1400 Hz, written by the test


async def running(service: SpyService) -> SpyService:
    set_pins(service)
    service.startService()
    await wait_ready(service)
    return service


async def recording(sandbox: AsteriskSandbox, name: str) -> Path:
    path = sandbox.host_path(name)
    for _ in range(50):
        if path.exists() and path.stat().st_size > 8000:
            break
        await sleep(0.1)
    return Path(path)


def first_window(path: Path, hz: int) -> int | None:
    """The first 100 ms window in which ``hz`` carries a tenth of the energy, or None."""
    return next((i for i, share in enumerate(tone_shares(path, hz)) if share >= 0.1), None)


@pytest_twisted.ensureDeferred
async def test_required_notice_reaches_the_agent_before_any_whisper(
        driver: Driver, sandbox: AsteriskSandbox, tmp_path: Path, store: str) -> None:
    write_tone(sandbox.host_path("/usr/local/share/asterisk/sounds/fsp-notice-1400.wav"),
               NOTICE_HZ, seconds=1.5)
    service = await running(make_service(
        site_config(sandbox, tmp_path, notice=NOTICE, notice_mode="required", store=store),
        reactor))
    check_backend(service, store)
    try:
        rec = f"{sandbox.recordings}/{tag('required')}"
        await agent_call(driver, "1001", rec=rec)
        mark = driver.mark()
        sup = await supervisor_dials(driver, "2001", "*2231001", rec=rec)  # whisper
        await answer(driver, sup, "agent-pass", "1234", since=mark)
        await driver.wait_for(is_event("ChanSpyStart", SpyerChannel=sup.line), since=mark,
                              timeout=20, what="the supervisor's ChanSpyStart")
        await sleep(2.5)
        await driver.hangup_all()
        await sleep(1.0)
        agent_hears = await recording(sandbox, f"{rec}-agent-hears.wav")
        notice_at = first_window(agent_hears, NOTICE_HZ)
        whisper_at = first_window(agent_hears, TONE["supervisor"])
        assert notice_at is not None and whisper_at is not None, (notice_at, whisper_at)
        assert notice_at < whisper_at
        # The notice's own ChanSpy stopped before the supervisor's started.
        stops = [e for e in driver.seen(is_event("ChanSpyStop"), since=mark)
                 if (e.get("SpyerChannel") or "").startswith("Local/notice@fastagi-spy-notice")]
        starts = driver.seen(is_event("ChanSpyStart", SpyerChannel=sup.line), since=mark)
        assert stops and starts
        records = [r for r in service.stores.audit.list(limit=5) if r.spy_started_at]
        events = service.stores.audit.events(records[0].id)
        assert ("notice", "played") in [(e.kind, e.detail) for e in events]
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_an_unplayable_required_notice_means_no_chanspy_and_notice_failed(
        driver: Driver, sandbox: AsteriskSandbox, tmp_path: Path, store: str) -> None:
    service = await running(make_service(
        site_config(sandbox, tmp_path, notice="custom/fsp-no-such-sound",
                    notice_mode="required", store=store), reactor))
    check_backend(service, store)
    try:
        await agent_call(driver, "1001")
        mark = driver.mark()
        sup = await supervisor_dials(driver, "2001", "*2221001")
        await answer(driver, sup, "agent-pass", "1234", since=mark)
        await heard_prompt(driver, sup, "all-circuits-busy-now", since=mark, timeout=20)
        await driver.wait_for(is_event("Hangup", Channel=sup.line), since=mark)
        assert not driver.seen(is_event("ChanSpyStart", SpyerChannel=sup.line), since=mark)
        (record,) = await closed_records(service, 1)
        assert (record.end_reason, record.agent, record.spy_started_at) == (
            "notice_failed", "1001", None)
        assert record.detail == "playback FAILED"
    finally:
        await service.stopService()


# --- AMI lost just as ChanSpy starts ----------------------------------------------------------


class _Cutter(portforward.ProxyClient):
    """Asterisk's side of the relay: forwards whole lines, and when armed cuts both links
    just before an ``Event: ChanSpyStart`` line, which so never reaches our server."""

    relay: AMIRelay
    pending = b""

    def dataReceived(self, data: bytes) -> None:
        self.pending += data
        complete, _, self.pending = self.pending.rpartition(b"\r\n")
        if not complete and not _:
            return
        text = complete + b"\r\n"
        at = text.find(b"Event: ChanSpyStart\r\n")
        if self.relay.armed and at >= 0:
            self.relay.armed = False
            self.relay.cuts += 1
            assert self.peer is not None
            self.peer.transport.write(text[:at])
            self.peer.transport.abortConnection()  # type: ignore[attr-defined]
            self.transport.abortConnection()  # type: ignore[attr-defined]
            return
        assert self.peer is not None
        self.peer.transport.write(text)


class AMIRelay:
    """127.0.0.1:<port> -> the sandbox's AMI, with one cut on demand."""

    def __init__(self, upstream: int) -> None:
        self.armed = False
        self.cuts = 0
        relay = self

        class Cutter(_Cutter):
            pass

        Cutter.relay = relay

        class Client(portforward.ProxyClientFactory):
            protocol = Cutter

        class Server(portforward.ProxyServer):
            clientProtocolFactory = Client

        self.factory = portforward.ProxyFactory("127.0.0.1", upstream)
        self.factory.protocol = Server
        self.port: IListeningPort | None = None

    async def start(self) -> int:
        self.port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            self.factory)
        return int(self.port.getHost().port)


@pytest_twisted.async_yield_fixture()
async def relayed_site(sandbox: AsteriskSandbox, tmp_path: Path, store: str
                       ) -> AsyncIterator[tuple[SpyService, AMIRelay]]:
    relay = AMIRelay(sandbox.ami_port)
    port = await relay.start()
    path = Path(site_config(sandbox, tmp_path, store=store).source)
    path.write_text(path.read_text().replace(f"ami_port = {sandbox.ami_port}",
                                             f"ami_port = {port}", 1))
    service = await running(make_service(load(path), reactor))
    check_backend(service, store)
    yield service, relay
    await service.stopService()
    assert relay.port is not None
    await relay.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_ami_lost_as_chanspy_starts_keeps_the_spy_on_record_never_denied(
        driver: Driver, relayed_site: tuple[SpyService, AMIRelay]) -> None:
    site, relay = relayed_site
    call = await agent_call(driver, "1001")
    resyncs = site.syncs["sandbox"].resyncs
    mark = driver.mark()
    sup = await supervisor_dials(driver, "2001", "*2221001")
    relay.armed = True
    await answer(driver, sup, "agent-pass", "1234", since=mark)
    await driver.wait_for(is_event("ChanSpyStart", SpyerChannel=sup.line), since=mark)
    for _ in range(150):  # our AMI link is back and resynced (the spy still running)
        if site.syncs["sandbox"].resyncs > resyncs:
            break
        await sleep(0.1)
    assert relay.cuts == 1 and site.syncs["sandbox"].resyncs > resyncs
    here = driver.mark()
    await driver.hangup(call.customer_handset)
    await driver.wait_for(is_event("ChanSpyStop", SpyerChannel=sup.line), since=here)
    await driver.wait_for(is_prompt(sup, "GET DATA", "agent-newlocation"), since=here,
                          what="target prompt after the agent hung up")
    assert not driver.seen(is_prompt(sup, "STREAM FILE", "feature-not-avail-line"), since=mark)
    await driver.hangup(sup.line)
    spied = [r for r in await closed_records(site, 2) if r.agent == "1001"]
    assert spied, "no record of the spy"
    record = spied[0]
    assert record.end_reason == "agent_hangup"
    assert record.spy_started_at is not None and record.spy_stopped_at is not None
    assert record.spy_stopped_at >= record.spy_started_at
    assert record.times_uncertain == 1
