"""The PIN lockout under concurrency and attack, driven through the real supervision flow.

A scripted phone line stands in for Asterisk (it keeps typed keys buffered across prompts as
a channel does); PIN verifications are Deferreds the tests answer, in any order, or a real
HashPool over fake worker processes on a task.Clock. No timed assertions.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer, task
from twisted.internet.error import ProcessTerminated
from twisted.logger import Logger
from twisted.python.failure import Failure

from fastagi_spy.config import SecurityRules
from fastagi_spy.domain import AgentEntry, Directory, Mode, SupervisorEntry
from fastagi_spy.net.hashworker import HashPool, HashWorkerTimeout
from fastagi_spy.store.audit import AuditLog, AuditRecord
from fastagi_spy.store.database import Database
from fastagi_spy.store.lockout import (
    LockoutPolicy,
    LockoutStore,
    device_key,
    pair_key,
    supervisor_key,
)
from fastagi_spy.store.pins import PinHasher, PinStore
from fastagi_spy.supervise.flow import FlowDeps, Prompts, SupervisionFlow
from fastagi_spy.supervise.pincheck import PinChecker
from fastagi_spy.supervise.spywatch import SpyWatches
from fastagi_spy.wire.agi import AGIEnvironment, AGIReply

PEPPER = b"unit-test-pepper-0123456789"
HASHER = PinHasher.cheap(PEPPER)
T0 = 1_700_000_000.0
SUPERVISOR, PIN, OWN_PHONE = "2001", "1234", "PJSIP/2001"
DIRECTORY = Directory(
    (AgentEntry("1001", "Ann", "sales", ("PJSIP/1001",)),),
    (SupervisorEntry(SUPERVISOR, "Sam", frozenset({"sales"}), frozenset({Mode.LISTEN}),
                     (OWN_PHONE,)),),
    frozenset(),
)
REPLY = AGIReply(200, "0", None, None, "200 result=0")


class ScriptedLine:
    """A phone on a FastAGI call. `script` is what the caller types at each GET DATA prompt
    (nothing once it runs out: silence); typed keys stay buffered until read, as on a real
    channel, and GET DATA reads up to `max_digits` or the first '#'."""

    def __init__(self, device: str, script: list[str], n: int = 0) -> None:
        self.env = AGIEnvironment((("agi_channel", f"{device}-{n:08x}"),
                                   ("agi_uniqueid", f"{T0}.{n}"),
                                   ("agi_network_script", "spy/listen")))
        self.hung_up = False
        self.script = deque(script)
        self.keys = ""
        self.heard: list[str] = []  # every prompt, "ask:<sound>" or "say:<sound>"

    async def answer(self) -> AGIReply:
        return REPLY

    async def get_data(self, prompt: str, timeout_ms: int, max_digits: int) -> str | None:
        self.heard.append(f"ask:{prompt}")
        if not self.keys and self.script:
            self.keys = self.script.popleft()
        entry = ""
        while self.keys and len(entry) < max_digits:
            key, self.keys = self.keys[0], self.keys[1:]
            if key == "#":
                break
            entry += key
        return entry

    async def stream_file(self, name: str) -> AGIReply:
        self.heard.append(f"say:{name}")
        return REPLY

    async def say_digits(self, digits: str, escape: str) -> str | None:
        return None

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        return None

    async def set_variable(self, name: str, value: str) -> AGIReply:
        return REPLY

    async def get_variable(self, name: str) -> str | None:
        return None

    async def exec(self, app: str, data: str, timeout: float | None = None) -> AGIReply:
        raise AssertionError(f"no spy expected here: {app} {data}")


@dataclass
class NoTargets:
    """Nobody is on a call: the flow never gets as far as a spy."""

    def resolve(self, target: str, server: str | None = None) -> Any:
        raise AssertionError("the tests type no target")

    def on_call_agents(self, server: str) -> list[tuple[str, float]]:
        return []


@dataclass
class HeldVerifies:
    """verify_pin as Deferreds the test answers itself, in whatever order it likes."""

    calls: list[tuple[str, str, str, str | None, defer.Deferred[bool]]] = field(default_factory=list)

    def __call__(self, device: str, supervisor: str, pin: str,
                 stored_hash: str | None) -> defer.Deferred[bool]:
        d: defer.Deferred[bool] = defer.Deferred()
        self.calls.append((device, supervisor, pin, stored_hash, d))
        return d

    def answer(self, index: int) -> None:
        """Answer as the real hasher would."""
        _device, supervisor, pin, stored, d = self.calls[index]
        d.callback(HASHER.verify(supervisor, pin, stored))


def instant_verify(device: str, supervisor: str, pin: str,
                   stored_hash: str | None) -> defer.Deferred[bool]:
    return defer.succeed(HASHER.verify(supervisor, pin, stored_hash))


@dataclass
class Site:
    db: Database
    audit: AuditLog
    lockouts: LockoutStore
    checker: PinChecker
    clock: task.Clock
    alerts: list[dict[str, Any]]

    def flow(self, verify: Callable[..., Any], **security: Any) -> SupervisionFlow:
        rules = SecurityRules(**{"lockout_failures": 3, **security})
        return SupervisionFlow(FlowDeps(
            directory=DIRECTORY, resolver=NoTargets(), pin_checker=self.checker,
            audit=self.audit, spies=SpyWatches(self.clock.seconds), security=rules,
            clock=self.clock, verify_pin=verify))

    def records(self) -> list[AuditRecord]:
        return list(reversed(self.audit.list(limit=500)))

    def failures(self, key: str) -> int:
        (count,) = self.db.execute("SELECT COUNT(*) FROM auth_failures WHERE key = ?",
                                   (key,)).fetchone()
        return int(count)


def make_site(tmp_path: Path, max_failures: int = 3, supervisor_max_failures: int = 50,
              max_in_flight: int = 2) -> Site:
    db = Database(tmp_path / "pins.sqlite3")
    PinStore(db).set_hash(SUPERVISOR, HASHER.hash_pin(SUPERVISOR, PIN), T0)
    lockouts = LockoutStore(db, LockoutPolicy(max_failures, 900.0, 900.0,
                                              supervisor_max_failures=supervisor_max_failures))
    audit = AuditLog(db)
    checker = PinChecker(PinStore(db), lockouts, audit, db, max_in_flight=max_in_flight)
    alerts: list[dict[str, Any]] = []
    checker.log = Logger(observer=alerts.append)
    clock = task.Clock()
    clock.advance(T0)
    return Site(db, audit, lockouts, checker, clock, alerts)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return make_site(tmp_path)


def call(site: Site, flow: SupervisionFlow, line: ScriptedLine) -> defer.Deferred[None]:
    return defer.ensureDeferred(flow(line, Mode.LISTEN))


def granted(line: ScriptedLine) -> bool:
    """Past the PIN: the caller was asked for a target."""
    return f"ask:{Prompts.TARGET}" in line.heard


# -- the lock decision is atomic ---------------------------------------------------------


def test_simultaneous_calls_get_no_more_guesses_than_the_threshold(tmp_path: Path) -> None:
    """Ten phones type a PIN for supervisor 2001 at once (nine wrong, the last one right);
    the supervisor number allows 4 failures (the in-flight cap is set out of the way). All
    ten hashes are pending when the answers come back, last call first: only the first 4
    attempts were counted as guesses, so the right PIN (the 10th guess) is refused like the
    others, never granted."""
    site = make_site(tmp_path, supervisor_max_failures=4, max_in_flight=100)
    verifies = HeldVerifies()
    flow = site.flow(verifies, pin_tries_per_call=1)
    lines = [ScriptedLine(f"PJSIP/30{i:02d}", [SUPERVISOR, PIN if i == 9 else f"99{i:02d}"], i)
             for i in range(10)]
    done = [call(site, flow, line) for line in lines]
    assert len(verifies.calls) == 10  # every hash is computed: the same time for everyone
    for index in reversed(range(10)):
        verifies.answer(index)
    for d in done:
        assert d.called
    assert not any(granted(line) for line in lines)
    results = [r.auth_result for r in site.records() if r.device and r.channel]
    assert results.count("ok") == 0
    assert results.count("bad_pin") + results.count("locked_out") == 10
    assert results.count("bad_pin") <= 4
    # Exactly 4 guesses were counted against the number, and they locked it (other phones).
    assert site.failures(supervisor_key(SUPERVISOR)) == 4
    assert site.lockouts.is_locked([supervisor_key(SUPERVISOR)], site.clock.seconds())


def test_a_right_pin_is_refused_when_a_failure_locked_the_key_meanwhile(site: Site) -> None:
    """Two calls from one phone are in flight (threshold 3, one failure already on record):
    the wrong one answers first and locks the phone; the right one, answering after, is
    checked against the lock again and refused."""
    flow = site.flow(instant_verify, pin_tries_per_call=1)
    first = ScriptedLine(OWN_PHONE, ["0000"], 1)
    call(site, flow, first)
    held = HeldVerifies()
    flow = site.flow(held, pin_tries_per_call=1)
    wrong, right = ScriptedLine(OWN_PHONE, ["1111"], 2), ScriptedLine(OWN_PHONE, [PIN], 3)
    call(site, flow, wrong)
    call(site, flow, right)
    held.answer(0)  # the wrong PIN: third failure, the phone is locked
    held.answer(1)  # the right PIN, hashed while the lock was being set
    assert not granted(right)
    assert site.records()[-1].auth_result == "locked_out"
    assert site.lockouts.is_locked([device_key(OWN_PHONE)], site.clock.seconds())


def test_attempts_in_flight_are_capped_per_device_and_per_supervisor(tmp_path: Path) -> None:
    """At most 2 attempts in flight per device and per supervisor number from other phones;
    the third is refused even with the right PIN. The supervisor's own phone is not held up
    by attempts for their number from elsewhere."""
    site = make_site(tmp_path, max_failures=10, supervisor_max_failures=100)
    held = HeldVerifies()
    flow = site.flow(held, pin_tries_per_call=1)
    # One phone, three calls at once.
    same = [ScriptedLine("PJSIP/3000", [SUPERVISOR, PIN], n) for n in range(3)]
    for line in same:
        call(site, flow, line)
    for index in range(3):
        held.answer(index)
    assert [granted(line) for line in same] == [True, True, False]
    # Three other phones at once for the same number, then the supervisor's own phone.
    held.calls.clear()
    others = [ScriptedLine(f"PJSIP/31{n}", [SUPERVISOR, PIN], 10 + n) for n in range(3)]
    own = ScriptedLine(OWN_PHONE, [PIN], 20)
    for line in [*others, own]:
        call(site, flow, line)
    for index in range(4):
        held.answer(index)
    assert [granted(line) for line in others] == [True, True, False]
    assert granted(own)


# -- scope: nobody locks a supervisor out of their own phone ---------------------------------


def test_bad_pins_from_another_phone_lock_that_phone_not_the_supervisors_own(site: Site) -> None:
    """Phone 3000 guesses supervisor 2001's PIN until it is locked; 2001 still gets in from
    their own phone with the right PIN, while 3000 is refused even with it."""
    flow = site.flow(instant_verify)
    attacker = ScriptedLine("PJSIP/3000", [SUPERVISOR, "1111", SUPERVISOR, "2222",
                                           SUPERVISOR, "3333"], 1)
    call(site, flow, attacker)
    assert site.lockouts.is_locked([device_key("PJSIP/3000")], site.clock.seconds())
    assert site.lockouts.is_locked([pair_key("PJSIP/3000", SUPERVISOR)], site.clock.seconds())
    again = ScriptedLine("PJSIP/3000", [SUPERVISOR, PIN], 2)
    call(site, flow, again)
    assert not granted(again)
    own = ScriptedLine(OWN_PHONE, [PIN], 3)
    call(site, flow, own)
    assert granted(own)


def test_many_phones_against_one_supervisor_raise_an_alert_not_a_lock_on_their_phone(
        tmp_path: Path) -> None:
    """Guesses for 2001 from five phones reach the supervisor-number threshold (5): an
    error-level log and a closed audit row raise the alert; other phones are refused for
    that number from then on, and 2001's own phone still works."""
    site = make_site(tmp_path, supervisor_max_failures=5)
    flow = site.flow(instant_verify, pin_tries_per_call=1)
    for n in range(5):
        call(site, flow, ScriptedLine(f"PJSIP/40{n}", [SUPERVISOR, f"77{n}7"], n))
    errors = [e for e in site.alerts if e["log_level"].name == "error"]
    assert len(errors) == 1 and SUPERVISOR in errors[0]["text"]
    alert = [r for r in site.records() if r.detail and r.detail.startswith("alert:")]
    assert len(alert) == 1
    assert alert[0].supervisor == SUPERVISOR and alert[0].device == "PJSIP/404"
    assert alert[0].ended_at is not None and alert[0].end_reason == "locked_out"
    fresh = ScriptedLine("PJSIP/4099", [SUPERVISOR, PIN], 10)
    call(site, flow, fresh)
    assert not granted(fresh)
    own = ScriptedLine(OWN_PHONE, [PIN], 11)
    call(site, flow, own)
    assert granted(own)


