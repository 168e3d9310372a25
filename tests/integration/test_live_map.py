"""The live call-centre map over AMI, against the real Asterisk 22: /api/live, resync, servers."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import reactor, threads

from fastagi_spy.sandbox import AsteriskSandbox
from fastagi_spy.service import SpyService, make_service
from tests.integration.driver import Driver, sleep
from tests.integration.site import API_PASSWORD, API_USER, agent_call, site_config, wait_ready


def http_port(service: SpyService) -> int:
    return int(service.config.http_listen.split(":")[1])


async def get_live(service: SpyService, password: str = API_PASSWORD) -> tuple[int, Any]:
    """GET /api/live as an API client would, from a thread (the reactor keeps serving)."""
    token = base64.b64encode(f"{API_USER}:{password}".encode()).decode()
    request = urllib.request.Request(f"http://127.0.0.1:{http_port(service)}/api/live",
                                     headers={"Authorization": f"Basic {token}"})

    def fetch() -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as refused:
            return refused.code, refused.read()

    code, body = await threads.deferToThread(fetch)
    return code, json.loads(body)


def agent_of(snapshot: Any, number: str, server: str = "sandbox") -> dict[str, Any]:
    agents = snapshot["servers"][server]["agents"]
    return next(a for a in agents if a["number"] == number)


async def until(predicate: Any, timeout: float = 5.0) -> float:
    """Poll until predicate() is truthy; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if await predicate():
            return time.monotonic() - started
        await sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest_twisted.ensureDeferred
async def test_api_live_requires_authentication(driver: Driver, site: SpyService) -> None:
    """Without valid credentials /api/live answers 401 and shows nothing."""
    code, body = await get_live(site, password="wrong-password")
    assert code == 401 and "servers" not in body


@pytest_twisted.ensureDeferred
async def test_api_live_shows_talking_agent_with_customer_direction_session_within_1s(
        driver: Driver, site: SpyService) -> None:
    """A customer call to agent 1001 shows as Talking, incoming, customer's number, a session,
    within 1 s of Asterisk bridging it."""
    mark = driver.mark()
    await agent_call(driver, "1001", caller="5551234")
    bridged = await driver.wait_for(
        lambda m: m.event == "BridgeEnter" and (m.get("Channel") or "").startswith("Local/1001@fsp-agents-"),
        since=mark, what="BridgeEnter of the agent leg")
    seen_at = time.monotonic()

    async def talking() -> bool:
        _, snap = await get_live(site)
        a = agent_of(snap, "1001")
        return bool(a["status"] == "Talking" and a["call"]
                    and a["call"]["customer_number"] == "5551234"
                    and a["call"]["direction"] == "incoming" and a["session_id"])

    await until(talking, timeout=3)
    lag = time.monotonic() - seen_at
    assert lag < 1.0, f"/api/live lagged {lag:.3f}s behind BridgeEnter"
    _, snap = await get_live(site)
    agent = agent_of(snap, "1001")
    assert len(agent["session_id"]) == 7 and agent["session_id"].isdigit()
    assert agent["channel"] == (await driver.channel_named("Local/1001@fsp-agents-", ";1"))
    assert bridged.get("BridgeUniqueid")


@pytest_twisted.ensureDeferred
async def test_conference_and_dialplan_sessions(driver: Driver, site: SpyService) -> None:
    """An agent in ConfBridge room 9600001 has that session; a dialplan-set
    FASTAGI_SPY_SESSION=8600051 becomes the agent's session."""
    await driver.originate("Local/1003@fsp-agents/n", "fsp-handsets", "customer",
                           variables={"FSP_CONF": "9600001"}, caller_id="Agent <1003>")
    await driver.originate("Local/9600001@fsp-conf/n", "fsp-handsets", "customer",
                           caller_id="ACME <5551234>")
    await driver.originate("Local/1001@fsp-customers/n", "fsp-handsets", "customer",
                           variables={"__FSP_SESSION": "8600051"}, caller_id="ACME <5551234>")

    async def sessions() -> bool:
        _, snap = await get_live(site)
        # The pre-dial handler sets the variable while 1001's phone still rings: wait for
        # the answer too, or the session resolves (rightly) to "not on a call".
        return bool(agent_of(snap, "1003")["session_id"] == "9600001"
                    and agent_of(snap, "1001")["session_id"] == "8600051"
                    and agent_of(snap, "1001")["status"] == "Talking")

    await until(sessions)
    found = site.live_map.resolve("9600001")
    assert found.ok and found.agent_number == "1003"
    found = site.live_map.resolve("8600051")
    assert found.ok and found.agent_number == "1001"
    assert (found.channel or "").startswith("Local/1001@fsp-agents-")


