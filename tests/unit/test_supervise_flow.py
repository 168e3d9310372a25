"""The feature-code flow driven through a scripted AGI line: rights before status, and choosing
an agent by ear (``0`` at the target prompt)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import task
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.python.failure import Failure

from fastagi_spy.config import SecurityRules
from fastagi_spy.domain import AgentEntry, Directory, Mode, SupervisorEntry
from fastagi_spy.model import LiveMap
from fastagi_spy.model.resolve import Resolution
from fastagi_spy.store.audit import AuditLog, AuditRecord
from fastagi_spy.store.database import Database
from fastagi_spy.store.lockout import LockoutPolicy, LockoutStore
from fastagi_spy.store.pins import PinHasher, PinStore
from fastagi_spy.store.runner import InlineRunner, StoreRunner
from fastagi_spy.supervise import picker
from fastagi_spy.supervise.flow import STOP_GRACE, FlowDeps, Prompts, SupervisionFlow
from fastagi_spy.supervise.line import LineGone
from fastagi_spy.supervise.pincheck import PinChecker, PinCheckUnavailable
from fastagi_spy.supervise.spywatch import SpyWatches
from fastagi_spy.wire.agi import AGIEnvironment, AGIReply
from tests.unit.model_events import Ev, Sim, config, incoming_trunk

T0 = 1_732_156_800.0
PIN = "1234"
BLUE = ("10", "100")  # another team
NEVER = "1003"  # red, but never to be spied on
AGENTS = (
    AgentEntry("1001", "Alice", "red", ("PJSIP/1001",)),
    AgentEntry("1002", "Bob", "red", ("PJSIP/1002",)),
    AgentEntry("1003", "Chief", "red", ("PJSIP/1003",)),
    AgentEntry("10", "Ten", "blue", ("PJSIP/10",)),
    AgentEntry("100", "Hundred", "blue", ("PJSIP/100",)),
)
SUPERVISOR = SupervisorEntry("2001", "Sue", frozenset({"red"}), frozenset(Mode), ("PJSIP/2001",))
LISTENER = SupervisorEntry("2002", "Lou", frozenset({"red"}), frozenset({Mode.LISTEN}),
                           ("PJSIP/2002",))
DIRECTORY = Directory(AGENTS, (SUPERVISOR, LISTENER), frozenset({NEVER}))


def talking(number: str, session: str | None = None) -> Resolution:
    return Resolution(True, "ok", "pbx", number, session, f"PJSIP/{number}-0000000a", "1.10")


def idle(number: str, session: str | None = None) -> Resolution:
    return Resolution.refuse("not_on_call", "pbx", number, session)


def logged_out(number: str) -> Resolution:
    return Resolution.refuse("not_logged_in", "pbx", number)


class FakeResolver:
    """Canned answers, shaped as LiveMap gives them."""

    def __init__(self, answers: dict[str, Resolution],
                 on_call: Sequence[tuple[str, float]] = ()) -> None:
        self.answers = answers
        self.on_call = list(on_call)
        self.asked: list[str] = []

    def resolve(self, target: str, server: str | None = None) -> Resolution:
        self.asked.append(target)
        return self.answers.get(target, Resolution.refuse("not_found"))

    def on_call_agents(self, server: str) -> list[tuple[str, float]]:
        return list(self.on_call)


class ScriptedLine:
    """A supervisor's call: each input command takes the next scripted (command, answer);
    when the script runs out the supervisor hangs up. Every command is kept in ``sent``."""

    def __init__(self, script: Iterable[tuple[str, str | None]], device: str = "PJSIP/2001") -> None:
        self.env = AGIEnvironment((("agi_channel", f"{device}-00000001"),
                                   ("agi_uniqueid", "1732156800.1")))
        self.hung_up = False
        self.script = list(script)
        self.sent: list[str] = []

    def _reply(self) -> AGIReply:
        return AGIReply(200, "0", None, None, "200 result=0")

    def _input(self, command: str) -> str | None:
        self.sent.append(command)
        if not self.script:
            self.hung_up = True
            raise LineGone("the supervisor hung up")
        expected, answer = self.script.pop(0)
        assert command == expected, (command, expected)
        return answer

    async def answer(self) -> AGIReply:
        return self._reply()

    async def get_data(self, prompt: str, timeout_ms: int, max_digits: int) -> str | None:
        return self._input(f"GET DATA {prompt}") or ""

    async def say_digits(self, digits: str, escape: str) -> str | None:
        assert escape == "#0*"
        return self._input(f"SAY DIGITS {digits}")

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        assert 0 < timeout_ms <= 5000  # a short wait, not a whole prompt's
        return self._input("WAIT FOR DIGIT")

    async def stream_file(self, name: str) -> AGIReply:
        self.sent.append(f"STREAM FILE {name}")
        return self._reply()

    async def set_variable(self, name: str, value: str) -> AGIReply:
        return self._reply()

    async def get_variable(self, name: str) -> str | None:
        return None

    async def exec(self, app: str, data: str, timeout: float | None = None) -> AGIReply:
        self.sent.append(f"EXEC {app} {data}")
        return self._reply()


class Site:
    def __init__(self, tmp_path: Path, resolver: object, *, security: SecurityRules | None = None,
                 servers: tuple[str, ...] = ("pbx",), policy: LockoutPolicy | None = None,
                 verify: Callable[..., Awaitable[bool]] | None = None,
                 runner: StoreRunner | None = None,
                 wrap: Callable[[Any], Any] = lambda store: store) -> None:
        """``runner``: where the flow's store calls run (inline by default); ``wrap``: what
        the flow sees of each store (the test's own reads go to the store itself)."""
        db = Database(tmp_path / "audit.sqlite3")
        self.db = db
        hasher = PinHasher.cheap(b"unit-test-pepper-0123456789abcdef")
        pins = PinStore(db)
        for supervisor in (SUPERVISOR, LISTENER):
            pins.set_hash(supervisor.number, hasher.hash_pin(supervisor.number, PIN), T0)
        self.audit = AuditLog(db)

        async def check(*args: str | None) -> bool:
            supervisor, pin, stored = args[-3:]  # (device,) supervisor, pin, stored hash
            return hasher.verify(supervisor or "", pin or "", stored)

        self.clock = task.Clock()
        self.clock.advance(T0)
        self.spies = SpyWatches(self.clock.seconds)
        runner = runner if runner is not None else InlineRunner()
        self.flow = SupervisionFlow(FlowDeps(
            directory=DIRECTORY, resolver=resolver,  # type: ignore[arg-type]
            pin_checker=PinChecker(pins=wrap(pins),
                                   lockouts=wrap(LockoutStore(db, policy or LockoutPolicy())),
                                   audit=wrap(self.audit), db=wrap(db), runner=runner),
            audit=wrap(self.audit), spies=self.spies, security=security or SecurityRules(),
            clock=self.clock, verify_pin=verify or check, servers=servers,
            store_runner=runner))

    def call(self, line: ScriptedLine, mode: Mode = Mode.LISTEN) -> None:
        done: Deferred[None] = ensureDeferred(self.flow(line, mode))
        failures: list[object] = []
        done.addErrback(failures.append)
        assert done.called and not failures, failures

    def records(self) -> list[AuditRecord]:
        """Every record, oldest first."""
        return list(reversed(self.audit.list(limit=100)))


def prompts_after_target(line: ScriptedLine, target: str) -> list[str]:
    """What the supervisor heard between typing ``target`` and the next target prompt."""
    sent = line.sent
    start = sent.index(f"GET DATA {Prompts.TARGET}",
                       next(i for i, c in enumerate(sent) if c == f"GET DATA {Prompts.PIN}"))
    end = sent.index(f"GET DATA {Prompts.TARGET}", start + 1)
    return sent[start + 1:end]


def ask(site: Site, target: str, mode: Mode = Mode.LISTEN,
        device: str = "PJSIP/2001") -> tuple[list[str], AuditRecord]:
    line = ScriptedLine([(f"GET DATA {Prompts.PIN}", PIN),
                         (f"GET DATA {Prompts.TARGET}", target)], device)
    site.call(line, mode)
    first = site.records()[0]
    return prompts_after_target(line, target), first


# --- rights come before status ------------------------------------------------------------


@pytest.mark.parametrize("number", [*BLUE, NEVER])
@pytest.mark.parametrize("state", [talking, idle, logged_out])
def test_an_agent_outside_the_supervisors_rights_is_not_allowed_whatever_they_do(
        tmp_path: Path, number: str, state: object) -> None:
    """Team B's agents and never-spy agents sound the same to a team A supervisor on a call,
    idle, or logged out: "not allowed"; the audit keeps the real reason."""
    resolution = state(number)  # type: ignore[operator]
    site = Site(tmp_path, FakeResolver({number: resolution}))
    heard, record = ask(site, number)
    assert heard == [f"STREAM FILE {Prompts.DENIED}"]
    assert record.end_reason == "denied" and record.agent == number
    why = "never_spy" if number == NEVER else "team"
    assert record.detail == (why if resolution.ok else f"{why}; agent {resolution.reason}")


@pytest.mark.parametrize("state", [talking, idle])
def test_a_session_id_held_by_another_teams_agent_is_not_allowed(
        tmp_path: Path, state: object) -> None:
    """*222 + a 7-digit session of a team B agent: "not allowed", on a call or not."""
    site = Site(tmp_path, FakeResolver({"9000001": state("10", "9000001")}))  # type: ignore[operator]
    heard, record = ask(site, "9000001")
    assert heard == [f"STREAM FILE {Prompts.DENIED}"]
    assert (record.end_reason, record.requested_target, record.agent) == ("denied", "9000001", "10")


def test_a_mode_the_supervisor_lacks_is_not_allowed_even_for_an_idle_agent(tmp_path: Path) -> None:
    """A listen-only supervisor asking to barge on their own team's idle agent."""
    site = Site(tmp_path, FakeResolver({"1001": idle("1001")}))
    heard, record = ask(site, "1001", Mode.BARGE, device="PJSIP/2002")
    assert heard == [f"STREAM FILE {Prompts.DENIED}"]
    assert record.detail == "mode; agent not_on_call"


@pytest.mark.parametrize(("state", "prompt", "reason"), [
    (idle, Prompts.NOT_ON_CALL, "not_on_call"),
    (logged_out, Prompts.NOT_LOGGED_IN, "not_logged_in"),
])
def test_own_agents_status_is_still_told(tmp_path: Path, state: object, prompt: str,
                                         reason: str) -> None:
    """The supervisor's own team keeps its status prompts."""
    site = Site(tmp_path, FakeResolver({"1001": state("1001")}))  # type: ignore[operator]
    heard, record = ask(site, "1001")
    assert heard == [f"STREAM FILE {prompt}"]
    assert (record.end_reason, record.agent) == (reason, "1001")


def test_a_target_naming_nobody_is_not_found(tmp_path: Path) -> None:
    site = Site(tmp_path, FakeResolver({}))
    heard, record = ask(site, "4242")
    assert heard == [f"STREAM FILE {Prompts.NOT_FOUND}"]
    assert record.end_reason == "not_found"


def test_a_directory_agent_the_map_does_not_hold_is_refused_not_reported_missing(
        tmp_path: Path) -> None:
    """Team B's agent 10 unknown to the live map: still "not allowed", never "not found"."""
    site = Site(tmp_path, FakeResolver({}))
    heard, record = ask(site, "10")
    assert heard == [f"STREAM FILE {Prompts.DENIED}"]
    assert record.detail == "team; agent not_found"


# --- choosing an agent by ear --------------------------------------------------------------

ON_CALL = [("1002", T0 - 300), ("10", T0 - 200), ("1001", T0 - 100), (NEVER, T0 - 50)]


def picking(*keys: tuple[str, str | None]) -> list[tuple[str, str | None]]:
    return [(f"GET DATA {Prompts.PIN}", PIN), (f"GET DATA {Prompts.TARGET}", "0#"), *keys]


def test_0_offers_only_agents_this_supervisor_may_spy_on_longest_call_first_and_hash_picks(
        tmp_path: Path) -> None:
    """Team B's 10 and never-spy 1003 are on calls too but never said; 0 goes on to 1001,
    # picks it, and the spy runs on 1001's channel through the same path as typing 1001."""
    resolver = FakeResolver({"1001": talking("1001"), "1002": talking("1002")}, ON_CALL)
    site = Site(tmp_path, resolver)
    line = ScriptedLine(picking(("SAY DIGITS 1002", None), ("WAIT FOR DIGIT", "0"),
                                ("SAY DIGITS 1001", None), ("WAIT FOR DIGIT", "#")))
    site.call(line)
    said = [c for c in line.sent if c.startswith("SAY DIGITS")]
    assert said == ["SAY DIGITS 1002", "SAY DIGITS 1001"]
    (spy,) = [c for c in line.sent if c.startswith("EXEC ChanSpy")]
    assert spy.startswith("EXEC ChanSpy PJSIP/1001-0000000a,")
    assert resolver.asked == ["1001"]  # resolved once, as if typed
    record = site.records()[0]
    assert (record.requested_target, record.agent, record.modes) == ("1001", "1001", "listen")


def test_a_key_during_the_number_counts_and_the_order_is_the_same_every_time(
        tmp_path: Path) -> None:
    """# pressed while 1002 is being said picks 1002; a second call hears the same order."""
    resolver = FakeResolver({"1002": talking("1002")}, list(reversed(ON_CALL)))
    site = Site(tmp_path, resolver)
    first = ScriptedLine(picking(("SAY DIGITS 1002", "0"), ("SAY DIGITS 1001", "*")))
    site.call(first)
    second = ScriptedLine(picking(("SAY DIGITS 1002", "#")))
    site.call(second)
    assert [c for c in first.sent if c.startswith("SAY")] == ["SAY DIGITS 1002", "SAY DIGITS 1001"]
    assert any(c.startswith("EXEC ChanSpy PJSIP/1002-") for c in second.sent)


def test_star_goes_back_to_the_target_prompt_without_a_spy_or_a_record(tmp_path: Path) -> None:
    site = Site(tmp_path, FakeResolver({"1002": talking("1002")}, ON_CALL))
    line = ScriptedLine(picking(("SAY DIGITS 1002", None), ("WAIT FOR DIGIT", "*"),
                                (f"GET DATA {Prompts.TARGET}", "")))
    site.call(line)
    assert not any(c.startswith("EXEC") for c in line.sent)
    assert line.sent[-3:] == ["WAIT FOR DIGIT", f"GET DATA {Prompts.TARGET}",
                              f"GET DATA {Prompts.TARGET}"]
    (record,) = site.records()  # one attempt, never resolved
    assert record.requested_target is None and record.end_reason == "abandoned"


def test_silence_says_the_number_again_and_never_picks(tmp_path: Path) -> None:
    site = Site(tmp_path, FakeResolver({"1002": talking("1002")}, ON_CALL))
    keys: list[tuple[str, str | None]] = []
    for _ in range(picker.MAX_SAYINGS):
        keys += [("SAY DIGITS 1002", None), ("WAIT FOR DIGIT", None)]
    line = ScriptedLine(picking(*keys))
    site.call(line)
    assert not any(c.startswith("EXEC") for c in line.sent)
    assert line.sent[-1] == f"GET DATA {Prompts.TARGET}"  # back at the prompt


def test_0_after_the_last_agent_says_so_and_goes_back(tmp_path: Path) -> None:
    site = Site(tmp_path, FakeResolver({}, ON_CALL))
    line = ScriptedLine(picking(("SAY DIGITS 1002", "0"), ("SAY DIGITS 1001", "0")))
    site.call(line)
    assert line.sent[-2:] == [f"STREAM FILE {picker.END_OF_LIST}", f"GET DATA {Prompts.TARGET}"]


@pytest.mark.parametrize("on_call", [[], [("10", T0), (NEVER, T0)]])
def test_nobody_to_offer_is_said_and_the_prompt_comes_back(
        tmp_path: Path, on_call: list[tuple[str, float]]) -> None:
    site = Site(tmp_path, FakeResolver({}, on_call))
    line = ScriptedLine(picking())
    site.call(line)
    assert line.sent[-3:] == [f"GET DATA {Prompts.TARGET}", f"STREAM FILE {picker.NO_AGENTS}",
                              f"GET DATA {Prompts.TARGET}"]


def test_the_list_honours_the_mode(tmp_path: Path) -> None:
    """A listen-only supervisor barging is offered nobody, even their own team."""
    site = Site(tmp_path, FakeResolver({}, ON_CALL))
    line = ScriptedLine(picking(), device="PJSIP/2002")
    site.call(line, Mode.BARGE)
    assert f"STREAM FILE {picker.NO_AGENTS}" in line.sent
    assert not any(c.startswith("SAY DIGITS") for c in line.sent)


# --- the live map's list ---------------------------------------------------------------------


def answered_call(sim: Sim, agent: str) -> list[Ev]:
    """A trunk call to the agent's phone, answered and still going (no leave, no hangup)."""
    events = incoming_trunk(sim, agent)
    return events[:events.index(next(e for e in events if e.event == "BridgeLeave"))]


def test_live_map_lists_agents_on_answered_calls_longest_first_even_unreported() -> None:
    """Straight from the tables: calls applied quietly (nobody subscribed, no snapshot) are
    listed, ringing and idle agents are not, and a stale server lists nobody."""
    live = LiveMap(DIRECTORY, {"pbx": config()})
    sim = Sim()
    second = answered_call(sim, "1002")
    first = answered_call(sim, "10")
    ringing = incoming_trunk(sim, "1001", answer=False)[:4]  # up to the phone ringing
    live.ingest("pbx", first, T0 + 1)
    live.ingest("pbx", second, T0 + 2)
    live.ingest("pbx", ringing, T0 + 3)
    assert live.on_call_agents("pbx") == [("10", T0 + 1), ("1002", T0 + 2)]
    assert live.on_call_agents("elsewhere") == []
    live.mark_stale("pbx", T0 + 4)
    assert live.on_call_agents("pbx") == []


def test_the_flow_offers_what_the_live_map_lists(tmp_path: Path) -> None:
    live = LiveMap(DIRECTORY, {"pbx": config()})
    sim = Sim()
    live.ingest("pbx", answered_call(sim, "1001"), T0 + 1)
    live.ingest("pbx", answered_call(sim, "100"), T0 + 2)
    live.ingest("pbx", answered_call(sim, "1002"), T0 + 3)
    site = Site(tmp_path, live)
    line = ScriptedLine(picking(("SAY DIGITS 1001", "0"), ("SAY DIGITS 1002", "#")))
    site.call(line)
    (spy,) = [c for c in line.sent if c.startswith("EXEC ChanSpy")]
    assert spy.startswith("EXEC ChanSpy PJSIP/1002-")


# --- the whole flow, branch by branch, on task.Clock ----------------------------------------

SPYER = "1732156800.1"  # the supervisor line's uniqueid (ScriptedLine's env)
PIN_ASK = f"GET DATA {Prompts.PIN}"
TARGET_ASK = f"GET DATA {Prompts.TARGET}"


def ami(name: str, **headers: str) -> Ev:
    return Ev([("Event", name), *headers.items()])


class SpyLine(ScriptedLine):
    """A line whose ChanSpy runs until the test returns its reply (as Asterisk does: EXEC
    ChanSpy answers only when the spy is over); ``server`` as a FastAGI session has it."""

    def __init__(self, script: Iterable[tuple[str, str | None]], device: str = "PJSIP/2001",
                 server: str | None = None) -> None:
        super().__init__(script, device)
        self.server = server
        self.chanspy: Deferred[AGIReply] = Deferred()

    async def exec(self, app: str, data: str, timeout: float | None = None) -> AGIReply:
        self.sent.append(f"EXEC {app} {data}")
        return await self.chanspy

    def chanspy_returns(self, result: str = "0", *, hung_up: bool = False) -> None:
        self.hung_up = hung_up
        self.chanspy.callback(AGIReply(200, result, None, None, f"200 result={result}"))


def start(site: Site, line: ScriptedLine, mode: Mode = Mode.LISTEN) -> Deferred[None]:
    return ensureDeferred(site.flow(line, mode))


def finished(done: Deferred[None]) -> None:
    failures: list[object] = []
    done.addErrback(failures.append)
    assert done.called and not failures, failures


def heard(line: ScriptedLine) -> list[str]:
    return [c.removeprefix("STREAM FILE ") for c in line.sent if c.startswith("STREAM FILE")]


def test_wrong_pin_three_times_ends_the_call_as_bad_pin(tmp_path: Path) -> None:
    site = Site(tmp_path, FakeResolver({}))
    line = ScriptedLine([(PIN_ASK, "1111"), (PIN_ASK, "2222"), (PIN_ASK, "3333")])
    site.call(line)
    assert heard(line) == [Prompts.LOGIN_INCORRECT] * 3 + [Prompts.GOODBYE]
    (record,) = site.records()
    assert (record.auth_result, record.end_reason, record.detail) == (
        "bad_pin", "bad_pin", "3 failed tries")


def test_a_locked_out_phone_hears_what_a_wrong_pin_hears_even_with_the_right_pin(
        tmp_path: Path) -> None:
    site = Site(tmp_path, FakeResolver({}), policy=LockoutPolicy(max_failures=2))
    site.call(ScriptedLine([(PIN_ASK, "1111"), (PIN_ASK, "2222")]))  # locks the phone
    line = ScriptedLine([(PIN_ASK, PIN), (PIN_ASK, PIN), (PIN_ASK, PIN)])
    site.call(line)
    assert heard(line) == [Prompts.LOGIN_INCORRECT] * 3 + [Prompts.GOODBYE]
    last = site.records()[-1]
    assert (last.auth_result, last.end_reason) == ("locked_out", "locked_out")
    assert TARGET_ASK not in line.sent


def test_an_unknown_phone_is_asked_for_the_supervisor_number_and_a_wrong_one_is_unknown(
        tmp_path: Path) -> None:
    site = Site(tmp_path, FakeResolver({}))
    ask_number = f"GET DATA {Prompts.SUPERVISOR}"
    line = ScriptedLine([(ask_number, "2999"), (PIN_ASK, PIN)] * 3, device="PJSIP/2999")
    site.call(line)
    (record,) = site.records()
    assert (record.supervisor, record.auth_result, record.end_reason) == (
        "2999", "unknown_supervisor", "bad_pin")


def test_silence_at_the_pin_prompt_ends_as_no_input(tmp_path: Path) -> None:
    site = Site(tmp_path, FakeResolver({}))
    line = ScriptedLine([(PIN_ASK, "")] * 3)
    site.call(line)
    assert heard(line) == [Prompts.GOODBYE]
    (record,) = site.records()
    assert (record.auth_result, record.end_reason, record.detail) == (
        "no_input", "abandoned", "no PIN entered")


def test_silence_at_the_target_prompt_ends_the_call(tmp_path: Path) -> None:
    site = Site(tmp_path, FakeResolver({}))
    line = ScriptedLine([(PIN_ASK, PIN), (TARGET_ASK, ""), (TARGET_ASK, ""), (TARGET_ASK, "")])
    site.call(line)
    (record,) = site.records()
    assert (record.auth_result, record.end_reason, record.detail) == (
        "ok", "abandoned", "no target entered")


def test_a_target_smuggled_into_the_agi_arguments_is_refused_before_the_pin(
        tmp_path: Path) -> None:
    site = Site(tmp_path, FakeResolver({"1001": talking("1001")}))
    line = ScriptedLine([])
    line.env = AGIEnvironment((("agi_channel", "PJSIP/2001-00000001"),
                               ("agi_uniqueid", SPYER), ("agi_arg_1", "1001"),
                               ("agi_arg_2", "B")))
    site.call(line)
    assert heard(line) == [Prompts.INVALID, Prompts.GOODBYE]
    (record,) = site.records()
    assert (record.requested_target, record.end_reason) == ("1001,B", "invalid_target")


def test_a_typed_target_that_is_not_digits_is_refused_and_another_asked_for(
        tmp_path: Path) -> None:
    site = Site(tmp_path, FakeResolver({}))
    line = ScriptedLine([(PIN_ASK, PIN), (TARGET_ASK, "10*01")])
    site.call(line)
    refused, after = site.records()
    assert (refused.requested_target, refused.end_reason) == ("10*01", "invalid_target")
    assert (after.supervisor, after.auth_result, after.end_reason, after.detail) == (
        "2001", "ok", "abandoned", "hung up at target prompt")


def test_a_stale_map_means_service_unavailable(tmp_path: Path) -> None:
    site = Site(tmp_path, FakeResolver({"1001": Resolution.refuse("stale", "pbx")}))
    line = ScriptedLine([(PIN_ASK, PIN), (TARGET_ASK, "1001")])
    site.call(line)
    assert heard(line) == [Prompts.UNAVAILABLE, Prompts.GOODBYE]
    (record,) = site.records()
    assert (record.end_reason, record.detail) == ("service_unavailable", "AMI down or state stale")


class ServerResolver(FakeResolver):
    """Answers per server: ``{server: {target: resolution}}``."""

    def __init__(self, by_server: dict[str, dict[str, Resolution]]) -> None:
        super().__init__({})
        self.by_server = by_server

    def resolve(self, target: str, server: str | None = None) -> Resolution:
        return self.by_server.get(server or "", {}).get(target, Resolution.refuse("not_found"))


def test_an_agent_on_another_server_with_no_trunk_is_refused(tmp_path: Path) -> None:
    resolver = ServerResolver({"other": {"1001": talking("1001")}})
    site = Site(tmp_path, resolver, servers=("pbx", "other"))
    line = SpyLine([(PIN_ASK, PIN), (TARGET_ASK, "1001")], server="pbx")
    finished(start(site, line))
    assert heard(line) == [Prompts.DENIED]
    refused = site.records()[0]
    assert (refused.requested_target, refused.end_reason, refused.detail) == (
        "1001", "denied", "other_server other")


def test_a_pin_check_that_cannot_answer_is_service_unavailable(tmp_path: Path) -> None:
    async def stuck(*_args: str | None) -> bool:
        raise PinCheckUnavailable("hash worker timed out")

    site = Site(tmp_path, FakeResolver({}), verify=stuck)
    line = ScriptedLine([(PIN_ASK, PIN)])
    site.call(line)
    assert heard(line) == [Prompts.UNAVAILABLE, Prompts.GOODBYE]
    (record,) = site.records()
    assert (record.supervisor, record.end_reason) == ("2001", "service_unavailable")


class SlowAnswer(ScriptedLine):
    async def answer(self) -> AGIReply:
        raise TimeoutError("ANSWER: no reply within 30 s")


def test_answer_timing_out_still_closes_the_record(tmp_path: Path) -> None:
    site = Site(tmp_path, FakeResolver({}))
    done = start(site, SlowAnswer([]))
    errors: list[Failure] = []
    done.addErrback(errors.append)
    assert errors and errors[0].check(TimeoutError)
    (record,) = site.records()
    assert record.end_reason == "error" and record.ended_at is not None
    assert record.detail == "TimeoutError: ANSWER: no reply within 30 s"


def spy_on_1001(tmp_path: Path, *more: tuple[str, str | None]) -> tuple[Site, SpyLine,
                                                                         Deferred[None]]:
    site = Site(tmp_path, FakeResolver({"1001": talking("1001")}))
    line = SpyLine([(PIN_ASK, PIN), (TARGET_ASK, "1001"), *more])
    return site, line, start(site, line)


def test_a_spy_with_a_mode_switch_then_the_agent_hangs_up_and_the_next_target_is_asked(
        tmp_path: Path) -> None:
    site, line, done = spy_on_1001(tmp_path)
    assert not done.called  # ChanSpy is running
    (spy,) = [c for c in line.sent if c.startswith("EXEC ChanSpy")]
    assert spy == "EXEC ChanSpy PJSIP/1001-0000000a,quESdg(team_red)"
    site.spies.feed(ami("ChanSpyStart", SpyerUniqueid=SPYER, Timestamp=str(T0 + 1)))
    site.spies.feed(ami("DTMFEnd", Uniqueid=SPYER, Digit="5", Direction="Received"))
    site.spies.feed(ami("ChanSpyStop", SpyerUniqueid=SPYER, Timestamp=str(T0 + 9)))
    line.chanspy_returns()
    finished(done)
    spied, after = site.records()
    assert (spied.end_reason, spied.spy_started_at, spied.spy_stopped_at, spied.modes) == (
        "agent_hangup", T0 + 1, T0 + 9, "listen,whisper")
    assert (spied.agent, spied.resolved_channel) == ("1001", "PJSIP/1001-0000000a")
    assert line.sent[-1] == TARGET_ASK  # asked for the next agent
    assert (after.end_reason, after.detail) == ("abandoned", "hung up at target prompt")


def test_the_supervisor_hanging_up_mid_spy_waits_for_chanspystop_without_polling(
        tmp_path: Path) -> None:
    site, line, done = spy_on_1001(tmp_path)
    site.spies.feed(ami("ChanSpyStart", SpyerUniqueid=SPYER, Timestamp=str(T0 + 1)))
    line.chanspy_returns("-1", hung_up=True)
    assert not done.called  # ChanSpyStop is still on its way
    assert site.clock.getDelayedCalls()  # one timer, not a polling loop
    site.clock.advance(0.2)
    site.spies.feed(ami("ChanSpyStop", SpyerUniqueid=SPYER, Timestamp=str(T0 + 7)))
    finished(done)
    assert site.clock.getDelayedCalls() == []  # the timeout was cancelled
    (record,) = site.records()
    assert (record.end_reason, record.spy_started_at, record.spy_stopped_at) == (
        "supervisor_hangup", T0 + 1, T0 + 7)


def test_a_chanspystop_that_never_comes_gives_up_after_the_grace(tmp_path: Path) -> None:
    site, line, done = spy_on_1001(tmp_path)
    site.spies.feed(ami("ChanSpyStart", SpyerUniqueid=SPYER, Timestamp=str(T0 + 1)))
    line.chanspy_returns("-1", hung_up=True)
    site.clock.advance(STOP_GRACE)
    finished(done)
    (record,) = site.records()
    assert (record.end_reason, record.spy_stopped_at) == ("supervisor_hangup", None)


def test_chanspy_returning_at_once_with_no_start_is_denied(tmp_path: Path) -> None:
    """SPYGROUP refused the channel inside Asterisk (our AMI link up all along)."""
    site, line, done = spy_on_1001(tmp_path)
    line.chanspy_returns()
    finished(done)
    assert heard(line) == [Prompts.DENIED]
    refused, _after = site.records()
    assert (refused.end_reason, refused.spy_started_at) == ("denied", None)


# --- every try is on record -------------------------------------------------------------------


def events_of(site: Site, record: AuditRecord) -> list[tuple[float, str, str | None]]:
    return [(e.at, e.kind, e.detail) for e in site.audit.events(record.id)]


def test_every_pin_try_of_a_call_is_on_record_not_only_the_last(tmp_path: Path) -> None:
    """From an unknown phone: a wrong supervisor number, a wrong PIN, then the right pair;
    the row keeps the last result, the events all three."""
    site = Site(tmp_path, FakeResolver({}))
    ask_number = f"GET DATA {Prompts.SUPERVISOR}"
    line = ScriptedLine([(ask_number, "2999"), (PIN_ASK, "1111"), (ask_number, "2001"),
                         (PIN_ASK, "9999"), (ask_number, "2001"), (PIN_ASK, PIN)],
                        device="PJSIP/2999")
    site.call(line)
    (record,) = site.records()
    assert (record.supervisor, record.auth_result) == ("2001", "ok")
    assert [(kind, detail) for _, kind, detail in events_of(site, record)] == [
        ("pin", "2999 unknown_supervisor"), ("pin", "2001 bad_pin"), ("pin", "2001 ok")]


def test_each_pin_try_has_its_own_time(tmp_path: Path) -> None:
    site = Site(tmp_path, FakeResolver({}))
    waiting: list[Deferred[bool]] = []

    def verify(*args: str | None) -> Deferred[bool]:
        waiting.append(Deferred())
        return waiting[-1]

    site.flow.deps.verify_pin = verify
    line = ScriptedLine([(PIN_ASK, "1111"), (PIN_ASK, "2222"), (PIN_ASK, "3333")])
    done = start(site, line)
    for answer in range(3):
        site.clock.advance(2)
        waiting[answer].callback(False)
    finished(done)
    (record,) = site.records()
    assert [at for at, _, _ in events_of(site, record)] == [T0 + 2, T0 + 4, T0 + 6]


def test_each_mode_change_is_on_record_with_its_time(tmp_path: Path) -> None:
    site, line, done = spy_on_1001(tmp_path)
    site.spies.feed(ami("ChanSpyStart", SpyerUniqueid=SPYER, Timestamp=str(T0 + 1)))
    for at, digit in ((T0 + 3, "5"), (T0 + 5, "6"), (T0 + 8, "4")):
        site.spies.feed(ami("DTMFEnd", Uniqueid=SPYER, Digit=digit, Direction="Received",
                            Timestamp=str(at)))
    site.spies.feed(ami("ChanSpyStop", SpyerUniqueid=SPYER, Timestamp=str(T0 + 9)))
    line.chanspy_returns()
    finished(done)
    spied = site.records()[0]
    assert spied.modes == "listen,whisper,barge,listen"
    assert [e for e in events_of(site, spied) if e[1] == "mode"] == [
        (T0 + 3, "mode", "whisper"), (T0 + 5, "mode", "barge"), (T0 + 8, "mode", "listen")]


def test_each_target_asked_for_and_refused_is_on_record_with_the_reason(tmp_path: Path) -> None:
    site = Site(tmp_path, FakeResolver({"1003": talking("1003"), "1002": idle("1002")}))
    line = ScriptedLine([(PIN_ASK, PIN), (TARGET_ASK, "4242"), (TARGET_ASK, "1003"),
                         (TARGET_ASK, "1002"), (TARGET_ASK, "12*")])
    site.call(line)
    refusals = [events_of(site, r) for r in site.records()[:4]]
    assert [[d for _, kind, d in events if kind == "refused"] for events in refusals] == [
        ["4242 not_found: not_found"], ["1003 denied: never_spy"],
        ["1002 not_on_call: not_on_call"], ["12* invalid_target: typed target not digits"]]


# --- AMI lost during a spy: the outcome is ChanSpy's own return ------------------------------


def test_ami_lost_just_as_chanspy_starts_is_a_spy_with_guessed_times_never_denied(
        tmp_path: Path) -> None:
    """No ChanSpyStart ever reaches us (the link dropped as it was sent); ChanSpy returns 30 s
    later when the call ends: the row is the spy's, start and stop from EXEC ChanSpy,
    marked uncertain, and the supervisor is asked for the next agent, not told 'denied'."""
    site, line, done = spy_on_1001(tmp_path)
    site.spies.link_lost("pbx")
    site.clock.advance(30)
    line.chanspy_returns()
    site.clock.advance(STOP_GRACE)
    finished(done)
    spied, after = site.records()
    assert (spied.end_reason, spied.spy_started_at, spied.spy_stopped_at,
            spied.times_uncertain) == ("agent_hangup", T0, T0 + 30, 1)
    assert spied.detail is not None and "AMI lost" in spied.detail
    assert Prompts.DENIED not in heard(line)
    assert line.sent[-1] == TARGET_ASK and after.times_uncertain is None


def test_after_the_resync_asterisks_chanspystop_gives_the_real_stop(tmp_path: Path) -> None:
    site, line, done = spy_on_1001(tmp_path)
    site.spies.link_lost("pbx")
    site.clock.advance(20)
    site.spies.feed(ami("ChanSpyStop", SpyerUniqueid=SPYER, Timestamp=str(T0 + 19.5)))
    line.chanspy_returns("-1", hung_up=True)
    finished(done)
    (spied,) = site.records()
    assert (spied.end_reason, spied.spy_started_at, spied.spy_stopped_at,
            spied.times_uncertain) == ("supervisor_hangup", T0, T0 + 19.5, 1)


def test_a_seen_start_keeps_its_time_when_the_stop_is_lost(tmp_path: Path) -> None:
    site, line, done = spy_on_1001(tmp_path)
    site.spies.feed(ami("ChanSpyStart", SpyerUniqueid=SPYER, Timestamp=str(T0 + 0.5)))
    site.clock.advance(10)
    site.spies.link_lost("pbx")
    site.clock.advance(5)
    line.chanspy_returns()
    site.clock.advance(STOP_GRACE)
    finished(done)
    spied = site.records()[0]
    assert (spied.end_reason, spied.spy_started_at, spied.spy_stopped_at,
            spied.times_uncertain) == ("agent_hangup", T0 + 0.5, T0 + 15, 1)


def test_a_link_lost_on_another_server_changes_nothing(tmp_path: Path) -> None:
    site, line, done = spy_on_1001(tmp_path)
    site.spies.link_lost("elsewhere")
    line.chanspy_returns()
    finished(done)
    refused = site.records()[0]
    assert (refused.end_reason, refused.times_uncertain) == ("denied", None)
