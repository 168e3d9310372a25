"""non_agent_api.php through the HTTP resource, with a fake login checker and launcher:
every VICIdial string, the order of its checks, and hostile input."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs as parse_text
from urllib.parse import urlencode, urlsplit

import pytest
from twisted.internet.address import IPv4Address
from twisted.web.http import parse_qs
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from fastagi_spy.domain import AgentEntry
from fastagi_spy.model.views import AgentCall, AgentView
from fastagi_spy.web.vicidial import NonAgentApi, NonAgentApiResource, VicidialDeps
from fastagi_spy.web.vicidial_status import LiveAgent

PEER = IPv4Address("TCP", "127.0.0.1", 40000)
DOCS_EXAMPLE = ("/vicidial/non_agent_api.php?source=test&user=6666&pass=1234&function="
                "blind_monitor&phone_login=350a&session_id=8600051&server_ip=10.10.10.16"
                "&stage=MONITOR")


class Verdict(enum.Enum):
    OK = "ok"
    BAD = "bad"
    LOCKED = "locked"


@dataclass(frozen=True)
class Person:
    number: str
    teams: frozenset[str] = frozenset({"sales"})
    user_level: int = 8
    api: bool = True
    active: bool = True
    view_reports: bool = True
    functions: frozenset[str] | None = None


@dataclass(frozen=True)
class Login:
    verdict: Verdict
    person: Person | None
    auth_message: str


@dataclass
class FakeChecker:
    people: dict[str, tuple[str, Person]] = field(default_factory=dict)
    locked: set[str] = field(default_factory=set)
    calls: list[tuple[str, str]] = field(default_factory=list)

    async def login(self, user: str, password: str, client: str) -> Login:
        self.calls.append((user, password))
        if user in self.locked:
            return Login(Verdict.LOCKED, None, "")
        known = self.people.get(user)
        if known is None or known[0] != password:
            return Login(Verdict.BAD, None, "BAD")
        return Login(Verdict.OK, known[1], "")


@dataclass(frozen=True)
class Launched:
    man_id: str
    dialstring: str
    dialplan_number: str


class LaunchRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class FakeLauncher:
    refuse: str | None = None
    crash: bool = False
    launches: list[tuple[Any, ...]] = field(default_factory=list)

    def server_for_ip(self, server_ip: str) -> str | None:
        return {"10.10.10.16": "pbx1"}.get(server_ip)

    def session_exists(self, server: str, session_id: str) -> bool:
        # The endpoint asks only about 7-digit sessions: anything else is refused before.
        assert len(session_id) == 7 and session_id.isdigit(), session_id
        return (server, session_id) == ("pbx1", "8600051")

    def phone(self, login: str) -> str | None:
        return {"350a": "PJSIP/350a"}.get(login)

    async def launch(self, person: Any, phone: Any, server: str, session_id: str, stage: Any,
                     source: str) -> Launched:
        if self.crash:
            raise RuntimeError("AMI down")
        if self.refuse is not None:
            raise LaunchRefused(self.refuse)
        self.launches.append((person.number, phone, server, session_id, stage, source))
        return Launched("17", "010*010*010*016*", "350")


def _call(call: AgentCall | None = None, paused: bool = False) -> AgentView:
    status = "Paused" if paused else ("Talking" if call else "Idle")
    return AgentView(status, paused, True, "8600051", None, None, call)  # type: ignore[arg-type]


TALKING = AgentCall("1700000000.5", "5551212", "Customer", "incoming", 1.0, 2.0, False)
RINGING = AgentCall("1700000000.7", "5553434", "", "incoming", 1.0, None, False)


@dataclass
class FakeAgents:
    live: dict[str, AgentView] = field(default_factory=dict)
    uncertain: bool = False
    directory: dict[str, AgentEntry] = field(default_factory=lambda: {
        "1001": AgentEntry("1001", "Ann Agent", "sales"),
        "1002": AgentEntry("1002", "Bob Agent", "sales"),
        "1003": AgentEntry("1003", "Cy Support", "support"),
    })

    def entry(self, number: str) -> AgentEntry | None:
        return self.directory.get(number)

    def find(self, number: str) -> tuple[LiveAgent | None, bool]:
        view = self.live.get(number)
        if view is None:
            return None, self.uncertain
        return LiveAgent(self.directory[number], view), False

    def logged_in(self) -> list[LiveAgent]:
        return [LiveAgent(self.directory[n], v) for n, v in sorted(self.live.items())]


@dataclass
class Env:
    checker: FakeChecker
    launcher: FakeLauncher
    agents: FakeAgents
    resource: NonAgentApiResource

    def get(self, uri: str) -> tuple[int, str, DummyRequest]:
        request = DummyRequest([b""])
        request.getClientAddress = lambda: PEER  # type: ignore[method-assign]
        request.uri = uri.encode()
        request.args = parse_qs(urlsplit(uri.encode()).query, 1)
        return self._render(request)

    def post(self, path: str, form: dict[str, str]) -> tuple[int, str, DummyRequest]:
        """A form POST as Twisted parses it: request.args holds query and body merged,
        the body's values replacing the query's."""
        request = DummyRequest([b""])
        request.getClientAddress = lambda: PEER  # type: ignore[method-assign]
        request.method = b"POST"
        request.uri = path.encode()
        args = parse_qs(urlsplit(path.encode()).query, 1)
        args.update(parse_qs(urlencode(form).encode(), 1))
        request.args = args
        return self._render(request)

    def _render(self, request: DummyRequest) -> tuple[int, str, DummyRequest]:
        body = self.resource.render(request)  # type: ignore[no-untyped-call]
        if body is NOT_DONE_YET:
            assert request.finished, "the fakes never wait: the answer must be written"
            text = b"".join(request.written)
        else:
            assert isinstance(body, bytes)
            text = body
        return request.responseCode or 200, text.decode(), request


@pytest.fixture()
def env() -> Env:
    checker = FakeChecker({
        "6666": ("1234", Person("6666")),
        "7777": ("pw", Person("7777", user_level=6)),
        "8888": ("pw", Person("8888", api=False)),
        "5555": ("pw", Person("5555", functions=frozenset({"version", "agent_status"}))),
        "4444": ("pw", Person("4444", view_reports=False)),
        "3333": ("pw", Person("3333", active=False)),
        "5556": ("pw", Person("5556", user_level=6, functions=frozenset({"version"}))),
    }, locked={"9999"})
    launcher = FakeLauncher()
    agents = FakeAgents()
    api = NonAgentApi(VicidialDeps(checker=checker, agents=agents, launcher=launcher,
                                   stage_type=str, refusal=(LaunchRefused,),
                                   now=lambda: 1_790_000_000.0, version="0.1.0"))
    return Env(checker, launcher, agents, NonAgentApiResource(api))


def bm(**changes: str) -> str:
    params = dict(source="test", user="6666", pass_="1234", function="blind_monitor",
                  phone_login="350a", session_id="8600051", server_ip="10.10.10.16",
                  stage="MONITOR")
    params.update(changes)
    params["pass"] = params.pop("pass_")
    return "/non_agent_api.php?" + urlencode(params)


# --- blind_monitor: the docs' request and each of VICIdial's answers, in its order ----------

def test_the_documented_request_launches_and_prints_vicidials_success_line(env: Env) -> None:
    code, text, request = env.get(DOCS_EXAMPLE)
    assert code == 200
    assert request.responseHeaders.getRawHeaders(b"content-type") == [
        b"text/plain; charset=utf-8"]
    assert text == ("SUCCESS: blind_monitor HAS BEEN LAUNCHED - "
                    "350a|010*010*010*016*8600051|350|8600051|17|6666\n")
    assert env.launcher.launches == [("6666", "PJSIP/350a", "pbx1", "8600051", "MONITOR", "test")]


def test_post_gives_the_same_answer_as_get(env: Env) -> None:
    form = dict(parse_text(urlsplit(DOCS_EXAMPLE).query))
    _, by_get, _ = env.get(DOCS_EXAMPLE)
    _, by_post, _ = env.post("/vicidial/non_agent_api.php", {k: v[0] for k, v in form.items()})
    assert by_post == by_get
    bad = {k: v[0] for k, v in form.items()} | {"session_id": "8600099"}
    _, post_bad, _ = env.post("/non_agent_api.php", bad)
    _, get_bad, _ = env.get(bm(session_id="8600099"))
    assert post_bad == get_bad == "ERROR: blind_monitor INVALID SESSION ID - 8600099|10.10.10.16|6666\n"


def test_the_query_string_wins_over_the_form_body_as_in_vicidial(env: Env) -> None:
    _, text, _ = env.post("/non_agent_api.php?phone_login=350a",
                          {"source": "test", "user": "6666", "pass": "1234",
                           "function": "blind_monitor", "phone_login": "999",
                           "session_id": "8600051", "server_ip": "10.10.10.16"})
    assert text.startswith("SUCCESS: blind_monitor HAS BEEN LAUNCHED - 350a|")


def test_login_incorrect_never_echoes_the_password(env: Env) -> None:
    _, text, _ = env.get(bm(pass_="secret-guess"))
    assert text == "ERROR: Login incorrect, please try again: |6666||BAD|\n"
    assert "secret-guess" not in text
    assert env.launcher.launches == []


def test_a_locked_user_gets_vicidials_lock_line(env: Env) -> None:
    _, text, _ = env.get(bm(user="9999"))
    assert text == "ERROR: Too many login attempts, try again in 15 minutes: |9999|LOCK|\n"


def test_invalid_source_is_vicidials_two_lines(env: Env) -> None:
    _, text, _ = env.get(bm(source="t"))
    assert text == "ERROR: Invalid Source - t\nERROR: Invalid Source: |t|\n"
    # Stripped to VICIdial's class first: "t!" is "t", one character.
    _, stripped, _ = env.get(bm(source="t!"))
    assert stripped == text


def test_a_function_not_allowed_to_the_user(env: Env) -> None:
    _, text, _ = env.get(bm(user="5555", pass_="pw"))
    assert text == ("ERROR: auth USER DOES NOT HAVE PERMISSION TO USE THIS FUNCTION: "
                    "|5555|blind_monitor|\n")


@pytest.mark.parametrize("user", ["7777", "8888", "3333"])
def test_no_permission_to_blind_monitor(env: Env, user: str) -> None:
    """user_level 6, no API access, inactive: each is VICIdial's permission line."""
    _, text, _ = env.get(bm(user=user, pass_="pw"))
    assert text == ("ERROR: blind_monitor USER DOES NOT HAVE PERMISSION TO BLIND MONITOR: "
                    f"|{user}|0|\n")


