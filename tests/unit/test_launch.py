"""blind_monitor's launcher: rights, fail-closed refusals, the token and the Originate it sends.

A real SQLite store (audit and tokens); the live map and AMI are stand-ins.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from twisted.internet.defer import ensureDeferred

from fastagi_spy.config import ConfigError, parse
from fastagi_spy.domain import AgentEntry, Directory, Mode, PhoneEntry, SupervisorEntry
from fastagi_spy.net.ami import AMINotConnected
from fastagi_spy.store.audit import AuditLog
from fastagi_spy.store.database import Database
from fastagi_spy.store.errors import StoreError
from fastagi_spy.store.tokens import TokenGrant, TokenRefused, TokenStore
from fastagi_spy.supervise.launch import (
    REFUSED_HIJACK_ELSEWHERE,
    REFUSED_NO_ROUTE,
    REFUSED_NOT_ON_CALL,
    REFUSED_RIGHTS,
    REFUSED_UNAVAILABLE,
    LaunchRefused,
    MonitorLauncher,
    Stage,
)

T0 = 1_700_000_000.0
SESSION = "8600051"
PHONE = PhoneEntry("350a", "PJSIP/350a", "pbx1")
LISTENER = SupervisorEntry("6666", "Listen only", frozenset({"sales"}), frozenset({Mode.LISTEN}),
                           api=True, user_level=8)
BOSS = SupervisorEntry("7777", "All modes", frozenset({"sales"}), frozenset(Mode),
                       api=True, user_level=9)
DIRECTORY = Directory(
    (AgentEntry("1001", "Ann", "sales"), AgentEntry("1004", "Bob", "sales"),
     AgentEntry("1003", "Cy", "support")),
    (LISTENER, BOSS), frozenset({"1004"}))


@dataclass(frozen=True)
class Found:
    reason: str
    agent_number: str | None = None
    session_id: str | None = None


class Map:
    """The live map's answer per (target, server)."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str | None], Found] = {}

    def resolve(self, target: str, server: str | None = None) -> Found:
        return self.answers.get((target, server), Found("not_found"))


@dataclass
class Ami:
    sent: list[tuple[str, list[tuple[str, str]]]]
    down: bool = False

    async def originate(self, server: str, headers: list[tuple[str, str]]) -> object:
        if self.down:
            raise AMINotConnected("Originate: AMI to pbx1 is down")
        self.sent.append((server, headers))
        return None


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "launch.sqlite3")
    yield database
    database.close()


def launcher(db: Database, live: Map, ami: Ami, route: bool = False,
             tokens: TokenStore | None = None) -> MonitorLauncher:
    servers = parse(tomllib.loads(CONFIG)).asterisk
    return MonitorLauncher(DIRECTORY, [PHONE], servers, live, tokens or TokenStore(db),
                           AuditLog(db), ami.originate, lambda: T0,
                           route=lambda origin, destination: route)


CONFIG = """
[server]
pin_pepper = "a-long-enough-pepper-0123"

[[asterisk]]
name = "pbx1"
ami_host = "10.10.10.16"
ami_username = "u"
ami_secret = "s"

[[asterisk]]
name = "pbx2"
server_ip = "10.10.10.17"
ami_username = "u"
ami_secret = "s"
agi_peers = ["10.10.10.17"]

[[phones]]
login = "350a"
dial = "PJSIP/350a"
server = "pbx1"
"""


def on_call(live: Map, agent: str = "1001", server: str = "pbx1") -> None:
    live.answers[(SESSION, server)] = Found("ok", agent, SESSION)


def launch(target: MonitorLauncher, person: SupervisorEntry = BOSS, stage: Stage = Stage.MONITOR,
           server: str = "pbx1", source: str = "test") -> object:
    """Run the launch to its end (nothing here waits on the reactor)."""
    done = ensureDeferred(target.launch(person, PHONE, server, SESSION, stage, source))
    outcome: list[object] = []
    done.addBoth(outcome.append)
    assert outcome, "the launch did not finish at once"
    result = outcome[0]
    if hasattr(result, "value") and isinstance(result.value, Exception):  # a Failure
        raise result.value
    return result


def test_the_originate_rings_the_phone_into_the_bundle_with_a_token_and_nothing_else(
        db: Database) -> None:
    live, ami = Map(), Ami([])
    on_call(live)
    target = launcher(db, live, ami)
    launched = launch(target, stage=Stage.WHISPER)
    [(server, headers)] = ami.sent
    fields = dict(headers)
    assert server == "pbx1"
    assert (fields["Channel"], fields["Context"], fields["Priority"], fields["Async"]) == (
        "PJSIP/350a", "fastagi-spy-api", "1", "true")
    assert re.fullmatch(r"[0-9]{32}", fields["Exten"])
    assert fields["CallerID"] == f'"WHISPER {SESSION}" <{SESSION}>'
    grant = TokenStore(db).redeem(fields["Exten"], T0 + 1, purpose="api")
    assert (grant.supervisor, grant.mode, grant.target, grant.stage, grant.spy_server) == (
        "7777", Mode.WHISPER, SESSION, "WHISPER", "pbx1")
    record = AuditLog(db).get(int(launched.man_id))  # type: ignore[attr-defined]
    assert record is not None
    assert (record.via, record.supervisor, record.agent, record.end_reason, record.device) == (
        "api", "7777", "1001", "completed", "PJSIP/350a")
    assert launched.dialstring == "010*010*010*016*"  # type: ignore[attr-defined]
    assert launched.dialplan_number == "350a"  # type: ignore[attr-defined]