# -- a locked caller sounds like a wrong PIN ---------------------------------------------------


def test_a_locked_caller_hears_exactly_what_a_wrong_pin_hears(tmp_path: Path) -> None:
    """From a locked phone, the right PIN then a wrong one: the same prompts, the same
    re-prompt and as many hashes as two wrong PINs from a phone that is not locked."""
    heard = []
    for name, script in (("locked", [PIN, "4444"]), ("unlocked", ["5555", "6666"])):
        site = make_site(tmp_path / name)
        hashed: list[str] = []

        def verify(device: str, supervisor: str, pin: str, stored_hash: str | None,
                   hashed: list[str] = hashed) -> defer.Deferred[bool]:
            hashed.append(pin)
            return instant_verify(device, supervisor, pin, stored_hash)

        flow = site.flow(verify, pin_tries_per_call=2)
        if name == "locked":
            call(site, flow, ScriptedLine(OWN_PHONE, ["1111", "2222"], 1))
            call(site, flow, ScriptedLine(OWN_PHONE, ["3333"], 2))  # the third failure locks
            assert site.lockouts.is_locked([device_key(OWN_PHONE)], site.clock.seconds())
            hashed.clear()
        line = ScriptedLine(OWN_PHONE, script, 3)
        call(site, flow, line)
        assert hashed == script  # each typed PIN is hashed, locked or not
        heard.append(line.heard)
        assert site.records()[-1].end_reason == ("locked_out" if name == "locked" else "bad_pin")
    assert heard[0] == heard[1] == [
        f"ask:{Prompts.PIN}", f"say:{Prompts.LOGIN_INCORRECT}",
        f"ask:{Prompts.PIN}", f"say:{Prompts.LOGIN_INCORRECT}", f"say:{Prompts.GOODBYE}"]


