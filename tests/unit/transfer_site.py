"""A SQLite site with real rows in every table, written through the real store classes: the
input of the transfer tests (test_transfer.py, test_migrate_postgres.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastagi_spy.domain import Mode
from fastagi_spy.store.audit import AuditLog, AuthResult, EndReason, EventKind
from fastagi_spy.store.database import Database
from fastagi_spy.store.lockout import LockoutPolicy, LockoutStore, device_key, supervisor_key
from fastagi_spy.store.logins import LoginLockout, LoginPolicy
from fastagi_spy.store.passwords import PasswordStore
from fastagi_spy.store.pins import PinHasher, PinStore
from fastagi_spy.store.settings import SettingsStore
from fastagi_spy.store.tokens import TokenGrant, TokenStore

T0 = 1_700_000_000.0
PEPPER = b"p" * 32


def build_site(path: Path) -> None:
    """Closed and open audit rows (with events and the chain), PINs, passwords, PIN and
    login lockouts, tokens and settings, as a running server would have left them."""
    db = Database(path)
    try:
        hasher = PinHasher.cheap(PEPPER)
        PinStore(db).set_hash("2001", hasher.hash_pin("2001", "4711"), T0)
        PinStore(db).set_hash("2002", hasher.hash_pin("2002", "123456"), T0 + 1)
        PasswordStore(db).set_hash("2001", hasher.hash_password("2001", "s3cret é"), T0 + 2)
        locks = LockoutStore(db, LockoutPolicy(max_failures=2))
        locks.record_failure([device_key("PJSIP/3001"), supervisor_key("2002")], T0 + 3)
        locks.record_failure([device_key("PJSIP/3001")], T0 + 4)  # locked now
        logins = LoginLockout(db, LoginPolicy(max_failures=1))
        assert logins.admit("2002", T0 + 5)
        logins.settle_failure("2002", T0 + 5)
        tokens = TokenStore(db)
        tokens.issue(TokenGrant("pbx1", "pbx2", "2001", Mode.LISTEN, "1001"), T0 + 6, 30)
        tokens.issue(TokenGrant("pbx1", "pbx1", "2001", Mode.BARGE, "1002", "PJSIP/2001",
                                "api", "BARGE", "pbx1", "blind_monitor 1002"), T0 + 7, 30)
        SettingsStore(db).save("2001", "pbx1", {"ami_host": "127.0.0.1", "ami_secret": "x1"},
                               T0 + 8)
        SettingsStore(db).save("2001", "", {"code_whisper": ""}, T0 + 9)
        log = AuditLog(db)
        for i in range(5):
            rid = log.open(T0 + 10 + i, "phone", channel=f"Local/2001@fsp-{i:04x};2",
                           uniqueid=f"{T0 + 10 + i}", supervisor="2001", device="PJSIP/2001",
                           auth_result=AuthResult.OK)
            log.add_event(rid, T0 + 10.1 + i, EventKind.PIN, f"try {i} ü")
            log.update(rid, requested_target="1001", agent="1001", server="pbx1",
                       resolved_channel="PJSIP/1001-0000000a")
            log.add_mode(rid, "listen")
            log.mark_spy_started(rid, T0 + 10.25 + i)
            log.mark_spy_stopped(rid, T0 + 10.75 + i)
            log.close(rid, T0 + 11 + i, EndReason.AGENT_HANGUP, f"detail {i} — ok")
        log.open(T0 + 20, "api", supervisor="2002")  # still open: not in the chain yet
    finally:
        db.close()


def table_rows(conn: Any, table: str) -> list[tuple[Any, ...]]:
    """Every row of ``table`` with its columns by name, in a stable order."""
    cursor = conn.execute(f'SELECT * FROM "{table}"')
    names = [d[0] for d in cursor.description]
    rows = [tuple(sorted(zip(names, row, strict=True))) for row in cursor.fetchall()]
    return sorted(rows, key=repr)