@pytest.mark.parametrize(("session_id", "server_ip"), [
    ("8600099", "10.10.10.16"),   # no such session
    ("860005", "10.10.10.16"),    # six digits
    ("8600051", "10.10.10.99"),   # no such server
    ("8600051", ""),
    ("", "10.10.10.16"),
])
def test_invalid_session_id(env: Env, session_id: str, server_ip: str) -> None:
    _, text, _ = env.get(bm(session_id=session_id, server_ip=server_ip))
    assert text == f"ERROR: blind_monitor INVALID SESSION ID - {session_id}|{server_ip}|6666\n"
    assert env.launcher.launches == []


@pytest.mark.parametrize("phone_login", ["351b", ""])
def test_invalid_phone_login(env: Env, phone_login: str) -> None:
    _, text, _ = env.get(bm(phone_login=phone_login))
    assert text == f"ERROR: blind_monitor INVALID PHONE LOGIN - {phone_login}|6666\n"


def test_checks_come_in_vicidials_order(env: Env) -> None:
    """Each request fails two checks; the earlier one in VICIdial's order answers."""
    everything_wrong = dict(source="t", session_id="1", phone_login="nope")
    _, text, _ = env.get(bm(pass_="wrong", **everything_wrong))
    assert text.startswith("ERROR: Login incorrect")
    _, text, _ = env.get(bm(user="5555", pass_="pw", **everything_wrong))
    assert text.startswith("ERROR: Invalid Source - t\n")
    _, text, _ = env.get(bm(user="7777", pass_="pw", source="t"))
    assert text.startswith("ERROR: Invalid Source - t\n")
    _, text, _ = env.get(bm(user="5555", pass_="pw", session_id="1"))
    assert "PERMISSION TO USE THIS FUNCTION" in text
    _, text, _ = env.get(bm(user="5556", pass_="pw"))
    assert "PERMISSION TO USE THIS FUNCTION" in text
    _, text, _ = env.get(bm(user="7777", pass_="pw", session_id="1"))
    assert "PERMISSION TO BLIND MONITOR" in text
    _, text, _ = env.get(bm(session_id="1", phone_login="nope"))
    assert "INVALID SESSION ID" in text
    assert env.launcher.launches == []