# -- what is a try -------------------------------------------------------------------------


@pytest.mark.parametrize("nothing", ["", "#"])
def test_silence_or_hash_alone_at_the_pin_prompt_is_not_a_wrong_pin(
        site: Site, nothing: str) -> None:
    """The supervisor dials from their own phone and types nothing (or '#') three times: the
    prompt is repeated, then goodbye; nothing is counted, nothing is locked, no hash is
    asked for. Then the right PIN works at once."""
    verifies = HeldVerifies()
    flow = site.flow(verifies, pin_tries_per_call=1)
    quiet = ScriptedLine(OWN_PHONE, [nothing] * 5, 1)
    call(site, flow, quiet)
    assert quiet.heard == [f"ask:{Prompts.PIN}"] * 3 + [f"say:{Prompts.GOODBYE}"]
    assert verifies.calls == []
    record = site.records()[-1]
    assert record.auth_result == "no_input" and record.end_reason == "abandoned"
    assert site.failures(device_key(OWN_PHONE)) == 0
    assert not site.lockouts.is_locked([device_key(OWN_PHONE),
                                        pair_key(OWN_PHONE, SUPERVISOR)], site.clock.seconds())
    flow = site.flow(instant_verify, pin_tries_per_call=1)
    after = ScriptedLine(OWN_PHONE, [PIN], 2)
    call(site, flow, after)
    assert granted(after)


