"""Cross-server spying: one-time tokens, the [[cross_server]] config, and both ends of a crossing.

The flow tests run the real service (config, FastAGI factory, flow, SQLite audit and tokens)
with fake transports: one scripted Asterisk per server, the supervisor's on a, the agent's on
b. Only the PIN hash and the live map are stand-ins.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection

from fastagi_spy.config import ConfigError, CrossServerRoute, load
from fastagi_spy.domain import Mode
from fastagi_spy.model import Resolution
from fastagi_spy.service import SpyService
from fastagi_spy.store.audit import AuditRecord
from fastagi_spy.store.database import Database
from fastagi_spy.store.errors import StoreError
from fastagi_spy.store.tokens import TokenGrant, TokenRefused, TokenStore
from fastagi_spy.supervise.crossing import Crossing, dial_argument
from fastagi_spy.wire.agi import encode_env

T0 = 1_700_000_000.0
GRANT = TokenGrant("a", "b", "2001", Mode.WHISPER, "1001", "PJSIP/2001")

# -- the token store ---------------------------------------------------------------------------


@pytest.fixture
def tokens(any_db: Database) -> TokenStore:
    """On SQLite, then on the real PostgreSQL (tests/conftest.py)."""
    return TokenStore(any_db)


def test_a_token_is_good_once_and_binds_its_grant(tokens: TokenStore) -> None:
    token = tokens.issue(GRANT, T0, ttl=30)
    assert re.fullmatch(r"[0-9]{32}", token)
    assert tokens.redeem(token, T0 + 1) == GRANT
    with pytest.raises(TokenRefused) as refused:
        tokens.redeem(token, T0 + 2)
    assert refused.value.reason == "replayed"


def test_tokens_are_random_and_only_their_hash_is_stored(tmp_path: Path) -> None:
    db = Database(tmp_path / "tokens.sqlite3")
    store = TokenStore(db)
    issued = {store.issue(GRANT, T0, ttl=30) for _ in range(50)}
    db.checkpoint()
    db.close()
    assert len(issued) == 50
    on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert not any(token.encode() in on_disk for token in issued)


def test_an_expired_token_is_refused_and_spent(tokens: TokenStore) -> None:
    token = tokens.issue(GRANT, T0, ttl=30)
    for reason in ("expired", "replayed"):
        with pytest.raises(TokenRefused) as refused:
            tokens.redeem(token, T0 + 30)
        assert refused.value.reason == reason


@pytest.mark.parametrize("token", ["0" * 32, "1" * 31, "a" * 32, "", "1" * 32 + "\n"])
def test_a_token_we_never_issued_is_forged(tokens: TokenStore, token: str) -> None:
    tokens.issue(GRANT, T0, ttl=30)
    with pytest.raises(TokenRefused) as refused:
        tokens.redeem(token, T0)
    assert refused.value.reason == "forged"


def test_revoke_ends_a_token_and_says_whether_it_was_used(tokens: TokenStore) -> None:
    unused, used = tokens.issue(GRANT, T0, ttl=30), tokens.issue(GRANT, T0, ttl=30)
    tokens.redeem(used, T0 + 1)
    assert tokens.revoke(used, T0 + 2) is True
    assert tokens.revoke(unused, T0 + 2) is False
    with pytest.raises(TokenRefused) as refused:
        tokens.redeem(unused, T0 + 3)
    assert refused.value.reason == "expired"


def test_a_store_that_fails_issues_nothing(tokens: TokenStore, tmp_path: Path) -> None:
    db = Database(tmp_path / "closed.sqlite3")
    db.close()
    with pytest.raises(StoreError):
        TokenStore(db).issue(GRANT, T0, ttl=30)


def test_the_dial_argument_takes_only_a_token() -> None:
    route = CrossServerRoute("a", "b", "IAX2/trunk-b/{token}@fastagi-spy-cross", 15)
    token = "1" * 32
    assert dial_argument(route, token) == f"IAX2/trunk-b/{token}@fastagi-spy-cross,15,g"
    for bad in ("1" * 31, "1" * 32 + ",B", "1" * 16 + "&Local/x"):
        with pytest.raises(ValueError):
            dial_argument(route, bad)


# -- config -------------------------------------------------------------------------------------

SERVERS = """
[server]
pin_pepper = "unit-test-pepper-0123456789"
database = "spy.sqlite3"