@pytest.mark.parametrize(("given", "handed"), [
    ("MONITOR", "MONITOR"), ("BARGE", "BARGE"), ("WHISPER", "WHISPER"),
    ("BARGESWAP", "BARGESWAP"), ("HIJACK", "HIJACK"), ("", "MONITOR"), ("barge", "MONITOR"),
    ("BAR GE", "BARGE"),  # VICIdial strips the space first
])
def test_stages_reach_the_launcher_as_vicidial_reads_them(env: Env, given: str,
                                                          handed: str) -> None:
    _, text, _ = env.get(bm(stage=given))
    assert text.startswith("SUCCESS")
    assert env.launcher.launches[-1][4] == handed


def test_a_refusal_after_vicidials_checks_is_a_clear_error(env: Env) -> None:
    env.launcher.refuse = "USER MAY NOT MONITOR THIS AGENT"
    _, text, _ = env.get(DOCS_EXAMPLE)
    assert text == "ERROR: blind_monitor USER MAY NOT MONITOR THIS AGENT - 8600051|6666\n"


def test_a_launcher_failure_fails_closed(env: Env) -> None:
    env.launcher.crash = True
    _, text, _ = env.get(DOCS_EXAMPLE)
    assert text == ("ERROR: blind_monitor SERVICE UNAVAILABLE, TRY AGAIN LATER - "
                    "8600051|6666\n")