def test_silence_between_tries_is_re_prompted_without_using_a_try(site: Site) -> None:
    """Silence, a wrong PIN, '#', then the right PIN with one... two tries per call: granted."""
    flow = site.flow(instant_verify, pin_tries_per_call=2)
    line = ScriptedLine(OWN_PHONE, ["", "9999", "#", PIN], 1)
    call(site, flow, line)
    assert granted(line)


def test_an_entry_longer_than_any_pin_is_one_wrong_try(site: Site) -> None:
    """30 digits at the PIN prompt are one wrong try, not three 12-digit ones: the right PIN
    typed next still gets in; one failure per key was on record before it."""
    flow = site.flow(instant_verify)
    line = ScriptedLine(OWN_PHONE, ["1" * 30 + "#", PIN], 1)
    call(site, flow, line)
    assert line.heard.count(f"say:{Prompts.LOGIN_INCORRECT}") == 1
    assert granted(line)
    assert site.records()[0].auth_result == "ok"


def test_a_flood_of_digits_is_one_try_and_ends_the_call(site: Site) -> None:
    """200 digits are one counted try; the call ends rather than read the rest as more."""
    flow = site.flow(instant_verify)
    line = ScriptedLine(OWN_PHONE, ["5" * 200 + "#", PIN], 1)
    call(site, flow, line)
    assert not granted(line)
    assert line.heard[-2:] == [f"say:{Prompts.LOGIN_INCORRECT}", f"say:{Prompts.GOODBYE}"]
    assert site.failures(device_key(OWN_PHONE)) == 1
    assert site.records()[-1].end_reason == "bad_pin"


