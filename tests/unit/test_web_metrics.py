"""/metrics through the service's own HTTP tree: each figure follows the state it reads
(AMI links, the live map, the audit trail, the hash queue, HTTP requests), a client off
loopback is refused, and no secret or typed number ever reaches the page."""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.server import Site

from fastagi_spy.config import load
from fastagi_spy.service import SpyService
from fastagi_spy.store.audit import AuthResult, EndReason, EventKind, Via
from fastagi_spy.web.metrics import (
    AMILink,
    LinkCounters,
    RequestCounts,
    RouteTracker,
    Sources,
    SpyCollector,
)
from fastagi_spy.wire.ami import AMIMessage, AMIParser
from tests.unit.model_events import Sim, incoming_trunk
from tests.unit.test_web_health import CONFIG, link_up_and_synced
from tests.unit.web_http import http

ROOT = Path(__file__).resolve().parents[2]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def service(tmp_path: Path) -> Iterator[SpyService]:
    path = tmp_path / "spy.toml"
    path.write_text(CONFIG)
    spy = SpyService(load(path), reactor)
    yield spy
    spy.stores.db.close()


def scrape(service: SpyService) -> Samples:
    reply = http(service.site.resource, "GET", "/metrics")
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"].startswith("text/plain; version=")
    return parse(reply.body)


def parse(text: str) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_ami_state_follows_the_links(service: SpyService) -> None:
    before = scrape(service)
    assert value(before, "fastagi_spy_ami_up", server="a") == 0
    assert value(before, "fastagi_spy_ami_synced", server="a") == 0
    link_up_and_synced(service, "a")
    after = scrape(service)
    assert value(after, "fastagi_spy_ami_up", server="a") == 1
    assert value(after, "fastagi_spy_ami_synced", server="a") == 1
    assert value(after, "fastagi_spy_ami_up", server="b") == 0


def test_events_read_are_counted_per_server(service: SpyService) -> None:
    link_up_and_synced(service, "a")
    raw = b"".join(e.to_bytes() for e in incoming_trunk(Sim(), "1001"))
    read = AMIParser().feed(b"Asterisk Call Manager/11.0.0\r\n" + raw)
    messages = [m for m in read if isinstance(m, AMIMessage)]
    service.clients["a"].dispatch(messages)
    samples = scrape(service)
    assert value(samples, "fastagi_spy_ami_events_total", server="a") == len(messages) > 10
    assert value(samples, "fastagi_spy_ami_events_total", server="b") == 0


def test_logins_after_the_first_are_reconnects() -> None:
    counters = LinkCounters()
    seen: list[str] = []
    ready = counters.counting_logins(seen.append)
    ready("first")
    ready("again")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SpyCollector(_sources(links=[AMILink("a", True, True, counters)])))
    samples = parse(generate_latest(registry).decode())
    assert seen == ["first", "again"]  # the login hook still runs, every time
    assert value(samples, "fastagi_spy_ami_reconnects_total", server="a") == 1


def test_map_size_follows_the_calls(service: SpyService) -> None:
    link_up_and_synced(service, "a")
    events = incoming_trunk(Sim(), "1001")
    service.live_map.apply_many("a", events[:-2], 2.0)  # answered, not yet hung up
    during = scrape(service)
    assert value(during, "fastagi_spy_map_entries", server="a", kind="agents") == 1
    assert value(during, "fastagi_spy_map_entries", server="a", kind="calls") >= 1
    service.live_map.apply_many("a", events[-2:], 3.0)
    after = scrape(service)
    assert value(after, "fastagi_spy_map_entries", server="a", kind="calls") == 0


def test_attempts_by_outcome_follow_the_audit_trail(service: SpyService) -> None:
    audit = service.stores.audit
    long_spy = audit.open(1.0, Via.PHONE.value, supervisor="2001")  # still open
    short = audit.open(2.0, Via.PHONE.value, supervisor="2001")
    audit.close(short, 3.0, EndReason.BAD_PIN)
    first = scrape(service)
    assert value(first, "fastagi_spy_attempts_total", outcome="bad_pin") == 1
    # The open attempt is not counted until it ends.
    assert sum(v for (name, _), v in first.items() if name == "fastagi_spy_attempts_total") == 1
    audit.close(long_spy, 4.0, EndReason.COMPLETED)
    later = audit.open(5.0, Via.WEB.value)
    audit.close(later, 6.0, EndReason.BAD_PIN)
    second = scrape(service)
    assert value(second, "fastagi_spy_attempts_total", outcome="completed") == 1
    assert value(second, "fastagi_spy_attempts_total", outcome="bad_pin") == 2
    third = scrape(service)  # nothing new: nothing counted twice
    assert value(third, "fastagi_spy_attempts_total", outcome="bad_pin") == 2


def test_pin_failures_and_lockouts(service: SpyService) -> None:
    audit = service.stores.audit
    record = audit.open(1.0, Via.PHONE.value)
    audit.add_event(record, 1.0, EventKind.PIN, f"2001 {AuthResult.BAD_PIN}")
    audit.add_event(record, 2.0, EventKind.PIN, f"2001 {AuthResult.BAD_PIN}")
    audit.add_event(record, 3.0, EventKind.PIN, f"- {AuthResult.LOCKED_OUT}")
    service.stores.db.execute("INSERT INTO lockouts (key, until) VALUES (?, ?)",
                              ("supervisor:2001", service.now() + 600))
    samples = scrape(service)
    assert value(samples, "fastagi_spy_pin_checks_total", result="bad_pin") == 2
    assert value(samples, "fastagi_spy_pin_checks_total", result="locked_out") == 1
    assert value(samples, "fastagi_spy_lockouts_active") == 1
    assert "2001" not in http(service.site.resource, "GET", "/metrics").body


