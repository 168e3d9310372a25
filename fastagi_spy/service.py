"""Service wiring: ``make_service(config, reactor)`` is the only place that assembles parts.

FastAGI server, one AMI client per Asterisk server feeding the live map, the HTTP API, and
the stores. Nothing here knows protocol details or policy; it only connects them.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from prometheus_client import CollectorRegistry
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet import defer, task, threads
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource

from fastagi_spy.config import AsteriskServer, Config
from fastagi_spy.domain import Mode, device_of_channel
from fastagi_spy.model import LiveMap
from fastagi_spy.net.ami import AMIClient, AMICredentials
from fastagi_spy.net.fairness import bound_io_per_iteration
from fastagi_spy.net.fastagi import AGILimits, AGISession, FastAGIFactory, PeerServers
from fastagi_spy.net.hashworker import HashPool, HashWorkerStopped
from fastagi_spy.net.livesync import LiveSync
from fastagi_spy.store.audit import AuditLog, EndReason, Via
from fastagi_spy.store.audit_counts import AuditCounts
from fastagi_spy.store.audit_query import explains_spy
from fastagi_spy.store.database import Database
from fastagi_spy.store.lockout import LockoutPolicy, LockoutStore
from fastagi_spy.store.logins import LoginLockout
from fastagi_spy.store.open import open_database
from fastagi_spy.store.passwords import PasswordStore
from fastagi_spy.store.pins import PinHasher, PinStore
from fastagi_spy.store.runner import StoreRunner, runner_for
from fastagi_spy.store.settings import ServerAMI, SettingsStore
from fastagi_spy.store.tokens import TokenStore
from fastagi_spy.supervise.chanspy import chanspy_argument
from fastagi_spy.supervise.crossing import Crossing
from fastagi_spy.supervise.echo import echo_test
from fastagi_spy.supervise.flow import FlowDeps, SupervisionFlow
from fastagi_spy.supervise.hijack import Hijack
from fastagi_spy.supervise.launch import LaunchRefused, MonitorLauncher, Stage
from fastagi_spy.supervise.notice import RequiredNotice
from fastagi_spy.supervise.passwords import PasswordChecker
from fastagi_spy.supervise.pincheck import PinChecker
from fastagi_spy.supervise.reconcile import Reconciler, instance_name
from fastagi_spy.supervise.running import RunningSpies
from fastagi_spy.supervise.shutdown import SpyShutdown
from fastagi_spy.supervise.spywatch import SpyWatches
from fastagi_spy.supervise.unexplained import UnexplainedSpies
from fastagi_spy.web import layout
from fastagi_spy.web.actions import SpyResource
from fastagi_spy.web.api import make_root
from fastagi_spy.web.audit_view import AuditCsv, AuditView
from fastagi_spy.web.guard import AuthThrottle, make_site
from fastagi_spy.web.health import LinkState, link_problems, mount_health, store_problem_later
from fastagi_spy.web.live import mount_live
from fastagi_spy.web.livestream import LiveHub
from fastagi_spy.web.login import mount_sign_in
from fastagi_spy.web.metrics import (
    AMILink,
    AuditFigures,
    LinkCounters,
    MetricsResource,
    RequestCounts,
    RouteTracker,
    Sources,
    SpyCollector,
    timed,
    verify_histogram,
)
from fastagi_spy.web.scopes import visible_agents
from fastagi_spy.web.session import WebSessions
from fastagi_spy.web.settings import SettingsResource
from fastagi_spy.web.static_files import static_files
from fastagi_spy.web.vicidial import NonAgentApi, NonAgentApiResource, VicidialDeps, mount
from fastagi_spy.web.vicidial_agents import LiveAgents
from fastagi_spy.wire.agi import AGIEnvironment
from fastagi_spy.wire.ami import AMIMessage

log = Logger()
_CHANSPY_EVENTS = frozenset({"ChanSpyStart", "ChanSpyStop"})
CHECKPOINT_EVERY = 5.0  # seconds between background WAL checkpoints


@dataclass
class Stores:
    db: Database
    pins: PinStore
    lockouts: LockoutStore
    audit: AuditLog
    passwords: PasswordStore
    logins: LoginLockout


def open_stores(config: Config, background_checkpoints: bool = False) -> Stores:
    """``config``'s stores; audit rows carry this instance's name (several may share one
    database: a restart reconciles only its own rows)."""
    db = open_database(config, background_checkpoints=background_checkpoints)
    s = config.security
    policy = LockoutPolicy(s.lockout_failures, s.lockout_window, s.lockout_duration,
                           supervisor_max_failures=s.supervisor_lockout_failures)
    audit = AuditLog(db, instance=instance_name(config.agi_listen))
    return Stores(db, PinStore(db), LockoutStore(db, policy), audit, PasswordStore(db),
                  LoginLockout(db))


def pin_hasher(config: Config) -> PinHasher:
    if config.security.pin_cost == "cheap":
        return PinHasher.cheap(config.pin_pepper)
    return PinHasher(config.pin_pepper)


class SpyService(MultiService):
    """The running product; attributes are exposed for tests, status and the demo."""

    def __init__(self, config: Config, reactor: Any) -> None:
        MultiService.__init__(self)
        self.config = config
        self.reactor = reactor
        self.now: Callable[[], float] = time.time
        self.stores = open_stores(config, background_checkpoints=True)
        self.checkpoints = task.LoopingCall(
            lambda: threads.deferToThreadPool(reactor, reactor.getThreadPool(),
                                              self.stores.db.checkpoint)
            .addErrback(lambda f: log.failure("SQLite checkpoint failed", f)))
        self.checkpoints.clock = reactor
        self.live_map = LiveMap(config.directory, {s.name: config.map_rules for s in config.asterisk})
        # Nothing is known until AMI's first resync: a supervisor who calls before then (AMI
        # unreachable, or refusing our login, since start-up) hears "service unavailable",
        # never an answer made up from an empty map.
        for name in self.live_map.server_names:
            self.live_map.mark_stale(name, self.now())
        self.spies = SpyWatches(self.now)
        # ChanSpy runs on our servers that no authorised attempt of ours explains (another
        # dialplan, the CLI): each is an "unexplained" audit row and an error in the log.
        self.unexplained = UnexplainedSpies(self.stores.audit, self._explains,
                                            self.live_map.channel_agent, self.now,
                                            watched=self.spies.watched,
                                            runner=self.store_runner)
        self.clients: dict[str, AMIClient] = {}
        self._start_metrics()
        self.syncs: dict[str, LiveSync] = {}
        # Our spies running now (for the shutdown's hang-ups) and the records a crashed run
        # left open (reconciled with each server's live channels once its AMI is up).
        self.running_spies = RunningSpies(self.spies.watched, self.now)
        self.spy_shutdown = SpyShutdown(self.running_spies, self.stores.audit, self.clients.get,
                                        reactor, self.now, runner=self.store_runner)
        # Several instances may share the database: each marks its calls with its name, and
        # a restart reconciles only its own crashed run's live calls (reconcile.py).
        self.reconciler = Reconciler(self.stores.audit, self.running_spies,
                                     tuple(s.name for s in config.asterisk), reactor, self.now,
                                     instance=self.stores.audit.instance,
                                     runner=self.store_runner)
        # The settings page's values (AMI logins, feature codes) over the config file's.
        self.settings = SettingsStore(self.stores.db)
        for server in config.asterisk:
            ami = self.ami_settings(server.name)
            client = AMIClient(
                server.name,
                clientFromString(reactor, ami.endpoint),
                AMICredentials(ami.ami_username, ami.ami_secret),
                reactor,
                ping_interval=server.ping_interval,
                ping_timeout=server.ping_timeout,
            )
            sync = LiveSync(self.live_map, server.name, self.now,
                            also=self._spy_events(server.name))
            sync.attach(client)
            client.add_listener(partial(self._unexplained_read, server.name))
            _also_when_down(client, partial(self.spies.link_lost, server.name))
            self._after_login(server.name, client)
            self.clients[server.name] = client
            self.syncs[server.name] = sync
            client.service.setServiceParent(self)
        tokens = TokenStore(self.stores.db)
        crossing = Crossing(config.cross_server, tokens, self.now)
        self.hash_worker = HashPool(reactor, config.pin_pepper, config.security.pin_cost,
                                    timeout=config.security.pin_verify_timeout)
        verify = timed(verify_histogram(self.metrics), time.monotonic, self.hash_worker.verify)
        self.flow = SupervisionFlow(FlowDeps(
            directory=config.directory,
            resolver=self.live_map,
            pin_checker=PinChecker(self.stores.pins, self.stores.lockouts, self.stores.audit,
                                   self.stores.db,
                                   max_in_flight=config.security.max_pin_attempts_in_flight,
                                   runner=self.store_runner),
            audit=self.stores.audit,
            spies=self.spies,
            security=config.security,
            clock=reactor,
            verify_pin=verify,
            notice=(self.play_notice
                    if config.security.notice and config.security.notice_mode == "best_effort"
                    else None),
            required_notice=self.required_notice().play
            if config.security.notice_mode == "required" else None,
            servers=self.live_map.server_names,
            crossing=crossing,
            tokens=tokens,
            hijack=Hijack(self._ami_action, self._ami_listen, self.live_map.bridge_peers),
            store_runner=self.store_runner,
        ))
        # blind_monitor (non_agent_api.php): rings a [[phones]] phone into [fastagi-spy-api].
        self.launcher = MonitorLauncher(
            config.directory, config.phones, config.asterisk, self.live_map, tokens,
            self.stores.audit, self._originate, self.now,
            route=lambda origin, destination: crossing.route(origin, destination) is not None,
            runner=self.store_runner)
        self.agi = FastAGIFactory(
            self.routes(), reactor,
            peers=PeerServers({s.name: s.agi_peers for s in config.asterisk}),
            limits=AGILimits(command_timeout=config.command_timeout,
                             max_sessions=config.max_agi_sessions),
            on_refused=self.audit_refused_call, instance=self.reconciler.instance)
        self.agi_service = StreamServerEndpointService(
            serverFromString(reactor, config.agi_listen), self.agi)
        self.agi_service.setServiceParent(self)
        # People's passwords (the HTTP API, VICIdial's API): checked in the hash workers.
        self.password_checker = PasswordChecker(config.directory, self.stores.passwords,
                                                self.stores.logins, verify,
                                                self.now, runner=self.store_runner)
        throttle = AuthThrottle(config.http.auth_failures, config.http.auth_window, self.now)
        root = make_root(lambda: self.live_map.snapshot(self.now()), self.password_checker,
                         throttle)
        # VICIdial's non_agent_api.php at /non_agent_api.php and /vicidial/non_agent_api.php.
        mount(root, NonAgentApiResource(NonAgentApi(VicidialDeps(
            checker=self.password_checker, agents=LiveAgents(self.live_map, config.directory),
            launcher=self.launcher, stage_type=Stage, refusal=(LaunchRefused,), now=self.now,
            throttle=throttle))))
        # The web page: signed-in people (cookie sessions), /login, /logout, /static/.
        self.web_sessions = WebSessions(config.directory.person, self.now)
        mount_sign_in(root, self.web_sessions, self.password_checker, throttle)
        root.putChild(b"static", static_files())
        # The Live Monitor: /, /live and its event stream /api/stream.
        self.live_hub = LiveHub(self.live_map, self.now, reactor)
        mount_live(root, self.live_hub, self.web_sessions,
                   lambda person: visible_agents(person, config.directory),
                   config.directory, layout.page, config.customer_url)
        self._mount_console(root)
        # /healthz and /readyz: open (no secrets in them), for load balancers and systemd.
        mount_health(root, self.readiness)
        self._mount_metrics(root)
        self._serve_http(root)

    @functools.cached_property
    def store_runner(self) -> StoreRunner:
        """The flow's store calls: inline for SQLite, one worker thread (a child service,
        drained before the database closes) for PostgreSQL."""
        return runner_for(self.stores.db, self.reactor, parent=self)

    def _serve_http(self, root: Resource) -> None:
        self.site = make_site(root, self.config.http, self.reactor)
        self.site.log = self.http_requests.around(self.site.log)  # type: ignore[assignment]
        self.http_service = StreamServerEndpointService(
            serverFromString(self.reactor, self.config.http_listen), self.site)
        self.http_service.setServiceParent(self)

    def _start_metrics(self) -> None:
        """/metrics reads live state at scrape time; the few counters live in web/metrics."""
        self.metrics = CollectorRegistry(auto_describe=False)
        self.link_counters = {s.name: LinkCounters() for s in self.config.asterisk}
        self.route_tracker = RouteTracker(self.metrics, time.monotonic)
        self.http_requests = RequestCounts()

    def _after_login(self, name: str, client: AMIClient) -> None:
        """After each login: counted, resynced (LiveSync's hook), then reconciled; and every
        read counted (one add per read) for /metrics."""
        counters = self.link_counters[name]
        client.on_ready = counters.counting_logins(self._then_reconcile(name, client.on_ready))
        client.add_listener(counters.read)

    def listening(self) -> defer.Deferred[None]:
        """Fires once the FastAGI and HTTP ports are bound (systemd's READY=1 waits for it);
        fails if either could not be."""
        def bound(service: StreamServerEndpointService) -> defer.Deferred[None]:
            done: defer.Deferred[None] = defer.Deferred()

            def passed(result: Any) -> Any:  # pass the port on: stopService needs it
                if isinstance(result, Failure):
                    done.errback(result)
                else:
                    done.callback(None)
                return result

            waiting = service._waitingForPort  # set by startService
            if waiting is None:
                return defer.fail(RuntimeError("listening() before startService()"))
            waiting.addBoth(passed)
            return done

        both = defer.gatherResults([bound(self.agi_service), bound(self.http_service)],
                                   consumeErrors=True)
        return both.addCallback(lambda _: None)

    def readiness(self) -> defer.Deferred[list[str]]:
        """What keeps this instance from serving a supervisor now (empty: ready); the store
        probe goes through the store runner (PostgreSQL: on the store thread)."""
        links = [LinkState(name, client.ready, not self.live_map.server(name).stale)
                 for name, client in self.clients.items()]
        problems = link_problems(links)
        store = store_problem_later(
            lambda: self.store_runner.run(lambda: self.stores.db.execute("SELECT 1").fetchone()),
            self.reactor)
        return store.addCallback(lambda found: problems + found)

    def _mount_metrics(self, root: Resource) -> None:
        """/metrics (loopback clients only): see web/metrics.py for what each figure reads."""
        # The audit's totals: read through the store runner before each scrape (web/metrics).
        counts = AuditFigures(AuditCounts(self.stores.db), self.store_runner.run, self.now)
        live = self.live_map
        self.metrics.register(SpyCollector(Sources(
            links=lambda: [AMILink(name, client.ready, not live.server(name).stale,
                                   self.link_counters[name])
                           for name, client in self.clients.items()],
            map_sizes=lambda: [(name, live.server(name).sizes()) for name in live.server_names],
            running_spies=lambda: [spy.uniqueid for spy in self.running_spies.running()],
            routes=self.route_tracker,
            outcomes=lambda: counts.outcomes,
            pin_results=lambda: counts.pin_results,
            lockouts_active=lambda: counts.lockouts_active,
            hash_queue=lambda: sum(len(lane) for lane in self.hash_worker.lanes.values()),
            agi_sessions=lambda: self.agi.running,
            requests=self.http_requests,
        )))
        root.putChild(b"metrics", MetricsResource(self.metrics, before=counts.refresh))

    def ami_settings(self, name: str) -> AsteriskServer:
        """Server ``name``'s config with the settings page's AMI values over it."""
        server = next(s for s in self.config.asterisk if s.name == name)
        base = ServerAMI(server.ami_host, server.ami_port, server.ami_username,
                         server.ami_secret)
        ami = self.settings.server_ami(name, base)
        return dataclasses.replace(server, ami_host=ami.host, ami_port=ami.port,
                                   ami_username=ami.username, ami_secret=ami.secret)

    def apply_ami_settings(self, name: str) -> defer.Deferred[None]:
        """Reconnect ``name``'s AMI with its saved settings (no restart): read through the
        store runner, reconnected on the reactor."""
        def reconnect(ami: AsteriskServer) -> None:
            self.clients[name].reconfigure(clientFromString(self.reactor, ami.endpoint),
                                           AMICredentials(ami.ami_username, ami.ami_secret))

        return self.store_runner.run(self.ami_settings, name).addCallback(reconnect)

    def _mount_console(self, root: Resource) -> None:
        """The Live Monitor's buttons (/api/spy), settings (/settings) and audit (/audit)."""
        gate, db = self.web_sessions, self.stores.db
        root.children[b"api"].putChild(b"spy", SpyResource(
            gate, self.launcher, self.settings.feature_codes, self.stores.audit, db, self.now,
            runner=self.store_runner))

        def servers() -> list[tuple[str, ServerAMI]]:
            shown = [self.ami_settings(s.name) for s in self.config.asterisk]
            return [(s.name, ServerAMI(s.ami_host, s.ami_port, s.ami_username, s.ami_secret))
                    for s in shown]

        root.putChild(b"settings", SettingsResource(
            gate, self.settings, layout.page, servers, self.apply_ami_settings,
            lambda name: self.clients[name].ready, self.now, runner=self.store_runner))
        root.putChild(b"audit", AuditView(gate, db, self.config.directory, layout.page,
                                          runner=self.store_runner))
        root.putChild(b"audit.csv", AuditCsv(gate, db, self.config.directory,
                                             runner=self.store_runner))

    def routes(self) -> dict[str, Callable[[AGISession], Any]]:
        def spy(mode: Mode) -> Callable[[AGISession], Any]:
            return lambda session: self.flow(session, mode)

        routes: dict[str, Callable[[AGISession], Any]] = {
            "spy/listen": spy(Mode.LISTEN),
            "spy/whisper": spy(Mode.WHISPER),
            "spy/barge": spy(Mode.BARGE),
            "spy/cross": self.flow.crossed,  # sent over a [[cross_server]] trunk
            "spy/api": self.flow.launched,  # a phone rung by blind_monitor
            "echo-test": echo_test,
        }
        # Each call counted by its way in ("listen", "cross", "echo-test"...) for /metrics.
        return {path: self.route_tracker.wrap(path.removeprefix("spy/"), handler)
                for path, handler in routes.items()}

    def audit_refused_call(self, env: AGIEnvironment, why: str) -> None:
        """A call from a configured Asterisk that named a server it may not speak for (or
        none where it must): a closed audit record, before the bundle's error prompt."""
        audit = self.stores.audit
        now = self.now()

        def record() -> None:  # nobody waits for it: handed to the store runner in turn
            opened = audit.open(now, Via.PHONE.value, channel=env.channel,
                                uniqueid=env.uniqueid, device=device_of_channel(env.channel))
            audit.close(opened, now, EndReason.DENIED, f"agi server: {why}"[:200])

        self.store_runner.submit(record)

    def required_notice(self) -> RequiredNotice:
        """notice_mode "required": the notice over this server's AMI links, to the end."""
        async def action(server: str, name: str, headers: list[tuple[str, str]]) -> object:
            return await self.clients[server].call(name, headers)

        def listen(server: str, listener: Callable[[Sequence[AMIMessage]], None]
                   ) -> Callable[[], None]:
            return self.clients[server].add_listener(listener)

        return RequiredNotice(self.config.security.notice, action, listen, self.reactor)

    async def _ami_action(self, server: str, name: str, headers: list[tuple[str, str]]
                          ) -> object:
        return await self.clients[server].call(name, headers)

    def _ami_listen(self, server: str, listener: Callable[[Sequence[Any]], None]
                    ) -> Callable[[], None]:
        return self.clients[server].add_listener(listener)

    async def _originate(self, server: str, headers: list[tuple[str, str]]) -> object:
        return await self.clients[server].call("Originate", headers)

    def _explains(self, server: str, spyer: str, spyee: str, at: float, notice: bool) -> bool:
        return explains_spy(self.stores.db, server, spyer, spyee, at, notice=notice)

    def _unexplained_read(self, server: str, messages: Sequence[AMIMessage]) -> None:
        for message in messages:
            if message.event in _CHANSPY_EVENTS:
                self.unexplained.feed(server, message)

    async def play_notice(self, server: str, channel: str) -> None:
        """Barge a short sound into the monitored call (ChanSpy's own beep reaches only the spy)."""
        client = self.clients[server]
        await client.call("Originate", [
            ("Channel", "Local/notice@fastagi-spy-notice/n"),
            ("Application", "ChanSpy"),
            ("Data", chanspy_argument(channel, Mode.BARGE)),
            ("Variable", f"FASTAGI_SPY_NOTICE={self.config.security.notice}"),
            ("Async", "true"),
        ])

    def _spy_events(self, server: str) -> Callable[[AMIMessage], None]:
        def feed(message: AMIMessage) -> None:
            # Running spies first: on a ChanSpyStop the shutdown closes its record with the
            # stop time before the flow (woken by the watch) can close it without one.
            try:
                self.running_spies.feed(server, message)
            finally:
                self.spies.feed(message)

        return feed

    def _then_reconcile(self, server: str, on_ready: Any) -> Callable[[AMIClient], Any]:
        """After each resync of ``server``: the records a crashed run left open there (once,
        in the background: service does not wait for it)."""
        def ready(client: AMIClient) -> defer.Deferred[None]:
            def reconcile(_: object) -> None:
                self.reconciler.server_up(server, client)  # not awaited: it logs its failures

            synced: defer.Deferred[None] = defer.maybeDeferred(on_ready, client)
            return synced.addCallback(reconcile)

        return ready

    def startService(self) -> None:
        if not bound_io_per_iteration(self.reactor):
            log.info("Reactor is not epoll based: I/O per iteration left unbounded")
        self.hash_worker.start().addErrback(_hash_worker_not_started)
        self.checkpoints.start(CHECKPOINT_EVERY, now=False)
        freeze_startup_garbage()
        left = self.reconciler.begin()  # before any call of this run opens a record
        if left:
            log.warn("{count} audit records left open by a previous run: each is reconciled "
                     "with its server's live channels once that server's AMI is up", count=left)
        MultiService.startService(self)

    def stopService(self) -> defer.Deferred[None]:
        async def stop() -> None:
            # Stop accepting first, then let calls in progress finish (up to the limit).
            await self.agi_service.stopService()
            # Spies end before the calls drain and while AMI is still up: hung up, their
            # records closed server_shutdown (bounded; what failed is logged).
            await self.spy_shutdown.stop_all()
            await self.agi.drain(self.config.drain_timeout)
            await defer.maybeDeferred(super(SpyService, self).stopService)
            self.hash_worker.stop()
            if self.checkpoints.running:
                self.checkpoints.stop()
            self.stores.db.checkpoint()
            self.stores.db.close()

        return defer.ensureDeferred(stop())


def _also_when_down(client: AMIClient, then: Callable[[], None]) -> None:
    """Chain ``then`` after the client's existing link-down hook (the live map's)."""
    first = client.on_down

    def down(c: AMIClient) -> None:
        if first is not None:
            first(c)
        then()

    client.on_down = down


def _hash_worker_not_started(failure: Failure) -> None:
    # Stopped before it was ready (the server stopping as it starts): not a failure.
    if not failure.check(HashWorkerStopped):
        log.failure("PIN hash worker did not start; retrying with backoff", failure)


def freeze_startup_garbage() -> None:
    """Move everything built at start-up (config, directory, the live map's first state) out
    of the collector's sight: a full collection over a large map otherwise pauses the reactor
    for tens of milliseconds, long enough to miss AMI deadlines."""
    gc.collect()
    gc.freeze()


def make_service(config: Config, reactor: Any) -> SpyService:
    return SpyService(config, reactor)
