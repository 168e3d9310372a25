"""FastAGI server and AMI client against the real Asterisk 22 sandbox."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_twisted
from twisted.internet import reactor, threads
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.interfaces import IListeningPort

from fastagi_spy.net.ami import AMIClient, AMICredentials
from fastagi_spy.net.fastagi import FastAGIFactory
from fastagi_spy.sandbox import AsteriskSandbox
from fastagi_spy.supervise.echo import echo_test
from tests.integration.conftest import failures
from tests.integration.driver import Driver, is_event, sleep, tag

PRODUCT_USER = AMICredentials("fastagi-spy", "change-me-fastagi-spy")


@pytest_twisted.async_yield_fixture()
async def agi_server(sandbox: AsteriskSandbox) -> AsyncIterator[FastAGIFactory]:
    factory = FastAGIFactory({"echo-test": echo_test}, reactor)  # type: ignore[arg-type]
    endpoint = TCP4ServerEndpoint(reactor, sandbox.agi_port, interface="127.0.0.1")
    port: IListeningPort = await endpoint.listen(factory)
    yield factory
    await port.stopListening()


def product_client(sandbox: AsteriskSandbox, credentials: AMICredentials = PRODUCT_USER,
                   **kwargs: object) -> AMIClient:
    return AMIClient(
        "pbx-test",
        TCP4ClientEndpoint(reactor, "127.0.0.1", sandbox.ami_port),
        credentials,
        reactor,  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


@pytest_twisted.ensureDeferred
async def test_dialplan_agi_reaches_server_which_answers_reads_and_execs(
    driver: Driver, agi_server: FastAGIFactory, log_events: list[dict[str, object]]
) -> None:
    """AGI(agi://127.0.0.1:PORT/echo-test,...) reaches us; we answer, read a var, EXEC Wait."""
    mark = driver.mark()
    await driver.originate("Local/echo@fsp-tests/n", "fsp-tests", "park")
    event = await driver.wait_for(is_event("UserEvent", UserEvent="FspEcho"), since=mark,
                                  what="FspEcho")
    assert event.get("Status") == "SUCCESS"
    # The variable came back intact (colon and space), and so did colon-laden AGI args.
    assert event.get("Result") == "ok|hello: world|first|a:b:c"
    exec_events = driver.seen(is_event("AGIExecEnd"), since=mark)
    assert any((e.get("Command") or "").startswith("EXEC") for e in exec_events)
    assert failures(log_events) == []


@pytest_twisted.ensureDeferred
async def test_hangup_mid_command_is_logged_cleanly_and_frees_the_session(
    driver: Driver, agi_server: FastAGIFactory, log_events: list[dict[str, object]]
) -> None:
    """The caller hangs up inside EXEC Wait: no traceback, session freed, hangup logged."""
    mark = driver.mark()
    await driver.originate("Local/echo@fsp-tests/n", "fsp-tests", "park",
                           variables={"FSP_ECHO_ARG": "slow"})
    started = await driver.wait_for(
        lambda m: m.event == "AGIExecStart" and (m.get("Command") or "").startswith("EXEC"),
        since=mark, what="EXEC Wait to start")
    assert len(agi_server.sessions) == 1
    await driver.hangup(started.get("Channel") or "")
    for _ in range(50):
        if not agi_server.sessions:
            break
        await sleep(0.1)
    assert agi_server.sessions == set()
    assert failures(log_events) == []
    texts = [str(e.get("log_format")) for e in log_events]
    assert any("ended by hangup" in t for t in texts)


@pytest_twisted.ensureDeferred
async def test_ami_client_logs_in_and_collects_core_show_channels(
    driver: Driver, sandbox: AsteriskSandbox
) -> None:
    """Our least-privilege AMI user logs in (MD5) and lists live Local channels as one result."""
    for _ in range(3):
        await driver.originate("Local/park@fsp-tests/n", "fsp-tests", "park")
    await driver.channel_named("Local/park@fsp-tests-", ";2")
    client = product_client(sandbox)
    connected = []
    client.on_ready = lambda c: connected.append(c) or None  # type: ignore[func-returns-value]
    client.start()
    try:
        for _ in range(100):
            if connected:
                break
            await sleep(0.1)
        assert connected, "product AMI user did not log in"
        for _ in range(50):
            result = await client.call("CoreShowChannels")
            names = [e.get("Channel") or "" for e in result.events]
            if sum(n.startswith("Local/park@fsp-tests-") for n in names) >= 6:
                break
            await sleep(0.1)
        assert result.complete is not None
        assert result.complete.get("EventList") == "Complete"
        assert sum(n.startswith("Local/park@fsp-tests-") for n in names) >= 6
        assert int(result.complete.get("ListItems") or "0") == len(result.events)
    finally:
        await client.stop()


@pytest_twisted.ensureDeferred
async def test_ami_client_reconnects_after_asterisk_restart(
    driver: Driver, sandbox: AsteriskSandbox
) -> None:
    """After Asterisk restarts, the client logs in again by itself and answers a Ping."""
    logins: list[AMIClient] = []
    downs: list[AMIClient] = []
    client = product_client(sandbox, max_backoff=2.0,
                            on_ready=lambda c: logins.append(c) or None,
                            on_down=downs.append)
    client.start()
    try:
        for _ in range(100):
            if logins:
                break
            await sleep(0.1)
        assert len(logins) == 1
        await threads.deferToThread(sandbox.restart)
        for _ in range(200):
            if len(logins) >= 2 and client.ready:
                break
            await sleep(0.1)
        assert len(downs) >= 1
        assert len(logins) >= 2
        pong = await client.call("Ping")
        assert pong.response.get("Ping") == "Pong"
    finally:
        await client.stop()
        await driver.reconnected()


@pytest_twisted.ensureDeferred
async def test_wrong_secret_is_one_clear_line_per_retry_with_backoff(
    sandbox: AsteriskSandbox, log_events: list[dict[str, object]]
) -> None:
    """A wrong secret: one clear error line per refused try, no traceback (ClientService
    used to add a NoTransition one each time), retries backed off (no hot loop)."""
    attempts: list[int] = []
    client = product_client(sandbox, AMICredentials("fastagi-spy", "wrong-" + tag()),
                            max_backoff=30.0)
    original = client._login

    async def counting_login(proto):  # type: ignore[no-untyped-def]
        attempts.append(1)
        await original(proto)

    client._login = counting_login  # type: ignore[method-assign]
    client.start()
    try:
        await sleep(8.0)
    finally:
        await client.stop()
    assert not client.ready
    # Asterisk delays each refusal by 1 s; with backoff 1 s, 1.6 s, 2.6 s ... 8 s allow <= 4.
    assert 2 <= len(attempts) <= 4
    refusals = [e for e in log_events if "refused" in str(e.get("log_format", ""))
                and e.get("log_level") is not None and e["log_level"].name == "error"]  # type: ignore[union-attr]
    # The try in progress when stop() came is cut short, unlogged.
    assert len(attempts) - 1 <= len(refusals) <= len(attempts)
    assert all("ami_secret" in str(e["log_format"]) for e in refusals)
    assert not failures(log_events)