# -- the hash workers: timeout and fairness --------------------------------------------------


class FakeWorkerProcess:
    """A spawned worker: records what it is sent; answers only when the test says so."""

    def __init__(self, protocol: Any, argv: list[str], path: str | None) -> None:
        self.protocol, self.argv, self.path = protocol, argv, path
        self.lines: list[dict[str, Any]] = []
        self.signals: list[str] = []
        self.replied = 0
        self.pid = 4242

    def write(self, data: bytes) -> None:
        self.lines += [json.loads(line) for line in data.splitlines() if line]

    def closeStdin(self) -> None:
        self.end()

    def signalProcess(self, signal: str) -> None:
        self.signals.append(signal)
        self.end()

    def end(self) -> None:
        self.protocol.processEnded(Failure(ProcessTerminated(signal=9)))

    def ready(self) -> None:
        self.protocol.outReceived(b'{"ready": true}\n')

    def requests(self) -> list[dict[str, Any]]:
        return [line for line in self.lines if "id" in line]

    def reply(self, ok: bool) -> None:
        """Answer the oldest request not answered yet."""
        request = self.requests()[self.replied]
        self.replied += 1
        self.protocol.outReceived(json.dumps({"id": request["id"], "ok": ok}).encode() + b"\n")


class ProcessClock(task.Clock):
    def __init__(self) -> None:
        super().__init__()
        self.processes: list[FakeWorkerProcess] = []

    def spawnProcess(self, protocol: Any, executable: str, args: list[str],
                     env: dict[str, str] | None = None, path: str | None = None) -> Any:
        process = FakeWorkerProcess(protocol, args, path)
        protocol.makeConnection(process)
        self.processes.append(process)
        return process


def test_a_pin_check_that_does_not_answer_in_time_is_service_unavailable(site: Site) -> None:
    """The worker never answers: after pin_verify_timeout the caller hears 'all circuits
    busy' and goodbye, the record is closed as service_unavailable, the attempt is not
    counted, and the stuck worker (started as `python -I` in /) is killed and restarted."""
    clock = ProcessClock()
    pool = HashPool(clock, PEPPER, "cheap", timeout=5.0, size=1)
    pool.start()
    worker = clock.processes[0]
    assert worker.argv[1] == "-I" and worker.path == "/"
    worker.ready()
    flow = site.flow(pool.verify)
    line = ScriptedLine(OWN_PHONE, [PIN], 1)
    done = call(site, flow, line)
    assert len(worker.requests()) == 1 and not done.called
    clock.advance(4.9)
    assert not done.called
    clock.advance(0.2)
    assert done.called
    assert line.heard[-2:] == [f"say:{Prompts.UNAVAILABLE}", f"say:{Prompts.GOODBYE}"]
    record = site.records()[-1]
    assert record.ended_at is not None and record.end_reason == "service_unavailable"
    assert site.failures(device_key(OWN_PHONE)) == 0
    assert worker.signals == ["KILL"]
    clock.advance(0)  # the restart is scheduled at once for a worker that had been ready
    assert len(clock.processes) == 2
    restarted = clock.processes[1]
    restarted.ready()
    answered: list[bool] = []
    pool.verify(OWN_PHONE, SUPERVISOR, PIN, None).addCallback(answered.append)
    restarted.reply(True)
    assert answered == [True]
    pool.stop()


def test_a_request_that_timed_out_in_the_queue_kills_no_worker() -> None:
    """No worker is ready (it is still starting): queued checks fail after the timeout with
    HashWorkerTimeout, and the starting worker is left alone."""
    clock = ProcessClock()
    pool = HashPool(clock, PEPPER, "cheap", timeout=5.0, size=1)
    pool.start()
    failures: list[Failure] = []
    for device in ("PJSIP/1", "PJSIP/2"):
        pool.verify(device, "9001", "1111", None).addErrback(failures.append)
    clock.advance(5.0)
    assert [f.check(HashWorkerTimeout) for f in failures] == [HashWorkerTimeout] * 2
    assert clock.processes[0].signals == [] and pool.lanes == {}
    pool.stop()