@pytest.mark.parametrize("function", ["", "add_lead", "blind_monitor2"])
def test_no_function_specified(env: Env, function: str) -> None:
    _, text, _ = env.get(bm(function=function))
    assert text == "ERROR: NO FUNCTION SPECIFIED\n"


def test_version_answers_without_a_login(env: Env) -> None:
    _, text, _ = env.get("/non_agent_api.php?function=version")
    assert text.startswith("VERSION: 0.1.0|BUILD: fastagi-spy|DATE: 20")
    assert "|EPOCH: 1790000000|DST: " in text and "|TZ: " in text and "|TZNOW: " in text
    assert text.endswith("|\n")
    assert env.checker.calls == []


# --- hostile input -----------------------------------------------------------------------

@pytest.mark.parametrize(("name", "value"), [
    ("pass", "1234\r\nX-Injected: 1"),
    ("phone_login", "350a\n"),
    ("source", "te\x00st"),
    ("server_ip", "10.10.10.16\r"),
    ("stage", "MONITOR\x1b"),
    ("user", "66\u008566"),  # NEL, a C1 control
])
def test_a_control_character_is_refused_before_anything_uses_it(env: Env, name: str,
                                                                 value: str) -> None:
    key = "pass_" if name == "pass" else name
    code, text, _ = env.get(bm(**{key: value}))
    assert (code, text) == (400, f"ERROR: INVALID PARAMETER - {name}\n")
    assert env.checker.calls == [] and env.launcher.launches == []


def test_an_over_long_value_is_refused(env: Env) -> None:
    code, text, _ = env.get(bm(phone_login="a" * 256))
    assert (code, text) == (400, "ERROR: INVALID PARAMETER - phone_login\n")
    code, _, _ = env.get(bm(phone_login="a" * 255))
    assert code == 200


def test_bytes_that_are_not_utf8_are_refused(env: Env) -> None:
    code, text, _ = env.get(bm() + "&agent_user=%ff%fe")
    assert (code, text) == (400, "ERROR: INVALID PARAMETER - agent_user\n")


