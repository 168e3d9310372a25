"""Prometheus metrics at /metrics.

Most figures are read from live state when Prometheus scrapes (``SpyCollector``): the AMI
links, the live map's sizes, running spies, the audit trail's totals, the hash workers'
queue. Only what no state remembers is counted as it happens, each in one place:

- ``LinkCounters.read``: an AMI listener, one integer add per read (not per event);
- ``LinkCounters.counting_logins``: once per AMI login;
- ``RequestCounts.log``: once per finished HTTP request, beside the access log line;
- ``RouteTracker``: once per FastAGI call (start and end) and per AGI command;
- ``verify_seconds``: once per PIN or password check.

The audit's figures are the one part read from the store: ``AuditFigures.refresh`` reads them
in one store call (through the store runner: on the store thread with PostgreSQL) before each
scrape is rendered, so a slow database delays that scrape, never the reactor.

Who may read it: /metrics answers only clients on a loopback address (127.0.0.0/8, ::1),
403 to anyone else; a Prometheus on another host scrapes through a local proxy or agent.
Nothing in it is secret (no PIN, password, login, address or typed number is ever a label),
but the sizes and rates say how busy the call centre is, which is not for everyone.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

P = "fastagi_spy_"
_METHODS = frozenset({"GET", "POST", "HEAD"})
_COMMAND = re.compile(r"[A-Z][A-Z ]{0,23}")  # ours ("GET DATA"), kept to that shape as a label
T = TypeVar("T")
log = Logger()


@dataclass
class LinkCounters:
    """What one AMI link did since start: successful logins and events read."""

    connects: int = 0
    events: int = 0

    def read(self, messages: Sequence[object]) -> None:
        self.events += len(messages)

    def counting_logins(self, on_ready: Callable[[T], Any]) -> Callable[[T], Any]:
        """``on_ready`` (run after each AMI login) that first counts the login."""
        def ready(client: T) -> Any:
            self.connects += 1
            return on_ready(client)

        return ready


@dataclass(frozen=True)
class AMILink:
    server: str
    up: bool
    synced: bool
    counters: LinkCounters


@dataclass
class RequestCounts:
    """Finished HTTP requests by method and status code (never by path: paths are typed by
    whoever connects, and each one would become a new series)."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)

    def log(self, request: Request) -> None:
        method = (request.method or b"").decode("ascii", "replace")
        code = request.code if 100 <= request.code <= 599 else 0
        self.counts[(method if method in _METHODS else "other", str(code))] += 1

    def around(self, log: Callable[[Request], None]) -> Callable[[Request], None]:
        """The site's access-log hook, counting each request first."""
        def counted(request: Request) -> None:
            self.log(request)
            log(request)

        return counted


class RouteTracker:
    """The FastAGI calls in progress, by the way in (listen, whisper, barge for a feature
    code; cross and api where the mode came with a token), keyed by the call's uniqueid."""

    def __init__(self, registry: CollectorRegistry, clock: Callable[[], float]) -> None:
        self.active: dict[str, str] = {}
        self.handled: Counter[str] = Counter()
        self._clock = clock
        self.duration = Histogram(
            P + "agi_call_seconds", "FastAGI calls handled, by way in: time from the "
            "environment read to the handler's end", ["route"], registry=registry,
            buckets=(0.05, 0.25, 1, 5, 15, 60, 300, 1800, 7200))
        self.steps = Histogram(
            P + "agi_step_seconds", "FastAGI commands: time from sending one to Asterisk's "
            "reply (GET DATA and EXEC include the caller's or the application's time)",
            ["command"], registry=registry,
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30))

    def wrap(self, route: str, handler: Callable[[Any], Awaitable[Any]]
             ) -> Callable[[Any], Coroutine[Any, Any, Any]]:
        async def tracked(session: Any) -> Any:
            uniqueid = str(session.env.uniqueid)
            began = self._clock()
            self._time_steps(session)
            self.active[uniqueid] = route
            try:
                return await handler(session)
            finally:
                self.active.pop(uniqueid, None)
                self.handled[route] += 1
                self.duration.labels(route).observe(max(0.0, self._clock() - began))

        return tracked

    def _time_steps(self, session: Any) -> None:
        """Every command of this call timed: the session's helpers all go through its
        ``command``, so wrapping that one method (on this session only) sees each step while
        net/fastagi.py stays unaware of metrics."""
        command = session.command

        def timed(name: str, *args: Any, **kwargs: Any) -> Any:
            began = self._clock()
            label = name if _COMMAND.fullmatch(name) else "other"

            def observe(result: Any) -> Any:
                self.steps.labels(label).observe(max(0.0, self._clock() - began))
                return result

            reply = command(name, *args, **kwargs)
            reply.addBoth(observe)
            return reply

        session.command = timed