def test_one_device_flooding_does_not_delay_another(tmp_path: Path) -> None:
    """With one worker busy, phone A queues 20 verifications, then phone B queues one and
    phone C one: B and C are each served after at most one more of A's, round-robin."""
    clock = ProcessClock()
    pool = HashPool(clock, PEPPER, "cheap", timeout=60.0, size=1)
    pool.start()
    worker = clock.processes[0]
    worker.ready()
    for n in range(20):
        pool.verify("PJSIP/A", "9001", f"{n:04d}", None)
    pool.verify("PJSIP/B", "9002", "b000", None)
    pool.verify("PJSIP/C", "9003", "c000", None)
    for _ in range(6):
        worker.reply(False)
    order = [request["p"] for request in worker.requests()]
    assert order[:6] == ["0000", "0001", "b000", "c000", "0002", "0003"]
    pool.stop()


def test_the_pool_is_sized_to_the_cores() -> None:
    import os

    pool = HashPool(ProcessClock(), PEPPER, "cheap", timeout=5.0)
    assert len(pool.workers) == len(os.sched_getaffinity(0))


def test_timeout_failure_type_is_a_pin_check_unavailable() -> None:
    from fastagi_spy.supervise.pincheck import PinCheckUnavailable

    assert issubclass(HashWorkerTimeout, PinCheckUnavailable)


# -- the store underneath ----------------------------------------------------------------------


def test_admission_counts_attempts_in_flight_and_a_refund_gives_the_slot_back(site: Site) -> None:
    """Threshold 3: three attempts are admitted before any answers, the fourth is refused;
    refunding one (its hash never answered) lets the next one in."""
    keys = [device_key("PJSIP/9"), pair_key("PJSIP/9", SUPERVISOR)]
    now = site.clock.seconds()
    admitted = [site.lockouts.admit(keys, now) for _ in range(4)]
    assert [a.admitted for a in admitted] == [True, True, True, False]
    site.lockouts.refund(admitted[0].rows)
    assert site.lockouts.admit(keys, now).admitted


def test_unlocking_a_supervisor_or_a_device_unlocks_their_pairs(site: Site) -> None:
    """`fastagi-spy unlock --supervisor 2001` (or --device) also lifts the pair locks."""
    now = site.clock.seconds()
    for device in ("PJSIP/7", "Local/8@phones"):
        keys = [device_key(device), pair_key(device, SUPERVISOR)]
        for _ in range(3):
            site.lockouts.record_failure(keys, now)
    assert site.lockouts.unlock(supervisor_key(SUPERVISOR))
    assert site.lockouts.is_locked([pair_key("PJSIP/7", SUPERVISOR),
                                    pair_key("Local/8@phones", SUPERVISOR)], now) is None
    assert site.lockouts.is_locked([device_key("PJSIP/7")], now) is not None
    for _ in range(3):
        site.lockouts.record_failure([pair_key("Local/8@phones", SUPERVISOR)], now)
    assert site.lockouts.unlock(device_key("Local/8@phones"))
    assert site.lockouts.is_locked([pair_key("Local/8@phones", SUPERVISOR),
                                    device_key("Local/8@phones")], now) is None


# -- configuration -----------------------------------------------------------------------------


def _security(table: str) -> SecurityRules:
    import tomllib

    from fastagi_spy.config import parse

    raw = tomllib.loads('[server]\npin_pepper = "a-long-enough-pepper-0123"\n'
                        '[[asterisk]]\nname = "pbx1"\nami_username = "u"\nami_secret = "s3cret"\n'
                        f'[security]\n{table}')
    return parse(raw).security


def test_the_lockout_keys_have_defaults_and_are_checked() -> None:
    from fastagi_spy.config import ConfigError

    rules = _security("")
    assert (rules.supervisor_lockout_failures, rules.max_pin_attempts_in_flight,
            rules.pin_verify_timeout) == (50, 2, 5.0)
    assert _security("lockout_failures = 80\n").supervisor_lockout_failures == 80
    for table, key in (("supervisor_lockout_failures = 2\n", "supervisor_lockout_failures"),
                       ("max_pin_attempts_in_flight = 0\n", "max_pin_attempts_in_flight"),
                       ("pin_verify_timeout = 0.1\n", "pin_verify_timeout")):
        with pytest.raises(ConfigError, match=f"security.{key}"):
            _security(table)