[[asterisk]]
name = "a"
ami_host = "10.0.0.5"
ami_username = "u"
ami_secret = "s"

[[asterisk]]
name = "b"
ami_host = "10.0.0.6"
ami_username = "u"
ami_secret = "s"

[[agents]]
number = "1001"
team = "sales"
devices = ["PJSIP/1001"]

[[agents]]
number = "1003"
team = "support"
devices = ["PJSIP/1003"]

[[supervisors]]
number = "2001"
teams = ["sales"]
modes = ["listen", "whisper"]
devices = ["PJSIP/2001"]

[[supervisors]]
number = "2002"
teams = ["sales"]
modes = ["listen"]
devices = ["PJSIP/2002"]
"""
ROUTE = '\n[[cross_server]]\nfrom = "a"\nto = "b"\ndial = "IAX2/trunk-b/{token}"\n'


def _load(tmp_path: Path, text: str) -> SpyService:
    path = tmp_path / "spy.toml"
    path.write_text(text)
    return SpyService(load(path), reactor)


@pytest.mark.parametrize("route, error", [
    ('from = "a"\nto = "c"\ndial = "IAX2/t/{token}"', "cross_server[0].to: 'c' is not the name"),
    ('from = "x"\nto = "b"\ndial = "IAX2/t/{token}"', "cross_server[0].from: 'x'"),
    ('from = "a"\nto = "a"\ndial = "IAX2/t/{token}"', "cross_server[0].to: must differ"),
    ('from = "a"\nto = "b"\ndial = "IAX2/t/1001"', "cross_server[0].dial: expected"),
    ('from = "a"\nto = "b"\ndial = "IAX2/t/{token},B"', "cross_server[0].dial: expected"),
    ('from = "a"\nto = "b"\ndial = "IAX2/{token}/{token}"', "cross_server[0].dial: expected"),
    ('from = "a"\nto = "b"\ndial = "${X}/{token}"', "cross_server[0].dial: expected"),
    ('from = "a"\nto = "b"', "cross_server[0].dial: required"),
    ('from = "a"\nto = "b"\ndial = "IAX2/t/{token}"\ntoken_ttl = 3600',
     "cross_server[0].token_ttl: must be between"),
    ('from = "a"\nto = "b"\ndial = "IAX2/t/{token}"\ntrunk = 1', "cross_server[0].trunk: unknown"),
])
def test_cross_server_config_errors_name_the_key(tmp_path: Path, route: str, error: str) -> None:
    path = tmp_path / "spy.toml"
    path.write_text(f"{SERVERS}\n[[cross_server]]\n{route}\n")
    with pytest.raises(ConfigError) as raised:
        load(path)
    assert error in str(raised.value)


def test_a_second_route_between_the_same_servers_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "spy.toml"
    path.write_text(SERVERS + ROUTE + ROUTE)
    with pytest.raises(ConfigError, match=r"cross_server\[\]: duplicate 'a -> b'"):
        load(path)


# -- both ends of a crossing, through the real service ---------------------------------------

ON_B = Resolution(True, "ok", "b", "1001", None, "PJSIP/1001-00000007", "1700000000.7")
SUPPORT_ON_B = Resolution(True, "ok", "b", "1003", None, "PJSIP/1003-00000009", "1700000000.9")


@dataclass
class FakeResolver:
    answers: dict[tuple[str, str | None], Resolution] = field(default_factory=dict)

    def resolve(self, target: str, server: str | None = None) -> Resolution:
        return self.answers.get((target, server), Resolution.refuse("not_found"))

    def on_call_agents(self, server: str) -> list[tuple[str, float]]:
        return []


@pytest.fixture
def service(tmp_path: Path) -> Iterator[SpyService]:
    spy = _load(tmp_path, SERVERS + ROUTE)
    spy.agi.clock = Clock()
    spy.flow.deps.resolver = FakeResolver({("1001", "b"): ON_B, ("1003", "b"): SUPPORT_ON_B})

    async def any_pin_is_right(*_args: object) -> bool:
        return True

    spy.flow.deps.verify_pin = any_pin_is_right
    yield spy
    spy.stores.db.close()


class Asterisk:
    """One FastAGI connection from ``peer``, scripted command by command."""

    def __init__(self, service: SpyService, peer: str, script: str, channel: str,
                 *args: str) -> None:
        address = IPv4Address("TCP", peer, 40000)
        proto = service.agi.buildProtocol(address)
        assert proto is not None
        self.transport = StringTransportWithDisconnection(peerAddress=address)
        self.transport.protocol = proto
        proto.makeConnection(self.transport)
        self.proto = proto
        env = [("agi_network", "yes"), ("agi_network_script", script),
               ("agi_channel", channel), ("agi_uniqueid", "1700000000.1")]
        env += [(f"agi_arg_{i}", arg) for i, arg in enumerate(args, 1)]
        proto.dataReceived(encode_env(env))
        # The session-start mark (the bundle's fail-over reads it) comes before the flow.
        if self.transport.value().startswith(b'SET VARIABLE "FASTAGI_SPY_REACHED"'):
            self.transport.clear()
            proto.dataReceived(b"200 result=1\n")

    def sent(self) -> str:
        text = self.transport.value().decode()
        self.transport.clear()
        return text

    def expect(self, command: str, reply: str | None = None) -> str:
        sent = self.sent()
        assert sent.startswith(command), sent
        if reply is not None:
            self.proto.dataReceived(reply.encode())
        return sent


def supervisor_on_a(service: SpyService, target: str = "1001") -> Asterisk:
    """Supervisor 2001 dials *223<target> on a and types the PIN."""
    call = Asterisk(service, "10.0.0.5", "spy/whisper", "PJSIP/2001-00000001", target)
    call.expect("ANSWER", "200 result=0\n")
    call.expect('GET DATA "agent-pass"', "200 result=1234\n")
    return call


def trunk_call_on_b(service: SpyService, *args: str) -> Asterisk:
    """The trunk's call into b's bundle, context fastagi-spy-cross."""
    call = Asterisk(service, "10.0.0.6", "spy/cross", "IAX2/fsp-from-a-00000003", *args)
    call.expect("ANSWER", "200 result=0\n")
    return call


def dialled_token(call: Asterisk) -> str:
    sent = call.expect('EXEC "Dial" "IAX2/trunk-b/')
    found = re.fullmatch(r'EXEC "Dial" "IAX2/trunk-b/([0-9]{32}),20,g"\n', sent)
    assert found, sent
    return found.group(1)


def records(service: SpyService) -> list[AuditRecord]:
    """Every record, oldest first."""
    return list(reversed(service.stores.audit.list(limit=100)))


def refused_on_b(service: SpyService, *args: str) -> AuditRecord:
    """A trunk call with ``args`` hears "not available" and goodbye, and never a ChanSpy."""
    call = trunk_call_on_b(service, *args)
    call.expect('STREAM FILE "feature-not-avail-line"', "200 result=0 endpos=8000\n")
    call.expect('STREAM FILE "vm-goodbye"', "200 result=0 endpos=8000\n")
    call.expect('SET VARIABLE "FASTAGI_SPY_RESULT" "done"', "200 result=1\n")
    assert not call.transport.connected
    record = records(service)[-1]
    assert record.via == "cross_server" and record.channel == "IAX2/fsp-from-a-00000003"
    assert record.end_reason == "denied" and record.spy_started_at is None
    return record


def test_a_supervisor_is_sent_over_the_trunk_and_spies_on_the_other_server(
        service: SpyService) -> None:
    """On a, 2001 asks for 1001, who is on a call on b: a dials the trunk with a token; b's
    bundle hands it back, and ChanSpy runs on b on 1001's channel in the bound mode. Back on
    a, the supervisor gets the target prompt again."""
    sup = supervisor_on_a(service)
    token = dialled_token(sup)
    trunk = trunk_call_on_b(service, token)
    trunk.expect('EXEC "ChanSpy" "PJSIP/1001-00000007,quwESg(team_sales)"',
                 "200 result=-1\nHANGUP\n")  # the supervisor hung up on a
    sup.proto.dataReceived(b"200 result=0\n")  # Dial returns: the trunk hung up
    sup.expect('GET VARIABLE "DIALSTATUS"', "200 result=1 (ANSWER)\n")
    sup.expect('GET DATA "agent-newlocation"', "HANGUP\n")
    on_a, on_b = records(service)[0], records(service)[1]
    assert (on_a.via, on_a.server, on_a.agent, on_a.end_reason) == ("phone", "b", "1001",
                                                                   "completed")
    assert on_a.detail == "cross_server to b" and on_a.modes == "whisper"
    assert on_b.via == "cross_server" and on_b.detail == "cross_server from a"
    assert (on_b.supervisor, on_b.device, on_b.auth_result) == ("2001", "PJSIP/2001", "ok")
    assert (on_b.server, on_b.agent, on_b.resolved_channel) == ("b", "1001", "PJSIP/1001-00000007")
    assert on_b.ended_at is not None


def test_a_replayed_token_is_refused_and_audited(service: SpyService) -> None:
    sup = supervisor_on_a(service)
    token = dialled_token(sup)
    trunk = trunk_call_on_b(service, token)
    trunk.expect('EXEC "ChanSpy"', "200 result=-1\nHANGUP\n")
    record = refused_on_b(service, token)
    assert record.detail == "cross_server token replayed" and record.supervisor is None


@pytest.mark.parametrize("args", [("4" * 32,), ("abc",), ("1" * 32, "B"), ()])
def test_a_forged_token_is_refused_and_audited(service: SpyService, args: tuple[str, ...]) -> None:
    TokenStore(service.stores.db).issue(GRANT, T0, ttl=30)  # one real token exists
    record = refused_on_b(service, *args)
    assert record.detail == "cross_server token forged"


def test_an_expired_token_is_refused_and_audited(service: SpyService) -> None:
    crossing = service.flow.deps.crossing
    assert crossing is not None
    token = crossing.tokens.issue(GRANT, crossing.now() - 31, ttl=30)
    assert refused_on_b(service, token).detail == "cross_server token expired"


def test_a_token_for_b_is_refused_on_a(service: SpyService) -> None:
    crossing = service.flow.deps.crossing
    assert crossing is not None
    token = crossing.tokens.issue(GRANT, crossing.now(), ttl=30)
    call = Asterisk(service, "10.0.0.5", "spy/cross", "IAX2/fsp-from-b-00000003", token)
    call.expect("ANSWER", "200 result=0\n")
    call.expect('STREAM FILE "feature-not-avail-line"', "200 result=0 endpos=8000\n")
    call.expect('STREAM FILE "vm-goodbye"', "200 result=0 endpos=8000\n")
    assert records(service)[-1].detail == "cross_server token wrong_server"


def test_the_bound_supervisors_rights_are_checked_again_on_the_other_server(
        service: SpyService) -> None:
    """A token (issued by some other instance on the shared store) for listen-only 2002 in
    barge mode: b refuses it, "not allowed", and no ChanSpy."""
    crossing = service.flow.deps.crossing
    assert crossing is not None
    grant = TokenGrant("a", "b", "2002", Mode.BARGE, "1001", "PJSIP/2002")
    record = refused_on_b(service, crossing.tokens.issue(grant, crossing.now(), ttl=30))
    assert record.detail == "cross_server from a; mode" and record.supervisor == "2002"


def test_no_token_is_issued_for_an_agent_the_supervisor_may_not_spy_on(
        service: SpyService) -> None:
    """1003 (support) is on a call on b: 2001 (sales) hears "not allowed" on a; no Dial."""
    sup = supervisor_on_a(service, "1003")
    sup.expect('STREAM FILE "feature-not-avail-line"', "200 result=0 endpos=8000\n")
    sup.expect('GET DATA "agent-newlocation"', "HANGUP\n")
    record = records(service)[0]
    assert record.end_reason == "denied" and record.detail == "team; on b"
    count = service.stores.db.execute("SELECT COUNT(*) FROM cross_tokens").fetchone()[0]
    assert count == 0


def test_a_trunk_that_does_not_answer_is_heard_and_its_token_dies(service: SpyService) -> None:
    sup = supervisor_on_a(service)
    token = dialled_token(sup)
    sup.proto.dataReceived(b"200 result=0\n")
    sup.expect('GET VARIABLE "DIALSTATUS"', "200 result=1 (CHANUNAVAIL)\n")
    sup.expect('STREAM FILE "all-circuits-busy-now"', "200 result=0 endpos=8000\n")
    sup.expect('STREAM FILE "vm-goodbye"', "200 result=0 endpos=8000\n")
    record = records(service)[0]
    assert record.end_reason == "service_unavailable"
    assert record.detail == "cross_server to b: trunk CHANUNAVAIL"
    assert refused_on_b(service, token).detail == "cross_server token expired"


def test_a_token_store_that_fails_is_heard_and_nothing_is_dialled(service: SpyService) -> None:
    crossing = service.flow.deps.crossing
    assert isinstance(crossing, Crossing)

    def broken(*_args: object, **_kwargs: object) -> str:
        raise StoreError("disk I/O error")

    crossing.tokens.issue = broken  # type: ignore[method-assign]
    sup = supervisor_on_a(service)
    sup.expect('STREAM FILE "all-circuits-busy-now"', "200 result=0 endpos=8000\n")
    sup.expect('STREAM FILE "vm-goodbye"', "200 result=0 endpos=8000\n")
    record = records(service)[0]
    assert record.end_reason == "service_unavailable" and "token store" in (record.detail or "")


def test_without_a_route_the_other_server_is_refused(tmp_path: Path) -> None:
    """Only a -> b is configured: a supervisor on b asking for an agent on a is refused."""
    spy = _load(tmp_path, SERVERS + ROUTE)
    spy.agi.clock = Clock()
    spy.flow.deps.resolver = FakeResolver({("1001", "a"): Resolution(
        True, "ok", "a", "1001", None, "PJSIP/1001-00000002", "1.2")})

    async def any_pin_is_right(*_args: object) -> bool:
        return True

    spy.flow.deps.verify_pin = any_pin_is_right
    try:
        call = Asterisk(spy, "10.0.0.6", "spy/listen", "PJSIP/2001-00000001", "1001")
        call.expect("ANSWER", "200 result=0\n")
        call.expect('GET DATA "agent-pass"', "200 result=1234\n")
        call.expect('STREAM FILE "feature-not-avail-line"', "200 result=0 endpos=8000\n")
        call.expect('GET DATA "agent-newlocation"', "HANGUP\n")
        assert records(spy)[0].detail == "other_server a"
    finally:
        spy.stores.db.close()


def test_a_supervisor_who_hangs_up_during_the_crossing_closes_the_row_and_kills_the_token(
        service: SpyService) -> None:
    sup = supervisor_on_a(service)
    token = dialled_token(sup)
    sup.proto.dataReceived(b"HANGUP\n")
    record = records(service)[0]
    assert (record.end_reason, record.detail) == ("supervisor_hangup", "cross_server to b")
    assert refused_on_b(service, token).detail == "cross_server token expired"


def test_a_supervisor_who_hangs_up_as_the_trunk_answers_gets_no_next_attempt(
        service: SpyService) -> None:
    """Dial comes back answered but the supervisor's line is gone: the row ends as their
    hang-up, and no further attempt is opened for a caller who is not there."""
    sup = supervisor_on_a(service)
    dialled_token(sup)
    sup.proto.dataReceived(b"200 result=0\n")  # Dial returns: the trunk call has ended
    # ... and the supervisor's hang-up arrives right behind DIALSTATUS's answer.
    sup.expect('GET VARIABLE "DIALSTATUS"', "200 result=1 (ANSWER)\nHANGUP\n")
    assert "GET DATA" not in sup.sent()
    assert [r.end_reason for r in records(service)] == ["supervisor_hangup"]