@dataclass(frozen=True)
class Sources:
    """Where the collector reads each figure from, at scrape time."""

    links: Callable[[], Iterable[AMILink]]
    map_sizes: Callable[[], Iterable[tuple[str, tuple[int, int, int]]]]
    running_spies: Callable[[], Iterable[str]]  # the spying calls' uniqueids
    routes: RouteTracker
    outcomes: Callable[[], Mapping[str, int]]
    pin_results: Callable[[], Mapping[str, int]]
    lockouts_active: Callable[[], int]
    hash_queue: Callable[[], int]
    agi_sessions: Callable[[], int]
    requests: RequestCounts


class SpyCollector(Collector):
    def __init__(self, sources: Sources) -> None:
        self.s = sources

    def collect(self) -> Iterator[Metric]:
        yield from self._links()
        yield from self._map()
        yield from self._spies()
        yield from self._audit()
        yield from self._workers()
        yield from self._http()

    def _links(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(P + "ami_up", "1 when the AMI link is logged in", labels=["server"])
        synced = GaugeMetricFamily(P + "ami_synced", "1 when the live map holds a resync "
                                   "newer than the link's last drop", labels=["server"])
        reconnects = CounterMetricFamily(P + "ami_reconnects", "AMI logins after the first",
                                         labels=["server"])
        events = CounterMetricFamily(P + "ami_events", "AMI events read", labels=["server"])
        for link in self.s.links():
            up.add_metric([link.server], 1.0 if link.up else 0.0)
            synced.add_metric([link.server], 1.0 if link.synced else 0.0)
            reconnects.add_metric([link.server], max(0, link.counters.connects - 1))
            events.add_metric([link.server], link.counters.events)
        yield from (up, synced, reconnects, events)

    def _map(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(P + "map_entries", "What the live map tracks now",
                                   labels=["server", "kind"])
        for server, (agents, calls, sessions) in self.s.map_sizes():
            family.add_metric([server, "agents"], agents)
            family.add_metric([server, "calls"], calls)
            family.add_metric([server, "sessions"], sessions)
        yield family

    def _spies(self) -> Iterator[Metric]:
        routes = self.s.routes
        by_mode = Counter(routes.active.get(uniqueid, "unknown")
                          for uniqueid in self.s.running_spies())
        spies = GaugeMetricFamily(P + "spies_running", "Our ChanSpy sessions running now, by "
                                  "the way in (feature code's mode, cross or api)",
                                  labels=["mode"])
        for mode in ("listen", "whisper", "barge", "cross", "api"):
            spies.add_metric([mode], by_mode.pop(mode, 0))
        for mode, count in sorted(by_mode.items()):
            spies.add_metric([mode], count)
        yield spies
        sessions = GaugeMetricFamily(P + "agi_sessions", "FastAGI calls being handled now")
        sessions.add_metric([], self.s.agi_sessions())
        yield sessions
        calls = CounterMetricFamily(P + "agi_calls", "FastAGI calls handled, by way in",
                                    labels=["route"])
        for route, count in sorted(routes.handled.items()):
            calls.add_metric([route], count)
        yield calls

    def _audit(self) -> Iterator[Metric]:
        # Read from the audit trail, which instances sharing one database share: each of
        # them reports the same site-wide totals (aggregate them with max, never sum).
        yield _counter("attempts", "Attempts ended site-wide (the shared audit trail), by "
                       "end reason", "outcome",
                       self.s.outcomes())
        yield _counter("pin_checks", "PINs typed, by result (bad_pin: a wrong PIN, "
                       "locked_out: refused as locked)", "result", self.s.pin_results())
        locked = GaugeMetricFamily(P + "lockouts_active",
                                   "Supervisors and devices locked out of PIN entry now")
        locked.add_metric([], self.s.lockouts_active())
        yield locked

    def _workers(self) -> Iterator[Metric]:
        queue = GaugeMetricFamily(P + "hash_queue_depth",
                                  "PIN and password checks waiting for a hash worker")
        queue.add_metric([], self.s.hash_queue())
        yield queue

    def _http(self) -> Iterator[Metric]:
        family = CounterMetricFamily(P + "http_requests", "HTTP requests answered",
                                     labels=["method", "code"])
        for (method, code), count in sorted(self.s.requests.counts.items()):
            family.add_metric([method, code], count)
        yield family


def _counter(name: str, doc: str, label: str, values: Mapping[str, int]) -> Metric:
    family = CounterMetricFamily(P + name, doc, labels=[label])
    for value, count in sorted(values.items()):
        family.add_metric([value], count)
    return family


def verify_histogram(registry: CollectorRegistry) -> Histogram:
    return Histogram(P + "hash_verify_seconds", "PIN and password checks: time from queueing "
                     "to the hash worker's answer", registry=registry,
                     buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))


def timed(histogram: Histogram, clock: Callable[[], float],
          verify: Callable[..., Deferred[T]]) -> Callable[..., Deferred[T]]:
    """``verify`` with its time to answer (or fail) observed in ``histogram``."""
    def run(*args: Any, **kwargs: Any) -> Deferred[T]:
        began = clock()

        def observe(result: Any) -> Any:
            histogram.observe(max(0.0, clock() - began))
            return result

        answer = verify(*args, **kwargs)
        answer.addBoth(observe)
        return answer

    return run


def _loopback(request: Request) -> bool:
    peer = request.getClientAddress()
    if not isinstance(peer, IPv4Address | IPv6Address):
        return False
    try:
        return ipaddress.ip_address(peer.host.partition("%")[0]).is_loopback
    except ValueError:
        return False


class AuditFigures:
    """The audit's totals (``store.audit_counts.AuditCounts``) as of the last ``refresh``:
    read in ONE store call handed to ``run`` (the store runner), then served to the
    collector from here, on the reactor."""

    def __init__(self, counts: Any, run: Callable[..., Deferred[Any]],
                 now: Callable[[], float]) -> None:
        self._counts, self._run, self._now = counts, run, now
        self.outcomes: Mapping[str, int] = {}
        self.pin_results: Mapping[str, int] = {}
        self.lockouts_active = 0

    def _read(self, now: float) -> tuple[dict[str, int], dict[str, int], int]:
        counts = self._counts
        return counts.outcomes(), counts.pin_results(), counts.lockouts_active(now)

    async def refresh(self) -> None:
        self.outcomes, self.pin_results, self.lockouts_active = await self._run(
            self._read, self._now())


class MetricsResource(Resource):
    """``before``: awaited before each scrape is rendered (the audit figures' refresh)."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry,
                 before: Callable[[], Coroutine[Any, Any, None]] | None = None) -> None:
        Resource.__init__(self)
        self.registry = registry
        self.before = before

    def render_GET(self, request: Request) -> bytes | int:
        request.setHeader(b"cache-control", b"no-store")
        if not _loopback(request):
            request.setResponseCode(403)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"metrics are served to loopback clients only\n"
        if self.before is None:
            request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
            return generate_latest(self.registry)
        gone: list[Failure] = []
        request.notifyFinish().addErrback(gone.append)

        def answer(result: object) -> None:
            if gone:
                return  # the scraper hung up first
            if isinstance(result, Failure):
                # A scrape without the audit's totals would show them as dropped: fail it.
                log.failure("/metrics: the audit figures could not be read", result)
                request.setResponseCode(503)
                request.setHeader(b"content-type", b"text/plain; charset=utf-8")
                body = b"metrics unavailable: the store did not answer\n"
            else:
                request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
                body = generate_latest(self.registry)
            request.setHeader(b"content-length", str(len(body)).encode())
            request.write(body)
            request.finish()

        ensureDeferred(self.before()).addBoth(answer)
        return NOT_DONE_YET
