"""With a ThreadRunner (PostgreSQL), the store users outside the feature-code flow make no
database call on the reactor thread: sign-ins and VICIdial API passwords, the unexplained
ChanSpy check, /readyz, /metrics, blind_monitor and the Live Monitor buttons, a refused AGI
call's audit row. Real SQLite whose every statement notes the thread it ran on, the real
reactor, the real twisted.web Site."""

from __future__ import annotations

import json
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Site

from fastagi_spy import service as service_module
from fastagi_spy.config import load, parse
from fastagi_spy.service import SpyService
from fastagi_spy.store import audit_query
from fastagi_spy.store.audit import AuditLog, EndReason, Via
from fastagi_spy.store.database import Database
from fastagi_spy.store.runner import ThreadRunner
from fastagi_spy.store.tokens import TokenStore
from fastagi_spy.supervise.launch import MonitorLauncher, Stage
from fastagi_spy.supervise.passwords import LoginVerdict
from fastagi_spy.supervise.reconcile import Reconciler
from fastagi_spy.supervise.unexplained import UnexplainedSpies
from fastagi_spy.web import health
from fastagi_spy.web.audit_view import AuditCsv, AuditView
from fastagi_spy.wire.agi import AGIEnvironment
from tests.store_threads import REACTOR_THREAD, Threads, note_threads, until
from tests.unit import (
    test_launch,
    test_spy_lifetime,
    test_web_actions,
    test_web_audit_view,
    test_web_settings,
)
from tests.unit.people import people
from tests.unit.test_unexplained import SERVER, chanspy
from tests.unit.web_http import CSRF, FakeGate, Reply, _unchunk, page


@pytest.fixture
def threads(monkeypatch: pytest.MonkeyPatch) -> Threads:
    return note_threads(monkeypatch, Database)


async def http_later(root: Resource, method: str, path: str, body: str = "",
                     headers: dict[str, str] | None = None) -> Reply:
    """web_http.http for a resource that answers later: waits for the reply's end."""
    site = Site(root, reactor=reactor)
    peer = IPv4Address("TCP", "127.0.0.2", 40000)
    proto = site.buildProtocol(peer)
    assert proto is not None
    transport = StringTransport(peerAddress=peer)
    proto.makeConnection(transport)
    lines = [f"{method} {path} HTTP/1.1", "Host: x", "Connection: close",
             f"Content-Length: {len(body.encode())}"]
    if body:
        lines.append("Content-Type: application/x-www-form-urlencoded")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    proto.dataReceived(("\r\n".join(lines) + "\r\n\r\n" + body).encode())
    await until(lambda: transport.disconnecting)  # Connection: close: closed once answered
    raw = transport.value().decode(errors="replace")
    proto.connectionLost(Failure(ConnectionDone()))
    head, _, rest = raw.partition("\r\n\r\n")
    status_line, *header_lines = head.split("\r\n")
    found = {k.lower(): v for k, _, v in (h.partition(": ") for h in header_lines)}
    if found.get("transfer-encoding") == "chunked":
        rest = _unchunk(rest)
    return Reply(int(status_line.split(" ")[1]), found, rest)


# -- sign-ins and VICIdial API passwords ------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_a_password_login_reads_and_writes_the_store_off_the_reactor(
        threads: Threads, runner: ThreadRunner) -> None:
    site = people({"9001": "right-password"})
    site.checker.runner = runner
    threads.seen.clear()
    ok = await site.checker.login("9001", "right-password", "127.0.0.1")
    bad = await site.checker.login("9001", "wrong-password", "127.0.0.1")
    assert (ok.verdict, bad.verdict) == (LoginVerdict.OK, LoginVerdict.BAD)
    assert threads.off_reactor() and threads.on_reactor() == []


