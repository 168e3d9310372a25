"""One-time tokens that stand in for a PIN: a supervisor sent over a trunk to another server's
bundle (purpose "cross"), or a supervisor's phone rung by blind_monitor (purpose "api").

The server issues a token on the supervisor's own server after the PIN and the rights check,
and the other server's bundle hands it back as its only AGI argument. A token is random (about
106 bits), short-lived and good once; only its SHA-256 is stored, with the supervisor, mode,
target and both servers bound to it, so a copy of the table lets nobody in. The rows live in
the shared SQLite store, so several server processes on one database could honour each
other's tokens.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from fastagi_spy.domain import Mode
from fastagi_spy.store.database import Database

TOKEN_DIGITS = 32  # digits only: any trunk carries them as a dialled number
TOKEN = re.compile(rf"[0-9]{{{TOKEN_DIGITS}}}")
# Spent and expired rows are kept this long, so a replay reads "replayed", not "forged".
KEEP_SPENT = 3600.0


class TokenRefused(Exception):
    """A token that lets nobody in; ``reason`` is forged, expired or replayed (for the audit)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TokenGrant:
    """What a token stands for: who may spy, how, on whom, going from which server to which."""

    origin: str  # the supervisor's server
    destination: str  # the server the target is on, where the token is redeemed
    supervisor: str
    mode: Mode
    target: str  # the digits the supervisor typed
    device: str | None = None  # the supervisor's phone, on the origin server
    purpose: str = "cross"  # "cross" (a [[cross_server]] trunk) or "api" (blind_monitor)
    stage: str | None = None  # api: VICIdial's stage (MONITOR, BARGE, ..., HIJACK)
    spy_server: str | None = None  # api: the server the agent's session is on
    note: str | None = None  # api: what the audit row says about the request


def new_token() -> str:
    return f"{secrets.randbelow(10 ** TOKEN_DIGITS):0{TOKEN_DIGITS}d}"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


class TokenStore:
    """Issues, redeems and revokes tokens; every method is one committed transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def issue(self, grant: TokenGrant, now: float, ttl: float) -> str:
        """A fresh token for ``grant``, good for ``ttl`` seconds; StoreError when it cannot be
        stored (then no token exists anywhere)."""
        if ttl <= 0:
            raise ValueError("a token needs a positive lifetime")
        token = new_token()
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM cross_tokens WHERE expires_at < ?", (now - KEEP_SPENT,))
            conn.execute(
                "INSERT INTO cross_tokens (digest, origin, destination, supervisor, mode, target,"
                " device, issued_at, expires_at, purpose, stage, spy_server, note)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (_digest(token), grant.origin, grant.destination, grant.supervisor,
                 grant.mode.value, grant.target, grant.device, now, now + ttl, grant.purpose,
                 grant.stage, grant.spy_server, grant.note))
        return token

    def redeem(self, token: str, now: float, purpose: str = "cross") -> TokenGrant:
        """Spend ``token`` and return its grant; TokenRefused says why not.

        Checked and spent in one transaction, so two calls racing with one token cannot both
        get in. An expired token is spent too: it can only ever be refused. A token issued
        for another purpose is refused ("wrong_purpose") and spent as well.
        """
        if TOKEN.fullmatch(token) is None:
            raise TokenRefused("forged")  # not even shaped like one of ours
        digest = _digest(token)
        with self._db.transaction() as conn:
            row = conn.execute(
                "SELECT origin, destination, supervisor, mode, target, device, expires_at,"
                " used_at, purpose, stage, spy_server, note FROM cross_tokens WHERE digest = ?",
                (digest,)).fetchone()
            if row is None:
                raise TokenRefused("forged")
            (origin, destination, supervisor, mode, target, device, expires_at, used_at,
             issued_for, stage, spy_server, note) = row
            if used_at is not None:
                raise TokenRefused("replayed")
            # Spent only if still unspent: several instances on one PostgreSQL database may
            # read the same unspent row at once (READ COMMITTED does not lock the SELECT);
            # the row lock the UPDATE takes lets exactly one of them spend it.
            spent = conn.execute("UPDATE cross_tokens SET used_at = ? WHERE digest = ? "
                                 "AND used_at IS NULL", (now, digest))
            if spent.rowcount != 1:
                raise TokenRefused("replayed")
        # Spent either way (committed above): an expired token can only ever be refused.
        if expires_at <= now:
            raise TokenRefused("expired")
        if (issued_for or "cross") != purpose:
            raise TokenRefused("wrong_purpose")
        return TokenGrant(origin, destination, supervisor, Mode(mode), target, device,
                          issued_for or "cross", stage, spy_server, note)

    def revoke(self, token: str, now: float) -> bool:
        """End ``token``'s life now (a later use reads "expired"); returns whether it had
        been redeemed."""
        digest = _digest(token)
        with self._db.transaction() as conn:
            row = conn.execute("SELECT used_at FROM cross_tokens WHERE digest = ?",
                               (digest,)).fetchone()
            # CASE, not MIN(a, b): scalar MIN is SQLite's own (PostgreSQL has LEAST).
            conn.execute("UPDATE cross_tokens SET expires_at = CASE WHEN expires_at < ? "
                         "THEN expires_at ELSE ? END WHERE digest = ?", (now, now, digest))
        return row is not None and row[0] is not None