async def dialler_call_into_room(driver: Driver, dialled: str) -> float:
    """VICIdial's outbound topology: agent 1003 waits in ConfBridge room 9600001; a dialler
    originates Local/<dialled>@fsp-dialer (a [map] dialer_contexts entry) with the campaign's
    caller id and sends the answered leg into the room.  Returns when that leg joined."""
    await driver.originate("Local/1003@fsp-agents/n", "fsp-handsets", "customer",
                           variables={"FSP_CONF": "9600001"}, caller_id="Agent <1003>")
    mark = driver.mark()
    await driver.originate(f"Local/{dialled}@fsp-dialer/n", "fsp-conf", "9600001",
                           caller_id="V1121135220000012345 <3125550000>")
    await driver.wait_for(
        lambda m: m.event == "ConfbridgeJoin"
        and (m.get("Channel") or "").startswith(f"Local/{dialled}@fsp-dialer-"),
        since=mark, what="the dialled customer joining the agent's room")
    return time.monotonic()


def talking_out_to(site: SpyService, number: str) -> Callable[[], Awaitable[bool]]:
    """True once /api/live shows agent 1003 Talking on an outgoing call to ``number``."""
    async def shown() -> bool:
        _, snap = await get_live(site)
        call = agent_of(snap, "1003")["call"] or {}
        return bool(agent_of(snap, "1003")["status"] == "Talking"
                    and (call.get("direction"), call.get("customer_number")) == (
                        "outgoing", number))

    return shown


@pytest_twisted.ensureDeferred
async def test_a_dialler_call_into_an_agents_room_is_outgoing_to_the_number_dialled(
        driver: Driver, site: SpyService) -> None:
    """/api/live shows agent 1003 Talking on an outgoing call to the number the dialler
    dialled (5551234), within 1 s, and still so after an AMI cut and resync."""
    seen_at = await dialler_call_into_room(driver, "5551234")
    await until(talking_out_to(site, "5551234"), timeout=3)
    lag = time.monotonic() - seen_at
    assert lag < 1.0, f"/api/live lagged {lag:.3f}s behind ConfbridgeJoin"
    _, snap = await get_live(site)
    assert agent_of(snap, "1003")["call"]["customer_name"] == ""  # not the dialler's call id

    # After a reconnect CoreShowChannels shows the leg in fsp-conf/9600001, not where it began.
    client = site.clients["sandbox"]
    before = site.syncs["sandbox"].resyncs
    assert client.protocol is not None
    client.protocol.transport.abortConnection()  # type: ignore[union-attr]
    await until(_async(lambda: site.syncs["sandbox"].resyncs > before), timeout=15)
    _, snap = await get_live(site)
    call = agent_of(snap, "1003")["call"]
    assert (call["direction"], call["customer_number"]) == ("outgoing", "5551234")


@pytest_twisted.ensureDeferred
async def test_a_dialler_s_dial_prefix_is_not_shown_as_part_of_the_customer_number(
        driver: Driver, site: SpyService) -> None:
    """The campaign dials 9 before every number (Local/95559876@fsp-dialer); with
    [map] dialer_dial_prefixes = ["9"], /api/live shows the customer as 5559876."""
    await dialler_call_into_room(driver, "95559876")
    await until(talking_out_to(site, "5559876"), timeout=3)


@pytest_twisted.ensureDeferred
async def test_queue_member_paused_mid_call(driver: Driver, site: SpyService) -> None:
    """A queue member who answers a queue call is Talking; paused mid-call, Paused."""
    await driver.action("QueueAdd", [("Queue", "fsp-sales"), ("Interface", "Local/1002@fsp-agents/n"),
                                     ("MemberName", "1002")])
    try:
        await driver.originate("Local/q@fsp-customers/n", "fsp-handsets", "customer",
                               caller_id="Globex <5559876>")

        async def talking() -> bool:
            _, snap = await get_live(site)
            a = agent_of(snap, "1002")
            return bool(a["status"] == "Talking" and a["call"]
                        and a["call"]["customer_number"] == "5559876")

        await until(talking)
        await driver.action("QueuePause", [("Queue", "fsp-sales"),
                                           ("Interface", "Local/1002@fsp-agents/n"), ("Paused", "true")])

        async def paused() -> bool:
            _, snap = await get_live(site)
            return bool(agent_of(snap, "1002")["status"] == "Paused")

        await until(paused)
    finally:
        await driver.action("QueueRemove", [("Queue", "fsp-sales"),
                                            ("Interface", "Local/1002@fsp-agents/n")])