def test_non_latin_text_is_stripped_to_vicidials_classes(env: Env) -> None:
    """user and phone_login keep [-_0-9a-zA-Z] only: "6666é" logs in as 6666, and a phone
    login in another script never names a phone."""
    _, text, _ = env.get(bm(user="6666\u00e9"))
    assert text.startswith("SUCCESS")
    assert env.checker.calls[-1][0] == "6666"
    _, text, _ = env.get(bm(phone_login="\u0422\u0435\u043b350a"))
    assert text.startswith("SUCCESS: blind_monitor HAS BEEN LAUNCHED - 350a|")
    _, text, _ = env.get(bm(phone_login="\u0442\u0435\u043b"))
    assert text == "ERROR: blind_monitor INVALID PHONE LOGIN - |6666\n"


# --- agent_status --------------------------------------------------------------------------

def st(**changes: str) -> str:
    params = dict(source="test", user="6666", function="agent_status", agent_user="1001")
    params.update(changes)
    params["pass"] = params.pop("pass_", "1234")
    return "/vicidial/non_agent_api.php?" + urlencode(params)


def test_agent_status_of_a_ready_talking_ringing_and_paused_agent(env: Env) -> None:
    env.agents.live["1001"] = _call()
    assert env.get(st())[1] == "READY|||||Ann Agent|sales||||||8600051\n"
    env.agents.live["1001"] = _call(TALKING)
    assert env.get(st())[1] == ("INCALL|1700000000.5||||Ann Agent|sales||||5551212||8600051\n")
    env.agents.live["1001"] = _call(RINGING)
    assert env.get(st())[1].startswith("QUEUE|1700000000.7|")
    env.agents.live["1001"] = _call(paused=True)
    assert env.get(st())[1].startswith("PAUSED|")
    # Paused while still talking: VICIdial keeps INCALL until the call ends.
    env.agents.live["1001"] = _call(TALKING, paused=True)
    assert env.get(st())[1].startswith("INCALL|")


def test_agent_status_csv_tab_header_and_include_ip(env: Env) -> None:
    env.agents.live["1001"] = _call()
    _, text, _ = env.get(st(stage="csv", header="YES", include_ip="YES"))
    assert text == ("status,callerid,lead_id,campaign_id,calls_today,full_name,user_group,"
                    "user_level,pause_code,real_time_sub_status,phone_number,vendor_lead_code,"
                    "session_id,computer_ip\nREADY,,,,,Ann Agent,sales,,,,,,8600051,\n")
    _, text, _ = env.get(st(stage="tab"))
    assert text == "READY\t\t\t\t\tAnn Agent\tsales\t\t\t\t\t\t8600051\n"


def test_agent_status_errors_in_vicidials_order(env: Env) -> None:
    env.agents.live["1001"] = _call()
    assert env.get(st(source="x"))[1] == "ERROR: Invalid Source - x\nERROR: Invalid Source: |x|\n"
    assert env.get(st(user="4444", pass_="pw"))[1] == (
        "ERROR: agent_status USER DOES NOT HAVE PERMISSION TO GET AGENT INFO: |4444|0|\n")
    assert env.get(st(agent_user="1"))[1] == (
        "ERROR: agent_status INVALID SEARCH PARAMETERS: 6666|1\n")
    assert env.get(st(agent_user="a" * 21))[1].startswith(
        "ERROR: agent_status INVALID SEARCH PARAMETERS: ")
    assert env.get(st(agent_user="4040"))[1] == "ERROR: agent_status AGENT NOT FOUND: 6666|4040\n"
    # Outside the caller's teams (admin_viewable_groups): not found, as in VICIdial.
    env.agents.live["1003"] = _call()
    assert env.get(st(agent_user="1003"))[1] == "ERROR: agent_status AGENT NOT FOUND: 6666|1003\n"
    assert env.get(st(agent_user="1002"))[1] == (
        "ERROR: agent_status AGENT NOT LOGGED IN: 6666|1002\n")
    env.agents.uncertain = True
    assert env.get(st(agent_user="1002"))[1] == (
        "ERROR: agent_status LIVE STATUS UNAVAILABLE: 6666|1002\n")