def test_hash_queue_depth_follows_the_lanes(service: SpyService) -> None:
    assert value(scrape(service), "fastagi_spy_hash_queue_depth") == 0
    service.hash_worker.lanes["PJSIP/2001"] = deque([object(), object()])  # type: ignore[list-item]
    service.hash_worker.lanes["127.0.0.1"] = deque([object()])  # type: ignore[list-item]
    assert value(scrape(service), "fastagi_spy_hash_queue_depth") == 3


def test_http_requests_are_counted_by_method_and_code(service: SpyService) -> None:
    # Through the service's own site, whose access-log hook does the counting.
    for path in ("/healthz", "/readyz", "/nowhere?pass=secret"):
        _via_site(service.site, path, "127.0.0.1")
    samples = scrape(service)
    assert value(samples, "fastagi_spy_http_requests_total", method="GET", code="200") == 1
    assert value(samples, "fastagi_spy_http_requests_total", method="GET", code="503") == 1
    assert value(samples, "fastagi_spy_http_requests_total", method="GET", code="404") == 1


def test_metrics_refused_off_loopback(service: SpyService) -> None:
    reply = _via_site(service.site, "/metrics", "10.0.0.9")
    assert "403" in reply.partition("\r\n")[0]
    assert "fastagi_spy_" not in reply
    assert "200" in _via_site(service.site, "/metrics", "127.0.0.1").partition("\r\n")[0]


def test_no_secret_on_the_page(service: SpyService) -> None:
    link_up_and_synced(service, "a")
    body = http(service.site.resource, "GET", "/metrics").body
    for secret in ("topsecret-ami", "unit-test-pepper", "10.0.0.5"):
        assert secret not in body


def test_spies_running_by_way_in() -> None:
    registry = CollectorRegistry(auto_describe=False)
    routes = RouteTracker(registry, lambda: 0.0)
    routes.active.update({"1.1": "listen", "1.2": "barge", "1.3": "barge", "1.4": "echo-test"})
    registry.register(SpyCollector(_sources(routes=routes, running=["1.1", "1.2", "1.3"])))
    samples = parse(generate_latest(registry).decode())
    assert value(samples, "fastagi_spy_spies_running", mode="listen") == 1
    assert value(samples, "fastagi_spy_spies_running", mode="barge") == 2
    assert value(samples, "fastagi_spy_spies_running", mode="whisper") == 0


def _sources(links: list[AMILink] | None = None, routes: RouteTracker | None = None,
             running: list[str] | None = None) -> Sources:
    return Sources(
        links=lambda: links or [], map_sizes=lambda: [],
        running_spies=lambda: running or [],
        routes=routes or RouteTracker(CollectorRegistry(), lambda: 0.0),
        outcomes=dict, pin_results=dict, lockouts_active=lambda: 0, hash_queue=lambda: 0,
        agi_sessions=lambda: 0, requests=RequestCounts())


def _via_site(site: Site, path: str, peer: str) -> str:
    """One GET through the service's own Site (its access-log hook included) from ``peer``."""
    address = IPv4Address("TCP", peer, 40001)
    site.reactor = Clock()
    proto = site.buildProtocol(address)
    assert proto is not None
    transport = StringTransport(peerAddress=address)
    proto.makeConnection(transport)
    proto.dataReceived(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    reply: bytes = transport.value()
    proto.connectionLost(None)
    return reply.decode(errors="replace")


def test_the_grafana_dashboard_reads_only_metrics_we_serve(service: SpyService) -> None:
    """contrib/'s dashboard: every fastagi_spy_ name in its queries is a family on the page."""
    body = http(service.site.resource, "GET", "/metrics").body
    families = {family.name for family in text_string_to_metric_families(body)}
    dashboard = json.loads((ROOT / "contrib" / "grafana-fastagi-spy.json").read_text())
    used = {name for panel in dashboard["panels"] for target in panel["targets"]
            for name in re.findall(r"fastagi_spy_\w+", target["expr"])}
    assert len(used) >= 12
    unknown = {name for name in used
               if re.sub(r"_(total|bucket|count|sum)$", "", name) not in families}
    assert unknown == set()


class Line:
    """A FastAGI session stand-in: each command's reply arrives when the test says."""

    def __init__(self, uniqueid: str) -> None:
        self.env = SimpleNamespace(uniqueid=uniqueid)
        self.sent: list[tuple[str, Deferred[str]]] = []

    def command(self, name: str, *args: str) -> Deferred[str]:
        reply: Deferred[str] = Deferred()
        self.sent.append((name, reply))
        return reply

    async def answer(self) -> str:
        return await self.command("ANSWER")


def test_each_agi_step_is_timed_by_command_and_the_call_by_route() -> None:
    clock = Clock()
    registry = CollectorRegistry(auto_describe=False)
    routes = RouteTracker(registry, clock.seconds)

    async def handler(session: Any) -> None:
        await session.answer()
        await session.command("GET DATA", "agent-pass")

    line = Line("1.5")
    done = ensureDeferred(routes.wrap("listen", handler)(line))
    assert routes.active == {"1.5": "listen"}
    clock.advance(0.02)
    line.sent[0][1].callback("200 result=0")
    clock.advance(3)
    line.sent[1][1].callback("200 result=1234")
    assert done.called and routes.active == {}
    samples = parse(generate_latest(registry).decode())
    assert value(samples, "fastagi_spy_agi_step_seconds_sum", command="ANSWER") == 0.02
    assert value(samples, "fastagi_spy_agi_step_seconds_sum", command="GET DATA") == 3
    assert value(samples, "fastagi_spy_agi_call_seconds_count", route="listen") == 1
    assert value(samples, "fastagi_spy_agi_call_seconds_sum", route="listen") == 3.02
