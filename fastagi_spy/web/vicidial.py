"""VICIdial's ``non_agent_api.php``: blind_monitor, agent_status, logged_in_agents and version.

Existing VICIdial clients (the real-time report, dashboards, in-house scripts) call us with
only the host and credentials changed, so every answer is VICIdial's string, printed after
VICIdial's checks in VICIdial's order (``www/vicidial/non_agent_api.php``, read from its
source; ``../shared/reference/mission.md`` §2):

1. ``version`` answers before any login.
2. Login: wrong user or password, inactive user -> "Login incorrect"; locked -> "Too many
   login attempts". One deliberate difference: VICIdial echoes the submitted password in
   the "Login incorrect" line; we print that field empty.
3. Per function: the source (two characters at least, the two-line answer), the functions
   the user may call, the function's own permission, then its parameters.

Our own answers, for what VICIdial has no string for (documented in the README):
a value we refuse to read (``ERROR: INVALID PARAMETER - <name>``, HTTP 400), the login
check not answering (``ERROR: SERVICE UNAVAILABLE``, HTTP 503), a blind_monitor the
launcher refused after VICIdial's checks (``ERROR: blind_monitor <REASON> - <session_id>|<user>``,
the launcher's REFUSED_* reasons)
and a live map that cannot say (``ERROR: agent_status LIVE STATUS UNAVAILABLE: ...``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Protocol

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from fastagi_spy.domain import AgentEntry
from fastagi_spy.web.api import client_address
from fastagi_spy.web.guard import AuthThrottle
from fastagi_spy.web.vicidial_params import BadParameter, read_params
from fastagi_spy.web.vicidial_status import (
    AGENT_STATUS_HEADER,
    LOGGED_IN_HEADER,
    LOGGED_IN_SUB_HEADER,
    LiveAgent,
    agent_status_line,
    delimiter,
    header_line,
    logged_in_line,
    visible,
)

__all__ = ["Answer", "NonAgentApi", "NonAgentApiResource", "VicidialDeps", "mount"]

log = Logger()

UNAVAILABLE = "SERVICE UNAVAILABLE, TRY AGAIN LATER"
STAGES = ("MONITOR", "BARGE", "BARGESWAP", "HIJACK", "WHISPER")
ALL_FUNCTIONS = "ALL_FUNCTIONS"


class Person(Protocol):
    """What we read of the person who logged in (``SupervisorEntry``)."""

    number: str
    teams: frozenset[str]
    user_level: int
    api: bool
    active: bool
    view_reports: bool
    functions: frozenset[str] | None


class LoginLike(Protocol):
    @property
    def verdict(self) -> Any: ...  # LoginVerdict: read by name (OK, BAD, LOCKED)
    @property
    def person(self) -> Any: ...
    @property
    def auth_message(self) -> str: ...


class Checker(Protocol):
    def login(self, user: str, password: str, client: str) -> Awaitable[LoginLike]: ...


class AgentsLike(Protocol):
    """The live agents (``LiveAgents``)."""

    def entry(self, number: str) -> AgentEntry | None: ...
    def find(self, number: str) -> tuple[LiveAgent | None, bool]: ...
    def logged_in(self) -> list[LiveAgent]: ...


class LauncherLike(Protocol):
    def server_for_ip(self, server_ip: str) -> str | None: ...
    def session_exists(self, server: str, session_id: str) -> bool: ...
    def phone(self, login: str) -> Any: ...
    def launch(self, person: Any, phone: Any, server: str, session_id: str, stage: Any,
               source: str) -> Awaitable[Any]: ...


@dataclass(frozen=True)
class Answer:
    """The text/plain body, the HTTP code, and what the log line says of it."""

    text: str
    result: str  # SUCCESS or ERROR, as VICIdial logs it
    reason: str
    code: int = 200


def _version() -> str:
    try:
        return metadata.version("fastagi-spy")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass
class VicidialDeps:
    checker: Checker
    agents: AgentsLike
    launcher: LauncherLike | None = None
    # The launcher's Stage type (StrEnum): the stage is handed over as one of its members.
    stage_type: Callable[[str], Any] = str
    # The launcher's refusal (LaunchRefused): its ``reason`` is printed, nothing else is.
    refusal: tuple[type[BaseException], ...] = ()
    now: Callable[[], float] = time.time
    version: str = field(default_factory=_version)
    # The HTTP API's per-address throttle ([server] http_auth_*), shared with /api/live.
    throttle: AuthThrottle | None = None


def _error(reason: str, data: str, code: int = 200) -> Answer:
    return Answer(f"ERROR: {reason}{data}\n", "ERROR", reason, code)


def _may_call(person: Any, function: str) -> bool:
    functions = person.functions
    return functions is None or function in functions or ALL_FUNCTIONS in functions


def _may_view(person: Any) -> bool:
    # VICIdial: vdc_agent_api_access='1' and view_reports='1' and user_level > 6 and active
    return bool(person.api and person.view_reports and person.user_level > 6 and person.active)


class NonAgentApi:
    """One request's parameters in, VICIdial's answer out (no HTTP here)."""

    def __init__(self, deps: VicidialDeps) -> None:
        self.deps = deps

    async def answer(self, p: Mapping[str, str], client: str) -> Answer:
        function = p["function"]
        if function == "version":
            return self._version()
        user = p["user"]
        throttle = self.deps.throttle
        if throttle is not None and throttle.retry_after(client) is not None:
            # Too many bad logins from this address (any users): VICIdial's lock line,
            # without a password check.
            return _error("Too many login attempts, try again in 15 minutes", f": |{user}|LOCK|")
        try:
            login = await self.deps.checker.login(user, p["pass"], client)
        except Exception:
            log.failure("VICIdial API: the login check failed for user {user}", user=user)
            return _error("SERVICE UNAVAILABLE", "", 503)
        verdict = getattr(login.verdict, "name", str(login.verdict))
        if verdict == "LOCKED":
            return _error("Too many login attempts, try again in 15 minutes", f": |{user}|LOCK|")
        if throttle is not None:
            if verdict == "OK":
                throttle.succeeded(client)
            else:
                throttle.failed(client)
        if verdict != "OK" or login.person is None:
            # VICIdial prints |user|pass|auth_message|: the password field stays empty here.
            return _error("Login incorrect, please try again",
                          f": |{user}||{login.auth_message}|")
        person = login.person
        if function == "blind_monitor":
            return await self._blind_monitor(p, person)
        if function == "agent_status":
            return self._agent_status(p, person)
        if function == "logged_in_agents":
            return self._logged_in_agents(p, person)
        return _error("NO FUNCTION SPECIFIED", "")

    def _version(self) -> Answer:
        now = self.deps.now()
        local = time.localtime(now)
        date = time.strftime("%Y-%m-%d %H:%M:%S", local)
        offset = (local.tm_gmtoff or 0) / 3600
        standard = offset - (1 if local.tm_isdst > 0 else 0)
        text = (f"VERSION: {self.deps.version}|BUILD: fastagi-spy|DATE: {date}|"
                f"EPOCH: {int(now)}|DST: {max(local.tm_isdst, 0)}|TZ: {standard:g}|"
                f"TZNOW: {offset:g}|\n")
        return Answer(text, "SUCCESS", "version")

    @staticmethod
    def _common(p: Mapping[str, str], person: Any, function: str) -> Answer | None:
        """VICIdial's first two checks of every function: the source, the allowed functions."""
        source = p["source"]
        if len(source) < 2:
            text = f"ERROR: Invalid Source - {source}\nERROR: Invalid Source: |{source}|\n"
            return Answer(text, "ERROR", "Invalid Source")
        if not _may_call(person, function):
            return _error("auth USER DOES NOT HAVE PERMISSION TO USE THIS FUNCTION",
                          f": |{p['user']}|{function}|")
        return None

    async def _blind_monitor(self, p: Mapping[str, str], person: Any) -> Answer:
        user = p["user"]
        refused = self._common(p, person, "blind_monitor")
        if refused is not None:
            return refused
        if not (person.api and person.user_level > 6 and person.active):
            return _error("blind_monitor USER DOES NOT HAVE PERMISSION TO BLIND MONITOR",
                          f": |{user}|0|")
        launcher = self.deps.launcher
        if launcher is None:
            return _error(f"blind_monitor {UNAVAILABLE}", f" - {p['session_id']}|{user}")
        session_id, server_ip = p["session_id"], p["server_ip"]
        server = launcher.server_for_ip(server_ip) if server_ip else None
        if (server is None or len(session_id) != 7
                or not launcher.session_exists(server, session_id)):
            return _error("blind_monitor INVALID SESSION ID",
                          f" - {session_id}|{server_ip}|{user}")
        phone_login = p["phone_login"]
        phone = launcher.phone(phone_login) if phone_login else None
        if phone is None:
            return _error("blind_monitor INVALID PHONE LOGIN", f" - {phone_login}|{user}")
        # VICIdial: an empty or unknown stage is MONITOR, the least a supervisor can do.
        stage = p["stage"] if p["stage"] in STAGES else "MONITOR"
        try:
            launched = await launcher.launch(person, phone, server, session_id,
                                             self.deps.stage_type(stage), p["source"])
        except self.deps.refusal as refusal:
            # The launcher's own fixed strings (REFUSED_*), never the caller's text.
            reason = str(getattr(refusal, "reason", UNAVAILABLE))
            return _error(f"blind_monitor {reason}", f" - {session_id}|{user}")
        except Exception:
            log.failure("VICIdial API: blind_monitor launch failed for {user}", user=user)
            return _error(f"blind_monitor {UNAVAILABLE}", f" - {session_id}|{user}")
        # VICIdial prints <dialstring><prefix><session_id>; we have no conference prefix.
        text = (f"SUCCESS: blind_monitor HAS BEEN LAUNCHED - {phone_login}|"
                f"{launched.dialstring}{session_id}|{launched.dialplan_number}|{session_id}|"
                f"{launched.man_id}|{user}\n")
        return Answer(text, "SUCCESS", "blind_monitor HAS BEEN LAUNCHED")

    def _agent_status(self, p: Mapping[str, str], person: Any) -> Answer:
        user, agent_user = p["user"], p["agent_user"]
        refused = self._common(p, person, "agent_status")
        if refused is not None:
            return refused
        if not _may_view(person):
            return _error("agent_status USER DOES NOT HAVE PERMISSION TO GET AGENT INFO",
                          f": |{user}|0|")
        if not 2 <= len(agent_user) <= 20:
            return _error("agent_status INVALID SEARCH PARAMETERS", f": {user}|{agent_user}")
        entry = self.deps.agents.entry(agent_user)
        if entry is None or entry.team not in person.teams:
            return _error("agent_status AGENT NOT FOUND", f": {user}|{agent_user}")
        found, uncertain = self.deps.agents.find(agent_user)
        if found is None:
            if uncertain:
                return _error("agent_status LIVE STATUS UNAVAILABLE", f": {user}|{agent_user}")
            return _error("agent_status AGENT NOT LOGGED IN", f": {user}|{agent_user}")
        dl = delimiter(p["stage"])
        include_ip = p["include_ip"] == "YES"
        lines = []
        if p["header"] == "YES":
            names = AGENT_STATUS_HEADER + (("computer_ip",) if include_ip else ())
            lines.append(header_line(names, dl))
        lines.append(agent_status_line(found, dl, include_ip))
        return Answer("\n".join(lines) + "\n", "SUCCESS", "agent_status")

    def _logged_in_agents(self, p: Mapping[str, str], person: Any) -> Answer:
        user = p["user"]
        refused = self._common(p, person, "logged_in_agents")
        if refused is not None:
            return refused
        if not _may_view(person):
            return _error("logged_in_agents USER DOES NOT HAVE PERMISSION TO GET AGENT INFO",
                          f": |{user}|0|")
        agents = visible(self.deps.agents.logged_in(), person.teams)
        groups = {g for g in p["user_groups"].split("|") if g}
        if groups:
            agents = [a for a in agents if a.entry.team in groups]
        if {c for c in p["campaigns"].split("|") if c}:
            agents = []  # we have no campaigns: no agent is in the ones asked for
        if not agents:
            return _error("logged_in_agents NO LOGGED IN AGENTS", "")
        dl = delimiter(p["stage"])
        sub_status = p["show_sub_status"] == "YES"
        lines = []
        if p["header"] == "YES":
            names = LOGGED_IN_HEADER + (LOGGED_IN_SUB_HEADER if sub_status else ())
            lines.append(header_line(names, dl))
        lines.extend(logged_in_line(a, dl, sub_status) for a in agents)
        return Answer("\n".join(lines) + "\n", "SUCCESS", "logged_in_agents")