# --- logged_in_agents ----------------------------------------------------------------------

def test_logged_in_agents_lists_the_callers_teams_only(env: Env) -> None:
    env.agents.live.update({"1001": _call(TALKING), "1002": _call(paused=True),
                            "1003": _call()})
    _, text, _ = env.get(st(function="logged_in_agents", header="YES", stage="csv"))
    assert text == ("user,campaign_id,session_id,status,lead_id,callerid,calls_today,full_name,"
                    "user_group,user_level\n"
                    "1001,,8600051,INCALL,,1700000000.5,,Ann Agent,sales,\n"
                    "1002,,8600051,PAUSED,,,,Bob Agent,sales,\n")
    _, text, _ = env.get(st(function="logged_in_agents", show_sub_status="YES"))
    assert text.splitlines()[0] == "1001||8600051|INCALL||1700000000.5||Ann Agent|sales|||"


def test_logged_in_agents_errors(env: Env) -> None:
    assert env.get(st(function="logged_in_agents", user="4444", pass_="pw"))[1] == (
        "ERROR: logged_in_agents USER DOES NOT HAVE PERMISSION TO GET AGENT INFO: |4444|0|\n")
    env.agents.live["1003"] = _call()  # support: not the caller's team
    assert env.get(st(function="logged_in_agents"))[1] == (
        "ERROR: logged_in_agents NO LOGGED IN AGENTS\n")
    env.agents.live["1001"] = _call()
    assert env.get(st(function="logged_in_agents", user_groups="support"))[1] == (
        "ERROR: logged_in_agents NO LOGGED IN AGENTS\n")
    assert env.get(st(function="logged_in_agents", campaigns="TESTCAMP"))[1] == (
        "ERROR: logged_in_agents NO LOGGED IN AGENTS\n")
    assert env.get(st(function="logged_in_agents", user_groups="sales|x"))[1].startswith("1001|")


# --- the live map behind it ----------------------------------------------------------------

def test_live_agents_reads_the_map_and_never_a_stale_server() -> None:
    from fastagi_spy.domain import Directory
    from fastagi_spy.model import LiveMap, ModelConfig
    from fastagi_spy.web.vicidial_agents import LiveAgents

    directory = Directory((AgentEntry("1001", "Ann Agent", "sales", ("PJSIP/1001",)),),
                          (), frozenset())
    live_map = LiveMap(directory, {"pbx1": ModelConfig(), "pbx2": ModelConfig()})
    agents = LiveAgents(live_map, directory)
    found, uncertain = agents.find("1001")
    assert found is not None and found.view.status == "Idle" and not uncertain
    assert [a.entry.number for a in agents.logged_in()] == ["1001"]
    assert agents.find("4040") == (None, False)
    for server in live_map.server_names:
        live_map.mark_stale(server, 1.0)
    assert agents.find("1001") == (None, True)
    assert agents.logged_in() == []


def test_the_per_address_throttle_answers_vicidials_lock_line_without_a_login(env: Env) -> None:
    """After ``failures`` bad logins from one address (whatever the users), that address gets
    the lock line and no password is checked until the window ends; a good login clears it."""
    from fastagi_spy.web.guard import AuthThrottle

    clock = [1000.0]
    throttle = AuthThrottle(3, 60.0, lambda: clock[0])
    env.resource.api.deps.throttle = throttle
    assert env.get(bm(pass_="x"))[1].startswith("ERROR: Login incorrect")
    assert env.get(bm(user="1", pass_="x"))[1].startswith("ERROR: Login incorrect")
    assert env.get(bm())[1].startswith("SUCCESS")  # a good login clears the count
    for user in ("1", "2", "3"):
        assert env.get(bm(user=user, pass_="x"))[1].startswith("ERROR: Login incorrect")
    checked = len(env.checker.calls)
    assert env.get(bm())[1] == (
        "ERROR: Too many login attempts, try again in 15 minutes: |6666|LOCK|\n")
    assert len(env.checker.calls) == checked
    clock[0] += 60
    assert env.get(bm())[1].startswith("SUCCESS")
