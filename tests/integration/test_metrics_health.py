"""/metrics, /healthz and /readyz on the real Asterisk 22, over the service's own HTTP port.

A supervisor's *222 spy is seen running (by its way in) while it runs and counted by its
end reason once it ends; the sandbox's AMI link shows up and synced and /readyz says ready.
Then the link is pointed at a closed loopback port (as the settings page does with a wrong
port): /readyz turns 503 naming the server, and /metrics shows the link down.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.endpoints import clientFromString

from fastagi_spy.net.ami import AMICredentials
from fastagi_spy.service import SpyService
from tests.integration.driver import Driver, is_event, sleep
from tests.integration.site import agent_call, answer, closed_records, supervisor_dials
from tests.integration.test_vicidial_status import base, fetch

# Every test that takes `site` (or `store`) runs on SQLite and on the real PostgreSQL.
pytestmark = pytest.mark.both_stores

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(site: SpyService) -> Samples:
    status, kind, body = await fetch(base(site) + "/metrics")
    assert status == 200 and kind.startswith("text/plain"), (status, kind)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), -1.0)


async def scrape_until(site: SpyService, ok: Callable[[Samples], bool], what: str) -> Samples:
    for _ in range(100):
        samples = await scrape(site)
        if ok(samples):
            return samples
        await sleep(0.1)
    raise AssertionError(f"/metrics never showed {what}")


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest_twisted.ensureDeferred
async def test_a_spy_is_counted_and_readyz_follows_the_ami_link(
        driver: Driver, site: SpyService) -> None:
    assert await fetch(base(site) + "/healthz") == (200, "text/plain; charset=utf-8", "ok\n")
    call = await agent_call(driver, "1001")
    mark = driver.mark()
    sup = await supervisor_dials(driver, "2001", "*2221001")
    await answer(driver, sup, "agent-pass", "1234", since=mark)
    spy = await driver.wait_for(is_event("ChanSpyStart", SpyerChannel=sup.line), since=mark,
                                what="ChanSpyStart")
    assert spy.get("SpyeeChannel") == call.agent_leg
    during = await scrape_until(
        site, lambda s: value(s, "fastagi_spy_spies_running", mode="listen") == 1,
        "the listen spy running")
    assert value(during, "fastagi_spy_ami_up", server="sandbox") == 1
    assert value(during, "fastagi_spy_ami_synced", server="sandbox") == 1
    assert value(during, "fastagi_spy_ami_events_total", server="sandbox") > 0
    assert value(during, "fastagi_spy_agi_sessions") >= 1
    assert value(during, "fastagi_spy_pin_checks_total", result="ok") == 1
    assert value(during, "fastagi_spy_map_entries", server="sandbox", kind="calls") >= 1

    await driver.hangup(sup.line)
    record = (await closed_records(site, 1))[0]
    assert record.end_reason == "supervisor_hangup"
    after = await scrape_until(
        site, lambda s: value(s, "fastagi_spy_spies_running", mode="listen") == 0,
        "the spy gone")
    assert value(after, "fastagi_spy_attempts_total", outcome="supervisor_hangup") == 1
    assert value(after, "fastagi_spy_agi_calls_total", route="listen") == 1
    assert value(after, "fastagi_spy_hash_verify_seconds_count") >= 1
    assert value(after, "fastagi_spy_agi_step_seconds_count", command="ANSWER") == 1
    assert value(after, "fastagi_spy_agi_step_seconds_count", command="EXEC") >= 1  # ChanSpy
    assert value(after, "fastagi_spy_http_requests_total", method="GET", code="200") >= 2
    assert await fetch(base(site) + "/readyz") == (200, "text/plain; charset=utf-8", "ready\n")

    # The link pointed at a closed port: down, and not ready, until it is put back.
    ami = site.ami_settings("sandbox")
    await site.clients["sandbox"].reconfigure(
        clientFromString(reactor, f"tcp:host=127.0.0.1:port={closed_port()}"),
        AMICredentials(ami.ami_username, ami.ami_secret))
    down = await scrape_until(site, lambda s: value(s, "fastagi_spy_ami_up",
                                                    server="sandbox") == 0, "AMI down")
    assert value(down, "fastagi_spy_ami_synced", server="sandbox") == 0
    status, _, body = await fetch(base(site) + "/readyz")
    assert (status, body) == (503, "ami sandbox: down\n")
