"""Logging people in: VICIdial's answers, its 10-failure lockout, and no hint of who exists.

A real password store, lockout and (cheap) Argon2 hasher on an in-memory database; only the
hash worker is replaced by a verify that answers at once (or not yet, or fails).
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer
from twisted.python.failure import Failure

from fastagi_spy.net.hashworker import HashWorkerTimeout
from fastagi_spy.supervise.passwords import Login, LoginUnavailable, LoginVerdict
from tests.unit.people import People, people, person

OK, BAD, LOCKED = LoginVerdict.OK, LoginVerdict.BAD, LoginVerdict.LOCKED


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def login(site: People, user: str, password: str) -> Login:
    """Run one login to its end (the verify answers synchronously)."""
    result: list[Any] = []
    d = defer.ensureDeferred(site.checker.login(user, password, "127.0.0.2"))
    d.addBoth(result.append)
    assert result, "the login did not finish"
    if isinstance(result[0], Failure):
        result[0].raiseException()
    outcome: Login = result[0]
    return outcome


def test_the_right_password_logs_the_person_in() -> None:
    site = people({"9001": "right-password"})
    outcome = login(site, "9001", "right-password")
    assert outcome.verdict is OK and outcome.person is not None
    assert outcome.person.number == "9001" and outcome.auth_message == ""


def test_a_wrong_password_is_bad_with_vicidials_auth_message() -> None:
    outcome = login(people({"9001": "right-password"}), "9001", "wrong-password")
    assert (outcome.verdict, outcome.person, outcome.auth_message) == (BAD, None, "BAD")


def test_an_unknown_user_costs_a_hash_like_a_known_one() -> None:
    """Unknown users, and people without a password, are checked against the dummy hash:
    one Argon2 verify each, as for a wrong password, so the time tells nothing."""
    site = people({"9001": "right-password"}, person("9002"))
    assert login(site, "7777", "right-password").verdict is BAD
    assert login(site, "9002", "right-password").verdict is BAD  # a person with no password
    assert login(site, "9001", "wrong-password").verdict is BAD
    asked = site.verifier.asked
    assert [user for user, _ in asked] == ["7777", "9002", "9001"]
    assert asked[0][1] is None and asked[1][1] is None and asked[2][1] is not None


@pytest.mark.parametrize("fields", [{"active": False}, {"user_level": 6}])
def test_inactive_or_under_level_7_is_bad_even_with_the_right_password(
        fields: dict[str, Any]) -> None:
    """VICIdial's login for reports wants active = 'Y' and user_level > 6."""
    site = people({"9001": "right-password"}, person("9001", **fields))
    outcome = login(site, "9001", "right-password")
    assert (outcome.verdict, outcome.auth_message) == (BAD, "BAD")


def test_ten_failures_lock_the_user_for_15_minutes() -> None:
    """Failures 1-10 are BAD; the 11th try is LOCKED even with the right password and
    checks no hash; 15 minutes after the 10th failure the right password works again."""
    clock = Clock()
    site = people({"9001": "right-password"}, now=clock)
    answers = []
    for _ in range(10):
        answers.append(login(site, "9001", "wrong-password").verdict)
        clock.t += 10
    assert answers == [BAD] * 10
    locked_at = clock.t - 10
    hashes = len(site.verifier.asked)
    assert login(site, "9001", "right-password").verdict is LOCKED
    assert len(site.verifier.asked) == hashes  # refused before any hash
    clock.t = locked_at + 899
    assert login(site, "9001", "right-password").verdict is LOCKED
    clock.t = locked_at + 901
    assert login(site, "9001", "right-password").verdict is OK


def test_an_unknown_user_locks_too() -> None:
    """Otherwise an 11th try would tell an unknown name from a real one."""
    site = people({"9001": "right-password"})
    assert [login(site, "7777", "guess-guess").verdict for _ in range(11)] == [BAD] * 10 + [LOCKED]


def test_a_success_clears_the_count_and_a_quiet_streak_is_forgotten() -> None:
    clock = Clock()
    site = people({"9001": "right-password"}, now=clock)
    for _ in range(9):
        login(site, "9001", "wrong-password")
    assert login(site, "9001", "right-password").verdict is OK
    for _ in range(9):
        login(site, "9001", "wrong-password")
    clock.t += 901  # 15 minutes with no failure: the streak starts again
    assert [login(site, "9001", "wrong-password").verdict for _ in range(10)] == [BAD] * 10
    assert login(site, "9001", "wrong-password").verdict is LOCKED


def test_logins_at_the_same_moment_get_no_more_than_ten_tries() -> None:
    """Counted before the hash: with ten checks in flight the eleventh is refused at once."""
    site = people({"9001": "right-password"})
    pending: list[defer.Deferred[bool]] = []

    def slow(lane: str, user: str, password: str, stored: str | None,
             kind: str) -> defer.Deferred[bool]:
        pending.append(defer.Deferred())
        return pending[-1]

    site.checker.verify = slow
    results: list[Login] = []
    for _ in range(15):
        defer.ensureDeferred(site.checker.login("9001", "guess-guess", "127.0.0.2")).addCallback(
            results.append)
    assert len(pending) == 10 and [r.verdict for r in results] == [LOCKED] * 5
    for d in pending:
        d.callback(False)
    assert [r.verdict for r in results[5:]] == [BAD] * 10


def test_an_unanswered_hash_raises_and_is_not_counted() -> None:
    """The hash worker timing out is no judged guess: twenty of them lock nobody."""
    site = people({"9001": "right-password"})
    site.verifier.broken = HashWorkerTimeout("stuck")
    for _ in range(20):
        with pytest.raises(LoginUnavailable):
            login(site, "9001", "wrong-password")
    site.verifier.broken = None
    assert login(site, "9001", "right-password").verdict is OK


def test_an_absurdly_long_user_or_password_is_bad_without_a_hash_or_a_row() -> None:
    site = people({"9001": "right-password"})
    assert login(site, "9" * 65, "x").verdict is BAD
    assert login(site, "9001", "x" * 1025).verdict is BAD
    assert site.verifier.asked == []
    (rows,) = site.db.execute("SELECT COUNT(*) FROM login_failures").fetchone()
    assert rows == 0


def test_password_hashes_are_peppered_and_keyed_to_the_user() -> None:
    """The stored hash never holds the password; it verifies for its user only, and a
    password hash is no PIN hash (the same digits as PIN and password do not cross)."""
    from fastagi_spy.store.pins import PinHasher
    from tests.unit.people import PEPPER

    hasher = PinHasher.cheap(PEPPER)
    stored = hasher.hash_password("9001", "12345678")
    assert "12345678" not in stored
    assert hasher.verify_password("9001", "12345678", stored)
    assert not hasher.verify_password("9002", "12345678", stored)
    assert not hasher.verify("9001", "12345678", stored)  # not usable as a PIN
    assert not hasher.verify_password("9001", "12345678", hasher.hash_pin("9001", "12345678"))
    assert not PinHasher.cheap(b"another-pepper-sixteen+").verify_password(
        "9001", "12345678", stored)
    for bad in ("short", "x" * 129, "eight\nchars", "tab\tpassword"):
        with pytest.raises(ValueError):
            hasher.hash_password("9001", bad)
