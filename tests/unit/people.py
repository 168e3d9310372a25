"""People with passwords for unit tests: a real store and lockout on an in-memory database,
a real (cheap) Argon2 hasher, and a verify that records what it was asked."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer

from fastagi_spy.domain import Directory, Mode, SupervisorEntry
from fastagi_spy.store.database import Database
from fastagi_spy.store.logins import LoginLockout
from fastagi_spy.store.passwords import PasswordStore
from fastagi_spy.store.pins import PinHasher
from fastagi_spy.supervise.passwords import PasswordChecker

PEPPER = b"a-pepper-of-sixteen-bytes-or-more"


def person(number: str = "9001", **fields: Any) -> SupervisorEntry:
    return SupervisorEntry(number, f"Person {number}", frozenset({"sales"}),
                           frozenset({Mode.LISTEN}), **fields)


@dataclass
class Verifier:
    """HashPool.verify's shape, answering at once; `asked` is every (user, hash) checked."""

    hasher: PinHasher
    asked: list[tuple[str, str | None]] = field(default_factory=list)
    broken: Exception | None = None

    def __call__(self, lane: str, user: str, password: str, stored: str | None,
                 kind: str) -> defer.Deferred[bool]:
        assert kind == "password"
        self.asked.append((user, stored))
        if self.broken is not None:
            return defer.fail(self.broken)
        return defer.succeed(self.hasher.verify_password(user, password, stored))


@dataclass
class People:
    checker: PasswordChecker
    verifier: Verifier
    db: Database
    lockout: LoginLockout


def people(passwords: dict[str, str], *extra: SupervisorEntry,
           now: Callable[[], float] = lambda: 1000.0) -> People:
    """A checker for persons "9001".. with these passwords (plus `extra` people)."""
    db = Database(":memory:")
    hasher = PinHasher.cheap(PEPPER)
    store = PasswordStore(db)
    for user, password in passwords.items():
        store.set_hash(user, hasher.hash_password(user, password), 0.0)
    known = {p.number for p in extra}
    directory = Directory(
        (), tuple(person(u) for u in passwords if u not in known) + extra, frozenset())
    lockout = LoginLockout(db)
    verifier = Verifier(hasher)
    return People(PasswordChecker(directory, store, lockout, verifier, now), verifier, db,
                  lockout)