def test_an_api_token_is_no_cross_server_token_and_back(db: Database) -> None:
    tokens = TokenStore(db)
    api = tokens.issue(TokenGrant("pbx1", "pbx1", "7777", Mode.LISTEN, SESSION, purpose="api"),
                       T0, 30)
    cross = tokens.issue(TokenGrant("pbx1", "pbx2", "7777", Mode.LISTEN, "1001"), T0, 30)
    for token, wrong in ((api, "cross"), (cross, "api")):
        with pytest.raises(TokenRefused) as refused:
            tokens.redeem(token, T0 + 1, purpose=wrong)
        assert refused.value.reason == "wrong_purpose"


@pytest.mark.parametrize("person, stage, agent, reason", [
    (LISTENER, Stage.WHISPER, "1001", REFUSED_RIGHTS),  # no whisper right
    (LISTENER, Stage.HIJACK, "1001", REFUSED_RIGHTS),  # HIJACK needs the barge right
    (LISTENER, Stage.BARGESWAP, "1001", REFUSED_RIGHTS),
    (BOSS, Stage.MONITOR, "1004", REFUSED_RIGHTS),  # never_spy
    (BOSS, Stage.MONITOR, "1003", REFUSED_RIGHTS),  # another team
])
def test_rights_are_ours_on_top_of_vicidials(db: Database, person: SupervisorEntry,
                                             stage: Stage, agent: str, reason: str) -> None:
    live, ami = Map(), Ami([])
    on_call(live, agent)
    with pytest.raises(LaunchRefused) as refused:
        launch(launcher(db, live, ami), person, stage)
    assert refused.value.reason == reason and ami.sent == []


def test_an_idle_agent_is_refused_after_the_rights(db: Database) -> None:
    live, ami = Map(), Ami([])
    live.answers[(SESSION, "pbx1")] = Found("not_on_call", "1001", SESSION)
    target = launcher(db, live, ami)
    assert target.session_exists("pbx1", SESSION)
    with pytest.raises(LaunchRefused) as refused:
        launch(target)
    assert refused.value.reason == REFUSED_NOT_ON_CALL and ami.sent == []


def test_an_agent_on_another_server_needs_a_route_and_no_hijack(db: Database) -> None:
    live, ami = Map(), Ami([])
    on_call(live, server="pbx2")
    with pytest.raises(LaunchRefused) as refused:
        launch(launcher(db, live, ami), server="pbx2")
    assert refused.value.reason == REFUSED_NO_ROUTE
    with pytest.raises(LaunchRefused) as refused:
        launch(launcher(db, live, ami, route=True), stage=Stage.HIJACK, server="pbx2")
    assert refused.value.reason == REFUSED_HIJACK_ELSEWHERE
    launch(launcher(db, live, ami, route=True), server="pbx2")
    [(server, _)] = ami.sent
    assert server == "pbx1"  # the phone's own server rings it


def test_ami_down_refuses_kills_the_token_and_closes_the_row(db: Database) -> None:
    live, ami = Map(), Ami([], down=True)
    on_call(live)
    with pytest.raises(LaunchRefused) as refused:
        launch(launcher(db, live, ami))
    assert refused.value.reason == REFUSED_UNAVAILABLE
    [record] = AuditLog(db).list(limit=5)
    assert record.end_reason == "service_unavailable"
    assert record.detail is not None and "originate failed" in record.detail
    live_tokens = db.execute("SELECT COUNT(*) FROM cross_tokens WHERE expires_at > ?",
                             (T0,)).fetchone()[0]
    assert live_tokens == 0


def test_a_store_that_cannot_write_refuses_before_anything_rings(db: Database) -> None:
    class Broken(TokenStore):
        def issue(self, grant: TokenGrant, now: float, ttl: float) -> str:
            raise StoreError("disk full")

    live, ami = Map(), Ami([])
    on_call(live)
    with pytest.raises(LaunchRefused) as refused:
        launch(launcher(db, live, ami, tokens=Broken(db)))
    assert refused.value.reason == REFUSED_UNAVAILABLE and ami.sent == []


def test_a_stale_map_has_no_sessions_and_refuses(db: Database) -> None:
    live, ami = Map(), Ami([])
    live.answers[(SESSION, "pbx1")] = Found("stale")
    target = launcher(db, live, ami)
    assert not target.session_exists("pbx1", SESSION)
    with pytest.raises(LaunchRefused) as refused:
        launch(target)
    assert refused.value.reason == REFUSED_UNAVAILABLE


def test_server_ip_names_one_server_and_defaults_to_ami_host(db: Database) -> None:
    target = launcher(db, Map(), Ami([]))
    assert target.server_for_ip("10.10.10.16") == "pbx1"  # ami_host
    assert target.server_for_ip("10.10.10.17") == "pbx2"
    assert target.server_for_ip("10.10.10.1") is None
    assert target.phone("350a") == PHONE and target.phone("350") is None


@pytest.mark.parametrize("change, key", [
    (('login = "350a"', 'login = "350 a"'), "phones[0].login"),
    (('dial = "PJSIP/350a"', 'dial = "PJSIP/350a,B"'), "phones[0].dial"),
    (('server = "pbx1"', 'server = "pbx9"'), "phones[0].server"),
    (('server_ip = "10.10.10.17"', 'server_ip = "10.10.10.16"'), "asterisk[].server_ip"),
])
def test_bad_phones_name_the_key(change: tuple[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as bad:
        parse(tomllib.loads(CONFIG.replace(*change)))
    assert str(bad.value).startswith(key), bad.value