class NonAgentApiResource(Resource):
    """GET and form-encoded POST of ``non_agent_api.php``; every answer is text/plain."""

    isLeaf = True

    def __init__(self, api: NonAgentApi) -> None:
        Resource.__init__(self)
        self.api = api

    def render_GET(self, request: Request) -> int | bytes:
        return self._render(request)

    def render_POST(self, request: Request) -> int | bytes:
        return self._render(request)

    def _render(self, request: Request) -> int | bytes:
        client = client_address(request)
        try:
            params = read_params(request.uri, request.args or {}, request.method)
        except BadParameter as bad:
            _log_answer(client, {}, Answer("", "ERROR", f"INVALID PARAMETER {bad.name}: {bad.why}"))
            return _body(request, _error("INVALID PARAMETER", f" - {bad.name}", 400))
        answered = defer.ensureDeferred(self.api.answer(params, client))
        if answered.called:  # the usual case: nothing to wait for (no hash, no Originate)
            result: list[Answer] = []
            answered.addCallback(result.append)
            if result:
                _log_answer(client, params, result[0])
                return _body(request, result[0])
        finished = request.notifyFinish()
        gone: list[Failure] = []
        finished.addErrback(gone.append)  # the client hung up: nothing to write to

        def reply(answer: Answer) -> None:
            _log_answer(client, params, answer)
            if not gone:
                request.write(_body(request, answer))
                request.finish()

        def failed(failure: Failure) -> None:
            log.failure("VICIdial API: unexpected failure", failure)
            reply(_error("SERVICE UNAVAILABLE", "", 503))

        answered.addCallbacks(reply, failed)
        return NOT_DONE_YET


def _body(request: Request, answer: Answer) -> bytes:
    request.setResponseCode(answer.code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    return answer.text.encode()


def _log_answer(client: str, p: Mapping[str, str], answer: Answer) -> None:
    # vicidial_api_log's user, function, source, result and reason; never the password.
    log.info("VICIdial API {client} user={user!r} function={function!r} source={source!r}: "
             "{result} {reason}", client=client, user=p.get("user", ""),
             function=p.get("function", ""), source=p.get("source", ""),
             result=answer.result, reason=answer.reason)


def mount(root: Resource, resource: Resource) -> None:
    """Serve ``resource`` at /non_agent_api.php and /vicidial/non_agent_api.php."""
    root.putChild(b"non_agent_api.php", resource)
    vicidial = Resource()
    vicidial.putChild(b"non_agent_api.php", resource)
    root.putChild(b"vicidial", vicidial)
