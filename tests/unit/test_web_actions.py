"""The Live Monitor's spy buttons (/api/spy): who may press them, CSRF, the launch through
blind_monitor's launcher (real SQLite audit and tokens; the live map and AMI stand-ins), and
what the page is told afterwards."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from twisted.web.resource import Resource

from fastagi_spy.config import parse
from fastagi_spy.domain import AgentEntry, Directory, Mode, PhoneEntry, SupervisorEntry
from fastagi_spy.store.audit import AuditLog, AuthResult, EndReason, Via
from fastagi_spy.store.database import Database
from fastagi_spy.store.settings import SettingsStore
from fastagi_spy.store.tokens import TokenStore
from fastagi_spy.supervise.launch import MonitorLauncher
from fastagi_spy.web.actions import SpyResource
from tests.unit.web_http import CSRF, FakeGate, http

T0 = 1_700_000_000.0
PHONE = PhoneEntry("web1", "Local/2001@fsp-api-phones", "pbx1")
BOSS = SupervisorEntry("7777", "Boss", frozenset({"sales"}), frozenset(Mode), phone="web1",
                       spy=True)
LISTENER = replace(BOSS, number="6666", modes=frozenset({Mode.LISTEN}))
LOOKER = replace(BOSS, number="5555", spy=False)
DIRECTORY = Directory((AgentEntry("1001", "Ann", "sales"), AgentEntry("1003", "Cy", "support")),
                      (BOSS, LISTENER, LOOKER), frozenset())
CONFIG = """
[server]
pin_pepper = "a-long-enough-pepper-0123"
[[asterisk]]
name = "pbx1"
ami_username = "u"
ami_secret = "s"
"""


@dataclass(frozen=True)
class Found:
    reason: str
    agent_number: str | None = None
    session_id: str | None = None


class Map:
    def __init__(self) -> None:
        self.on_call: set[str] = set()

    def resolve(self, target: str, server: str | None = None) -> Found:
        return Found("ok", target) if target in self.on_call else Found("not_found")


class Site:
    def __init__(self, db: Database) -> None:
        self.map = Map()
        self.sent: list[list[tuple[str, str]]] = []
        self.gate = FakeGate(BOSS)
        self.audit = AuditLog(db)
        self.settings = SettingsStore(db)
        self.now = T0
        launcher = MonitorLauncher(DIRECTORY, [PHONE], parse(tomllib.loads(CONFIG)).asterisk,
                                   self.map, TokenStore(db), self.audit, self.originate,
                                   lambda: self.now)
        self.root = Resource()
        self.root.putChild(b"spy", SpyResource(self.gate, launcher, self.settings.feature_codes,
                                               self.audit, db, lambda: self.now))

    async def originate(self, server: str, headers: list[tuple[str, str]]) -> object:
        self.sent.append(headers)
        return None

    def press(self, agent: str = "1001", mode: str = "listen", csrf: str | None = CSRF
              ) -> tuple[int, dict[str, object]]:
        headers = {"X-CSRF-Token": csrf} if csrf is not None else {}
        reply = http(self.root, "POST", "/spy", f"agent={agent}&mode={mode}", headers)
        return reply.status, json.loads(reply.body or "{}")

    def status(self, launch: object) -> tuple[int, dict[str, object]]:
        reply = http(self.root, "GET", f"/spy/{launch}")
        return reply.status, json.loads(reply.body)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    db = Database(tmp_path / "actions.sqlite3")
    yield Site(db)
    db.close()


def test_a_press_rings_the_persons_own_phone_and_the_page_follows_it(site: Site) -> None:
    site.map.on_call.add("1001")
    status, body = site.press()
    assert status == 202 and body["state"] == "ringing"
    (headers,) = site.sent
    sent = dict(headers)
    assert sent["Channel"] == PHONE.dial and sent["Context"] == "fastagi-spy-api"
    assert sent["Exten"].isdigit()  # the one-time token, nothing of the request's
    launch = site.audit.get(int(str(body["id"])))
    assert launch is not None
    assert (launch.via, launch.supervisor, launch.agent, launch.modes) == (
        Via.WEB.value, "7777", "1001", "listen")
    assert site.status(launch.id) == (200, {"id": launch.id, "state": "ringing"})
    # The phone answers: the flow's row names the launch; the spy starts, then ends.
    answer = site.audit.open(T0 + 1, Via.API.value, supervisor="7777",
                             auth_result=AuthResult.OK)
    site.audit.update(answer, detail=f"web listen phone=web1 launch=#{launch.id}")
    assert site.status(launch.id)[1]["state"] == "answered"
    site.audit.mark_spy_started(answer, T0 + 2)
    assert site.status(launch.id)[1]["state"] == "connected"
    site.audit.mark_spy_stopped(answer, T0 + 9)
    site.audit.close(answer, T0 + 9, EndReason.SUPERVISOR_HANGUP)  # as the flow: detail kept
    assert site.status(launch.id)[1]["state"] == "ended"


def test_an_unanswered_phone_and_a_refusal_on_answer_are_told(site: Site) -> None:
    site.map.on_call.add("1001")
    first = int(str(site.press()[1]["id"]))
    second = int(str(site.press()[1]["id"]))
    site.now = T0 + 61
    assert site.status(first)[1]["state"] == "not answered"
    answer = site.audit.open(T0 + 1, Via.API.value, supervisor="7777")
    site.audit.update(answer, detail=f"web listen phone=web1 launch=#{second}")
    site.audit.close(answer, T0 + 2, EndReason.NOT_ON_CALL,
                     f"web listen phone=web1 launch=#{second}; the agent's call ended")
    assert site.status(second)[1] == {"id": second, "state": "refused",
                                      "reason": "not_on_call"}


def test_without_the_spy_scope_the_server_refuses_and_nothing_rings(site: Site) -> None:
    site.map.on_call.add("1001")
    site.gate.person = LOOKER
    assert site.press()[0] == 403
    assert http(site.root, "GET", "/spy").body == '{"modes": []}'
    assert site.sent == []


def test_a_mode_the_person_lacks_is_403_and_not_offered(site: Site) -> None:
    site.map.on_call.add("1001")
    site.gate.person = LISTENER
    assert site.press(mode="barge") == (403, {"error": "you may not barge"})
    assert json.loads(http(site.root, "GET", "/spy").body) == {"modes": ["listen"]}
    assert site.sent == []


def test_a_missing_or_wrong_csrf_token_is_403(site: Site) -> None:
    site.map.on_call.add("1001")
    assert site.press(csrf=None)[0] == 403
    assert site.press(csrf="guessed")[0] == 403
    assert site.sent == []


def test_a_blank_feature_code_hides_its_button_and_refuses_it(site: Site) -> None:
    site.map.on_call.add("1001")
    assert json.loads(http(site.root, "GET", "/spy").body) == {
        "modes": ["listen", "whisper", "barge"]}
    site.settings.save("7777", "", {"code_whisper": ""}, T0)
    assert json.loads(http(site.root, "GET", "/spy").body) == {"modes": ["listen", "barge"]}
    assert site.press(mode="whisper")[0] == 403
    assert site.sent == []


def test_bad_input_gets_a_clear_error(site: Site) -> None:
    assert site.press(agent="10%0D%0AAction:%20Originate") == (
        400, {"error": "agent: an agent number (digits)"})
    assert site.press(mode="hijack") == (400, {"error": "mode: listen, whisper or barge"})
    assert site.sent == []


def test_other_teams_agents_and_idle_agents_are_refused_with_the_reason(site: Site) -> None:
    site.map.on_call.update({"1001", "1003"})
    assert site.press(agent="1003") == (409, {"state": "refused",
                                               "reason": "USER MAY NOT MONITOR THIS AGENT"})
    site.map.on_call.clear()
    assert site.press() == (409, {"state": "refused", "reason": "AGENT IS NOT ON A CALL"})
    assert site.sent == []


def test_signed_out_is_sent_to_login_and_launches_are_private(site: Site) -> None:
    site.map.on_call.add("1001")
    launch = site.press()[1]["id"]
    site.gate.person = LISTENER
    assert site.status(launch)[0] == 404  # someone else's
    assert site.status("../etc")[0] == 404
    site.gate.person = None
    assert site.press()[0] == 302
    assert http(site.root, "GET", f"/spy/{launch}").status == 302