async def _asterisk_channels(driver: Driver) -> set[str]:
    return {item.get("Channel") or "" for item in await driver.channels()}


def _map_channels(site: SpyService, server: str = "sandbox") -> set[str]:
    return set(site.live_map.channel_names(server))


@pytest_twisted.ensureDeferred
async def test_after_an_ami_cut_the_map_equals_core_show_channels(
        driver: Driver, site: SpyService) -> None:
    """Cut our AMI link while calls come and go: after the reconnect, no stale entries."""
    first = await agent_call(driver, "1001")
    await agent_call(driver, "1002")
    await until(_async(lambda: first.agent_leg in _map_channels(site)))
    client = site.clients["sandbox"]
    before = site.syncs["sandbox"].resyncs
    assert client.protocol is not None
    client.protocol.transport.abortConnection()  # type: ignore[union-attr]
    await until(_async(lambda: site.live_map.snapshot(time.time())["servers"]["sandbox"]["stale"]))
    await driver.hangup(first.customer_handset)  # a call ends while we are blind ...
    await agent_call(driver, "10")  # ... and another starts
    await until(_async(lambda: site.syncs["sandbox"].resyncs > before), timeout=15)
    await sleep(0.5)
    assert _map_channels(site) == await _asterisk_channels(driver)
    assert not site.live_map.snapshot(time.time())["servers"]["sandbox"]["stale"]
    assert site.live_map.resolve("1001").reason in ("not_on_call", "not_logged_in")
    assert site.live_map.resolve("10").ok


@pytest_twisted.ensureDeferred
async def test_after_an_asterisk_restart_the_map_is_rebuilt_without_stale_entries(
        driver: Driver, site: SpyService, sandbox: AsteriskSandbox) -> None:
    """Restart Asterisk with calls up: every old channel is dropped; new calls appear."""
    call = await agent_call(driver, "1001")
    await until(_async(lambda: call.agent_leg in _map_channels(site)))
    before = site.syncs["sandbox"].resyncs
    await threads.deferToThread(sandbox.restart)
    await driver.reconnected()
    await until(_async(lambda: site.syncs["sandbox"].resyncs > before), timeout=20)
    assert call.agent_leg not in _map_channels(site)
    fresh = await agent_call(driver, "1002")
    await until(_async(lambda: fresh.agent_leg in _map_channels(site)))
    assert _map_channels(site) == await _asterisk_channels(driver)


@pytest_twisted.ensureDeferred
async def test_two_servers_keep_separate_sessions(
        driver: Driver, sandbox: AsteriskSandbox, tmp_path: Path) -> None:
    """The same Asterisk configured twice under two names: two states, each with its own
    sessions; a lookup can name the server."""
    config = site_config(sandbox, tmp_path)
    text = Path(config.source).read_text()
    second = text.split("[[asterisk]]")[1].split("\n\n")[0].replace('name = "sandbox"', 'name = "second"')
    Path(config.source).write_text(text.replace("[map]", f"[[asterisk]]{second}\n\n[map]"))
    from fastagi_spy.config import load

    service = make_service(load(config.source), reactor)
    service.startService()
    try:
        await wait_ready(service)
        await agent_call(driver, "1001")

        async def both() -> bool:
            snap = service.live_map.snapshot(time.time())
            return all(agent_of(snap, "1001", s)["status"] == "Talking" for s in ("sandbox", "second"))

        await until(both)
        snap = service.live_map.snapshot(time.time())
        assert set(snap["servers"]) == {"sandbox", "second"}
        one = service.live_map.resolve("1001", server="sandbox")
        two = service.live_map.resolve("1001", server="second")
        assert one.ok and two.ok and one.server == "sandbox" and two.server == "second"
        assert service.live_map.resolve("1001").reason == "ambiguous"
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_status_command_prints_the_live_table(driver: Driver, site: SpyService) -> None:
    """`fastagi-spy status --config --user` (the password on stdin, as a script would give
    it) prints each agent's row from the running server."""
    await agent_call(driver, "1001", caller="5551234")

    async def talking() -> bool:
        _, snap = await get_live(site)
        return bool(agent_of(snap, "1001")["status"] == "Talking")

    await until(talking)
    done = await threads.deferToThread(
        subprocess.run, [sys.executable, "-m", "fastagi_spy.cli", "status", "--config",
                         site.config.source, "--user", API_USER], input=API_PASSWORD + "\n",
        capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if " 1001 " in f" {line} ")
    assert "Talking" in row and "5551234" in row and "incoming" in row


def _async(predicate: Any) -> Any:
    async def check() -> bool:
        return bool(predicate())
    return check
