"""Logging a person in with their password: VICIdial's `user_authorization` for REPORTS.

One answer per try: OK (the person), BAD (unknown user, wrong password, no password set,
inactive, or user_level under 7: VICIdial's login for reports requires `user_level > 6 AND
active='Y'`), or LOCKED (10 failures in a row lock the user for 15 minutes, logins.py).
The hash is checked in the hash worker (never on the reactor), and always: an unknown user
costs one Argon2 verify against a dummy hash, so the time says nothing about who exists.
A locked user is refused before any hash, known or not, which also says nothing.
Every store call (lockout reads and writes, the hash lookup) goes through the store runner:
inline with SQLite, on the store thread with PostgreSQL, so a slow database never holds the
reactor (and with it every call and AMI event) during a sign-in.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.logger import Logger

from fastagi_spy.domain import Directory, SupervisorEntry
from fastagi_spy.store.logins import LoginLockout
from fastagi_spy.store.passwords import PasswordStore
from fastagi_spy.store.runner import InlineRunner, StoreRunner
from fastagi_spy.supervise.pincheck import PinCheckUnavailable

MIN_LEVEL = 7  # VICIdial: user_authorization(..., 'REPORTS', ...) wants user_level > 6
# Longer than any user or password we accept: refused without a hash or a row in the store.
MAX_USER, MAX_PASSWORD = 64, 1024
BAD_MESSAGE = "BAD"  # VICIdial's auth_message after a failed login that is not a lock

# (lane, user, password, stored hash, kind) -> Deferred[bool]: HashPool.verify
Verify = Callable[[str, str, str, str | None, str], Any]


class LoginVerdict(enum.Enum):
    OK = "ok"
    BAD = "bad"
    LOCKED = "locked"


@dataclass(frozen=True)
class Login:
    verdict: LoginVerdict
    person: SupervisorEntry | None  # set when OK
    auth_message: str  # VICIdial's <auth_message> for BAD ("BAD"); "" otherwise


class LoginUnavailable(PinCheckUnavailable):
    """The password could not be checked (the hash worker is stuck, gone or overloaded).
    Nothing was counted against the user; answer with an error and let them retry."""


_LOCKED = Login(LoginVerdict.LOCKED, None, "")
_BAD = Login(LoginVerdict.BAD, None, BAD_MESSAGE)


class PasswordChecker:
    """`await login(user, password, client)`; `client` (the peer's address) is the hash
    queue's lane, so one client flooding logins waits behind itself, not before others."""

    log = Logger()

    def __init__(self, directory: Directory, passwords: PasswordStore, lockout: LoginLockout,
                 verify: Verify, now: Callable[[], float],
                 runner: StoreRunner | None = None) -> None:
        self.directory = directory
        self.runner: StoreRunner = runner or InlineRunner()
        self.passwords = passwords
        self.lockout = lockout
        self.verify = verify
        self.now = now

    async def login(self, user: str, password: str, client: str) -> Login:
        if not user or len(user) > MAX_USER or len(password) > MAX_PASSWORD:
            return _BAD  # no configured user is this long: nothing to count or hash
        run = self.runner.run
        if not await run(self.lockout.admit, user, self.now()):
            return _LOCKED
        person = self.directory.person(user)
        stored = await run(self.passwords.get_hash, user) if person is not None else None
        try:
            matched = bool(await self.verify(f"http:{client}", user, password, stored,
                                             "password"))
        except PinCheckUnavailable as exc:
            await run(self.lockout.refund, user)
            raise LoginUnavailable(str(exc)) from exc
        now = self.now()
        if matched and person is not None and person.active and person.user_level >= MIN_LEVEL:
            if await run(self.lockout.grant, user, now):
                return Login(LoginVerdict.OK, person, "")
            return _LOCKED
        if await run(self.lockout.settle_failure, user, now):
            self.log.warn("HTTP login: user {user!r} locked for {minutes:g} minutes after "
                          "{failures} failed logins (the last from {client})", user=user,
                          minutes=self.lockout.policy.lock_s / 60,
                          failures=self.lockout.policy.max_failures, client=client)
        return _BAD
