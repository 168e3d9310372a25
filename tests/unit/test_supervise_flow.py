"""The feature-code flow driven through a scripted AGI line: rights before status, and choosing
an agent by ear (``0`` at the target prompt)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest
from twisted.internet.defer import Deferred, ensureDeferred

from fastagi_spy.config import SecurityRules
from fastagi_spy.domain import AgentEntry, Directory, Mode, SupervisorEntry
from fastagi_spy.model import LiveMap
from fastagi_spy.model.resolve import Resolution
from fastagi_spy.store.audit import AuditLog, AuditRecord
from fastagi_spy.store.database import Database
from fastagi_spy.store.lockout import LockoutPolicy, LockoutStore
from fastagi_spy.store.pins import PinHasher, PinStore
from fastagi_spy.supervise import picker
from fastagi_spy.supervise.flow import FlowDeps, Prompts, SupervisionFlow
from fastagi_spy.supervise.line import LineGone
from fastagi_spy.supervise.pincheck import PinChecker
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
    def __init__(self, tmp_path: Path, resolver: object) -> None:
        db = Database(tmp_path / "audit.sqlite3")
        hasher = PinHasher.cheap(b"unit-test-pepper-0123456789abcdef")
        pins = PinStore(db)
        for supervisor in (SUPERVISOR, LISTENER):
            pins.set_hash(supervisor.number, hasher.hash_pin(supervisor.number, PIN), T0)
        self.audit = AuditLog(db)

        async def verify(*args: str | None) -> bool:
            supervisor, pin, stored = args[-3:]  # (device,) supervisor, pin, stored hash
            return hasher.verify(supervisor or "", pin or "", stored)

        async def sleep(_seconds: float) -> None:
            return None

        self.flow = SupervisionFlow(FlowDeps(
            directory=DIRECTORY, resolver=resolver,  # type: ignore[arg-type]
            pin_checker=PinChecker(pins=pins, lockouts=LockoutStore(db, LockoutPolicy()),
                                   audit=self.audit, db=db),
            audit=self.audit, spies=SpyWatches(lambda: T0), security=SecurityRules(),
            now=lambda: T0, verify_pin=verify, sleep=sleep, servers=("pbx",)))

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
