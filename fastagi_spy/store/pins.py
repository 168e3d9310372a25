"""Supervisor PINs: peppered Argon2id hashes and their storage.

A 4-12 digit PIN has too few values for hashing alone to protect a stolen table, so each PIN
is first keyed with HMAC-SHA256 under a pepper kept outside the database, then hashed with
Argon2id. Online lockout (see lockout.py) is the primary control; this is the second one.
Hashing is slow on purpose: call it from a thread, never on the reactor.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from fastagi_spy.store.database import Database

_PIN = re.compile(r"[0-9]{4,12}")
_MIN_PEPPER_BYTES = 16
# A PIN nobody can type (letters), hashed once per hasher so unknown supervisors cost the same.
_DUMMY_SUPERVISOR = "\x00dummy"
_DUMMY_PIN = "not-a-pin"
MIN_PASSWORD, MAX_PASSWORD = 8, 128


class PinHasher:
    """Hash and verify PINs as Argon2id(HMAC-SHA256(pepper, supervisor + NUL + pin)).

    The defaults are OWASP's Argon2id baseline (19 MiB, t=2, p=1).
    """

    def __init__(
        self,
        pepper: bytes,
        time_cost: int = 2,
        memory_cost_kib: int = 19456,
        parallelism: int = 1,
    ) -> None:
        if len(pepper) < _MIN_PEPPER_BYTES:
            raise ValueError(f"pepper must be at least {_MIN_PEPPER_BYTES} bytes")
        self._pepper = bytes(pepper)
        self._hasher = PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_cost_kib,
            parallelism=parallelism,
            type=Type.ID,
        )
        # Same parameters as real hashes, so verifying against it takes the same time.
        self._dummy_hash = self._hasher.hash(self._keyed(_DUMMY_SUPERVISOR, _DUMMY_PIN))

    @classmethod
    def cheap(cls, pepper: bytes) -> PinHasher:
        """A deliberately weak hasher (t=1, 8 KiB) for tests and benchmarks only.

        It is fast enough to run hundreds of verifies per test; never use it in production,
        where it would make an offline guess of a stolen table almost free.
        """
        return cls(pepper, time_cost=1, memory_cost_kib=8, parallelism=1)

    def _keyed(self, supervisor: str, pin: str) -> str:
        message = f"{supervisor}\0{pin}".encode()
        return hmac.new(self._pepper, message, hashlib.sha256).hexdigest()

    def hash_pin(self, supervisor: str, pin: str) -> str:
        """The stored form of `pin` for `supervisor`; ValueError unless the PIN is 4-12 digits."""
        if _PIN.fullmatch(pin) is None:
            raise ValueError("PIN must be 4 to 12 digits")
        if not supervisor or "\0" in supervisor:
            raise ValueError("supervisor must be a non-empty string without NUL")
        return self._hasher.hash(self._keyed(supervisor, pin))

    def verify(self, supervisor: str, pin: str, stored_hash: str | None) -> bool:
        """Whether `pin` is right; always runs one Argon2 verify, whatever the input.

        An unknown supervisor (stored_hash None) or a malformed PIN is checked against a dummy
        hash, so neither answers faster than a wrong PIN for a real supervisor.
        """
        well_formed = stored_hash is not None and _PIN.fullmatch(pin) is not None
        target = stored_hash if stored_hash is not None and well_formed else self._dummy_hash
        try:
            matched = self._hasher.verify(target, self._keyed(supervisor, pin))
        except (VerificationError, InvalidHashError):
            return False
        return well_formed and matched

    # Passwords (the HTTP API's people) share the pepper and the cost. The HMAC message starts
    # with "password" and a NUL, which no PIN message can (a supervisor number is digits).
    def hash_password(self, user: str, password: str) -> str:
        """The stored form of `password` for `user`; ValueError names what is wrong with it."""
        if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            raise ValueError(f"a password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")
        if any(ord(c) < 32 or ord(c) == 127 for c in password):
            raise ValueError("a password must not contain control characters (CR, LF, tab, NUL)")
        if not user or "\0" in user:
            raise ValueError("user must be a non-empty string without NUL")
        return self._hasher.hash(self._keyed(f"password\0{user}", password))

    def verify_password(self, user: str, password: str, stored_hash: str | None) -> bool:
        """Whether `password` is right; always one Argon2 verify (a dummy one for an unknown
        user, or a password no hash could match), so the time says nothing about the user."""
        target = stored_hash if stored_hash is not None else self._dummy_hash
        try:
            matched = self._hasher.verify(target, self._keyed(f"password\0{user}", password))
        except (VerificationError, InvalidHashError):
            return False
        return stored_hash is not None and matched

    def needs_rehash(self, stored_hash: str) -> bool:
        """Whether a stored hash uses older parameters and should be replaced on next login."""
        try:
            return self._hasher.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True


class PinStore:
    """The pins table: one hash per supervisor number."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def set_hash(self, supervisor: str, hash: str, now: float) -> None:
        """Store (or replace) the hash for a supervisor."""
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO pins (supervisor, hash, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (supervisor) DO UPDATE "
                "SET hash = excluded.hash, updated_at = excluded.updated_at",
                (supervisor, hash, now),
            )

    def get_hash(self, supervisor: str) -> str | None:
        """The stored hash, or None for a supervisor without a PIN."""
        row = self._db.execute(
            "SELECT hash FROM pins WHERE supervisor = ?", (supervisor,)
        ).fetchone()
        return None if row is None else str(row[0])

    def delete(self, supervisor: str) -> bool:
        """Remove a supervisor's PIN; returns whether there was one."""
        with self._db.transaction() as conn:
            cursor = conn.execute("DELETE FROM pins WHERE supervisor = ?", (supervisor,))
        return cursor.rowcount > 0