# -- the unexplained ChanSpy check ------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_an_unexplained_spy_is_checked_and_recorded_off_the_reactor_in_order(
        tmp_path: Path, threads: Threads, runner: ThreadRunner) -> None:
    """Start and stop handed in back to back (as one AMI read delivers them): the stop still
    closes the row the start opens, and no statement runs on the reactor."""
    db = Database(tmp_path / "audit.sqlite3")
    audit = AuditLog(db)

    def explains(server: str, spyer: str, spyee: str, at: float, notice: bool) -> bool:
        return audit_query.explains_spy(db, server, spyer, spyee, at, notice=notice)

    spies = UnexplainedSpies(audit, explains, lambda s, u: "1001", lambda: 0.0, runner=runner)
    threads.seen.clear()
    spyer = "PJSIP/2001-00000003"
    spies.feed(SERVER, chanspy("ChanSpyStart", spyer, at=100.0))
    spies.feed(SERVER, chanspy("ChanSpyStop", spyer, at=142.5))
    assert threads.seen == []  # nothing yet: it all waits for the store thread
    await until(lambda: not runner._pending)  # the store thread has done both in turn
    assert threads.off_reactor() and threads.on_reactor() == []
    (row,) = audit.list()
    assert (row.via, row.agent, row.spy_started_at, row.spy_stopped_at, row.end_reason) == (
        "unexplained", "1001", 100.0, 142.5, "completed")
    db.close()


# -- /readyz and /metrics ---------------------------------------------------------------------

HEALTH_CONFIG = """
[server]
pin_pepper = "unit-test-pepper-0123456789"
database = "spy.sqlite3"

[[asterisk]]
name = "a"
ami_host = "10.0.0.5"
ami_username = "u"
ami_secret = "topsecret-ami"

[[agents]]
number = "1001"
team = "sales"
devices = ["PJSIP/1001"]
"""


class LoggedIn:
    connected = True


@pytest.fixture
def threaded_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                     runner: ThreadRunner) -> Iterator[SpyService]:
    """The service on SQLite, but with a ThreadRunner as it would have on PostgreSQL."""
    monkeypatch.setattr(service_module, "runner_for",
                        lambda db, reactor, parent=None: runner)
    path = tmp_path / "spy.toml"
    path.write_text(HEALTH_CONFIG)
    spy = SpyService(load(path), reactor)
    spy.clients["a"].protocol = LoggedIn()  # type: ignore[assignment]
    spy.live_map.resync("a", [], [], 1.0, [])
    yield spy
    spy.stores.db.close()


@pytest_twisted.ensureDeferred
async def test_readyz_probes_the_store_off_the_reactor(
        threaded_service: SpyService, threads: Threads) -> None:
    threads.seen.clear()
    reply = await http_later(threaded_service.site.resource, "GET", "/readyz")
    assert (reply.status, reply.body) == (200, "ready\n")
    assert threads.off_reactor() and threads.on_reactor() == []


@pytest_twisted.ensureDeferred
async def test_readyz_says_store_unreachable_when_the_probe_fails_on_the_store_thread(
        threaded_service: SpyService, threads: Threads) -> None:
    threaded_service.stores.db.close()
    reply = await http_later(threaded_service.site.resource, "GET", "/readyz")
    assert (reply.status, reply.body) == (503, "store: unreachable\n")


@pytest_twisted.ensureDeferred
async def test_readyz_says_store_unreachable_when_the_store_thread_is_stuck(
        threaded_service: SpyService, runner: ThreadRunner,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A hung PostgreSQL holds the store thread: /readyz answers 503 within its bound."""
    monkeypatch.setattr(health.store_problem_later, "__defaults__", (0.2,))
    release = threading.Event()
    runner.submit(release.wait, 10)
    try:
        reply = await http_later(threaded_service.site.resource, "GET", "/readyz")
    finally:
        release.set()
    assert (reply.status, reply.body) == (503, "store: unreachable\n")


@pytest_twisted.ensureDeferred
async def test_metrics_read_the_audit_totals_off_the_reactor(
        threaded_service: SpyService, threads: Threads) -> None:
    audit = threaded_service.stores.audit
    audit.close(audit.open(10.0, "phone"), 11.0, EndReason.COMPLETED)
    threads.seen.clear()
    reply = await http_later(threaded_service.site.resource, "GET", "/metrics")
    assert reply.status == 200
    assert 'fastagi_spy_attempts_total{outcome="completed"} 1.0' in reply.body
    assert threads.off_reactor() and threads.on_reactor() == []


@pytest_twisted.ensureDeferred
async def test_a_refused_agi_call_is_recorded_off_the_reactor(
        threaded_service: SpyService, threads: Threads, runner: ThreadRunner) -> None:
    threads.seen.clear()
    env = AGIEnvironment((("agi_channel", "PJSIP/2001-00000001"),
                          ("agi_uniqueid", "1700000000.1")))
    threaded_service.audit_refused_call(env, "names server b")
    await until(lambda: not runner._pending)
    assert threads.off_reactor() and threads.on_reactor() == []
    (row,) = threaded_service.stores.audit.list()
    assert (row.end_reason, row.detail) == ("denied", "agi server: names server b")


# -- blind_monitor and the Live Monitor buttons -----------------------------------------------

@dataclass
class Rang:
    sent: list[object]

    async def originate(self, server: str, headers: list[tuple[str, str]]) -> object:
        assert threading.get_ident() == REACTOR_THREAD  # AMI stays on the reactor
        self.sent.append(headers)
        return None


@pytest_twisted.ensureDeferred
async def test_blind_monitor_writes_its_row_and_token_off_the_reactor(
        tmp_path: Path, threads: Threads, runner: ThreadRunner) -> None:
    db = Database(tmp_path / "launch.sqlite3")
    live = test_launch.Map()
    live.answers[("8600051", "pbx1")] = test_launch.Found("ok", "1001", "8600051")
    rang = Rang([])
    servers = parse(tomllib.loads(test_launch.CONFIG)).asterisk
    launcher = MonitorLauncher(test_launch.DIRECTORY, [test_launch.PHONE], servers, live,
                               TokenStore(db), AuditLog(db), rang.originate,
                               lambda: test_launch.T0, runner=runner)
    threads.seen.clear()
    launched = await launcher.launch(test_launch.BOSS, test_launch.PHONE, "pbx1", "8600051",
                                     Stage.MONITOR, "test")
    assert rang.sent
    assert threads.off_reactor() and threads.on_reactor() == []
    (row,) = AuditLog(db).list()
    assert (str(row.id), row.end_reason) == (launched.man_id, "completed")
    db.close()


@pytest_twisted.ensureDeferred
async def test_a_live_monitor_button_and_its_status_use_the_store_off_the_reactor(
        tmp_path: Path, threads: Threads, runner: ThreadRunner) -> None:
    db = Database(tmp_path / "actions.sqlite3")
    site = test_web_actions.Site(db)
    spy = site.root.children[b"spy"]
    spy.runner = runner
    spy.launcher._runner = runner
    site.map.on_call.add("1001")
    threads.seen.clear()
    reply = await http_later(site.root, "POST", "/spy", "agent=1001&mode=listen",
                             {"X-CSRF-Token": CSRF})
    assert reply.status == 202, reply.body
    launch = json.loads(reply.body)["id"]
    status = await http_later(site.root, "GET", f"/spy/{launch}")
    assert (status.status, json.loads(status.body)["state"]) == (200, "ringing")
    buttons = await http_later(site.root, "GET", "/spy")
    assert json.loads(buttons.body) == {"modes": ["listen", "whisper", "barge"]}
    assert threads.off_reactor() and threads.on_reactor() == []
    db.close()


# -- shutdown ---------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_shutdown_claims_and_closes_the_spys_record_off_the_reactor(
        tmp_path: Path, threads: Threads, runner: ThreadRunner) -> None:
    db = Database(tmp_path / "audit.sqlite3")
    audit = AuditLog(db)
    ami = test_spy_lifetime.FakeAMI()
    site = test_spy_lifetime.Site(audit, {"pbx1": ami})
    site.shutdown._runner = runner
    record = site.spying()
    ami.on_hangup = lambda channel: site.feed("pbx1", test_spy_lifetime.spy_stop(
        channel=channel, at=test_spy_lifetime.T0 + 7.25))
    threads.seen.clear()
    await site.shutdown.stop_all()
    assert ami.hangups() == [test_spy_lifetime.SPYER]
    assert threads.off_reactor() and threads.on_reactor() == []
    row = audit.get(record)
    assert row is not None and row.end_reason == EndReason.SERVER_SHUTDOWN
    assert row.spy_stopped_at == row.ended_at == test_spy_lifetime.T0 + 7.25
    db.close()


# -- the audit page and its CSV ---------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_the_audit_page_and_csv_read_the_store_off_the_reactor(
        tmp_path: Path, threads: Threads, runner: ThreadRunner) -> None:
    db = Database(tmp_path / "audit.sqlite3")
    audit = AuditLog(db)
    test_web_audit_view.spy(audit, Via.PHONE, "1001", test_web_audit_view.T0,
                            EndReason.SUPERVISOR_HANGUP)
    gate = FakeGate(test_web_audit_view.EVERYONE)
    top = Resource()
    top.putChild(b"audit", AuditView(gate, db, test_web_audit_view.DIRECTORY, page,
                                     runner=runner))
    top.putChild(b"audit.csv", AuditCsv(gate, db, test_web_audit_view.DIRECTORY,
                                        runner=runner))
    threads.seen.clear()
    shown = await http_later(top, "GET", "/audit?agent=1001")
    exported = await http_later(top, "GET", "/audit.csv")
    wrong = await http_later(top, "GET", "/audit.csv?since=yesterday")
    assert shown.status == 200 and "supervisor_hangup" in shown.body
    assert exported.status == 200 and exported.body.count("\n") == 2  # header and one row
    assert wrong.status == 400  # the filter's error, before any store call
    assert threads.off_reactor() and threads.on_reactor() == []
    db.close()


# -- the settings page ------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_the_settings_page_reads_and_saves_off_the_reactor(
        tmp_path: Path, threads: Threads, runner: ThreadRunner) -> None:
    db = Database(tmp_path / "settings.sqlite3")
    site = test_web_settings.Site(db)
    settings = site.root.children[b"settings"]
    settings.runner = runner
    threads.seen.clear()
    form = await http_later(site.root, "GET", "/settings")
    saved = await http_later(site.root, "POST", "/settings",
                             "pbx1.ami_host=127.0.0.9&code_listen=*333", {"X-CSRF-Token": CSRF})
    links = await http_later(site.root, "GET", "/settings/status")
    assert form.status == 200 and 'name="pbx1.ami_host" value="127.0.0.1"' in form.body
    assert saved.status == 200, saved.body
    assert (links.status, json.loads(links.body)) == (200, {"pbx1": True})
    assert threads.off_reactor() and threads.on_reactor() == []
    assert site.applied == ["pbx1"]  # the reconnect itself stays on the reactor
    assert site.ami().host == "127.0.0.9"
    db.close()


# -- start-up reconciliation ------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_reconciliation_closes_left_open_records_off_the_reactor(
        tmp_path: Path, threads: Threads, runner: ThreadRunner) -> None:
    """One left-open spy still running (hung up, closed with ChanSpyStop's time) and one gone
    (closed uncertain once every server is checked): both closes on the store thread."""
    lt = test_spy_lifetime
    db = Database(tmp_path / "audit.sqlite3")
    audit = AuditLog(db)
    running = lt.left_open(audit, lt.UID, lt.SPYER)
    gone = lt.left_open(audit, "1700000000.20", "PJSIP/2001-00000004")
    ami = lt.FakeAMI(alive=[(lt.SPYER, lt.UID)])
    site = lt.Site(audit, {"pbx1": ami})
    reconciler = Reconciler(audit, site.running, ("pbx1",), site.clock, site.clock.seconds,
                            runner=runner)
    assert reconciler.begin() == 2  # start-up, before anything is served: inline
    ami.on_hangup = lambda channel: site.feed("pbx1", lt.spy_stop(at=lt.T0 + 99))
    threads.seen.clear()
    await reconciler.server_up("pbx1", ami)
    assert ami.hangups() == [lt.SPYER]
    assert threads.off_reactor() and threads.on_reactor() == []
    assert (lt.get(audit, running).end_reason, lt.get(audit, running).ended_at) == (
        EndReason.INTERRUPTED, lt.T0 + 99)
    assert lt.get(audit, gone).end_reason == EndReason.INTERRUPTED
    assert lt.get(audit, gone).times_uncertain
    db.close()
