"""The PostgreSQL store on a real server (tests/conftest.py's ``postgres_url``): writers of
separate instances serialize as SQLite's do, connections are per thread, errors never show
the password; and the versioned schema on both backends."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
import urllib.parse
from pathlib import Path

import psycopg
import pytest

from fastagi_spy.config import parse
from fastagi_spy.store import audit_query, chain, schema
from fastagi_spy.store.audit import AuditLog, EndReason
from fastagi_spy.store.audit_counts import AuditCounts
from fastagi_spy.store.database import Database
from fastagi_spy.store.errors import StoreError
from fastagi_spy.store.lockout import LockoutPolicy, LockoutStore
from fastagi_spy.store.logins import LoginLockout, LoginPolicy
from fastagi_spy.store.open import SchemaOutdated, open_database
from fastagi_spy.store.passwords import PasswordStore
from fastagi_spy.store.postgres import POOL_MAX, PostgresDatabase, describe, translate
from fastagi_spy.store.settings import SettingsStore
from tests.postgres_harness import PostgresServer

T0 = 1_700_000_000.0
THRESHOLD = 3
ROUNDS = 60
WORKERS = 4


@pytest.fixture
def pg(postgres_url: str) -> PostgresDatabase:
    db = PostgresDatabase(postgres_url)
    schema.migrate(db)
    yield db
    db.close()


# -- writers of separate instances serialize --------------------------------------------------


def _hammer(url: str, start: multiprocessing.synchronize.Barrier,
            results: multiprocessing.Queue[list[int]]) -> None:
    """One instance: its own connector and LockoutStore; per round, THRESHOLD + 2 attempts
    on the round's key, at the same time as the other instances."""
    db = PostgresDatabase(url)
    store = LockoutStore(db, LockoutPolicy(THRESHOLD, 900.0, 900.0,
                                           supervisor_max_failures=THRESHOLD))
    admitted = []
    start.wait()
    for round_ in range(ROUNDS):
        key = f"device:PJSIP/r{round_}"
        admitted.append(sum(store.admit([key], T0 + round_).admitted
                            for _ in range(THRESHOLD + 2)))
    db.close()
    results.put(admitted)


def test_lockout_admission_is_atomic_across_instances(pg: PostgresDatabase,
                                                      postgres_url: str) -> None:
    """Four processes, each with its own PostgresDatabase and LockoutStore on one database,
    attempt the same keys at the same moment: no key ever admits more than its threshold
    (count-then-insert under the shared advisory write lock). Without the lock (checked by
    hand: remove it in postgres.py) several rounds admit 4-6."""
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(WORKERS)
    results: multiprocessing.Queue[list[int]] = ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(postgres_url, start, results))
             for _ in range(WORKERS)]
    for proc in procs:
        proc.start()
    per_worker = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    totals = [sum(worker[r] for worker in per_worker) for r in range(ROUNDS)]
    assert max(totals) <= THRESHOLD, f"over the threshold: {totals}"
    # The stored rows agree: exactly the admitted attempts were counted.
    (rows,) = pg.execute("SELECT COUNT(*) FROM auth_failures").fetchone()
    assert rows == sum(totals) == ROUNDS * THRESHOLD


# -- connections per thread ----------------------------------------------------------------


def test_threads_get_their_own_connection_and_writers_wait_for_each_other(
        pg: PostgresDatabase) -> None:
    """A transaction on thread A and one on thread B use different connections; B's write
    transaction waits for A's commit (the write lock), and then sees A's row."""
    a_inside, a_may_commit = threading.Event(), threading.Event()
    seen: dict[str, object] = {}

    def thread_a() -> None:
        with pg.transaction() as conn:
            seen["a_pid"] = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            conn.execute("INSERT INTO lockouts (key, until) VALUES (?, ?)", ("a", T0))
            a_inside.set()
            a_may_commit.wait(10)
            time.sleep(0.2)  # B is blocked on the lock meanwhile

    def thread_b() -> None:
        a_inside.wait(10)
        a_may_commit.set()
        began = time.monotonic()
        with pg.transaction() as conn:
            seen["waited"] = time.monotonic() - began
            seen["b_pid"] = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            seen["b_sees"] = conn.execute("SELECT key FROM lockouts").fetchall()

    threads = [threading.Thread(target=thread_a), threading.Thread(target=thread_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert seen["a_pid"] != seen["b_pid"]
    assert seen["waited"] >= 0.15
    assert seen["b_sees"] == [("a",)]


def test_a_nested_transaction_joins_and_a_failure_rolls_back_everything(
        pg: PostgresDatabase) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), pg.transaction() as outer:
        outer.execute("INSERT INTO lockouts (key, until) VALUES (?, ?)", ("x", T0))
        with pg.transaction() as inner:
            inner.execute("INSERT INTO lockouts (key, until) VALUES (?, ?)", ("y", T0))
        pg.execute("INSERT INTO lockouts (key, until) VALUES (?, ?)", ("z", T0))  # joins
        raise Boom
    assert pg.execute("SELECT COUNT(*) FROM lockouts").fetchone() == (0,)


def test_execute_outside_a_transaction_commits_at_once_with_rowcount(
        pg: PostgresDatabase, postgres_url: str) -> None:
    cursor = pg.execute("INSERT INTO lockouts (key, until) VALUES (?, ?), (?, ?)",
                        ("p", T0, "q", T0))
    assert cursor.rowcount == 2
    with psycopg.connect(postgres_url) as other:  # another session sees it: committed
        assert other.execute("SELECT COUNT(*) FROM lockouts").fetchone() == (2,)
    assert pg.execute("DELETE FROM lockouts WHERE key LIKE 'p%'").rowcount == 1


def test_a_snapshot_is_read_only_and_sees_one_state(pg: PostgresDatabase) -> None:
    with pg.snapshot() as conn:
        before = conn.execute("SELECT COUNT(*) FROM lockouts").fetchone()
        other = threading.Thread(target=lambda: pg.execute(
            "INSERT INTO lockouts (key, until) VALUES ('late', 1)"))
        other.start()
        other.join(10)
        assert conn.execute("SELECT COUNT(*) FROM lockouts").fetchone() == before
    assert pg.execute("SELECT COUNT(*) FROM lockouts").fetchone() == (1,)
    with pytest.raises(StoreError, match="read-only"), pg.snapshot() as conn:
        conn.execute("DELETE FROM lockouts")


def test_placeholders_translate_and_a_percent_stays_literal() -> None:
    assert translate("SELECT ? WHERE k LIKE 'pair:%'") == "SELECT %s WHERE k LIKE 'pair:%%'"


# -- the store modules on PostgreSQL ----------------------------------------------------------


def test_the_user_column_is_the_persons_name_not_current_user(pg: PostgresDatabase) -> None:
    """``user`` unquoted means current_user on PostgreSQL: every query would match."""
    passwords = PasswordStore(pg)
    passwords.set_hash("2001", "hash-a", T0)
    passwords.set_hash("2002", "hash-b", T0)
    assert passwords.get_hash("2001") == "hash-a"
    assert passwords.get_hash("postgres") is None  # the connecting role's name
    assert passwords.delete("2002") and not passwords.delete("2002")
    logins = LoginLockout(pg, LoginPolicy())
    for _ in range(LoginPolicy().max_failures):
        assert logins.admit("2001", T0)
        logins.settle_failure("2001", T0)
    assert logins.locked_until("2001", T0 + 1) is not None
    assert logins.locked_until("postgres", T0 + 1) is None
    assert [user for user, _ in logins.list_locked(T0 + 1)] == ["2001"]
    assert logins.unlock("2001") and logins.locked_until("2001", T0 + 1) is None


def test_the_audit_chain_links_and_verifies_on_postgres(pg: PostgresDatabase) -> None:
    log = AuditLog(pg)
    ids = [log.open(T0 + i, "phone", supervisor="2001") for i in range(3)]
    assert ids == [1, 2, 3]
    for i, record_id in enumerate(ids):
        log.update(record_id, agent="1001", modes="listen")
        assert log.close(record_id, T0 + 10 + i, EndReason.SUPERVISOR_HANGUP)
    with pg.snapshot() as conn:
        report = chain.verify(conn, T0 + 100, 86400.0)
    assert report.ok and report.checked == 3 and report.head_seq == 3
    pg.execute("UPDATE audit SET agent = '1002' WHERE id = 2")
    with pg.snapshot() as conn:
        assert chain.verify(conn, T0 + 100, 86400.0).broken is not None


def test_settings_save_on_postgres(pg: PostgresDatabase) -> None:
    settings = SettingsStore(pg)
    pg.execute("INSERT INTO settings (scope, key, value) VALUES (?, ?, ?)", ("pbx1", "ami_port", "5039"))
    assert settings.values("pbx1") == {"ami_port": "5039"}


# -- errors name the server, never the password ---------------------------------------------


def test_a_dead_server_or_missing_database_is_a_store_error_without_the_password(
        postgres: object, postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE ROLE spy LOGIN PASSWORD 'right-horse-battery'")
    port = postgres_url.rsplit(":", 1)[1].split("/", maxsplit=1)[0]
    # The test server trusts 127.0.0.1 (any password gets in): a closed port is the dead one.
    with socket_closed() as dead:
        url = f"postgresql://spy:s3cr3t-pw@127.0.0.1:{dead}/fsp"
        began = time.monotonic()
        with pytest.raises(StoreError) as caught:
            PostgresDatabase(url)
        assert time.monotonic() - began < 10
    message = str(caught.value)
    assert "s3cr3t-pw" not in message and f"127.0.0.1:{dead}/fsp" in message
    assert describe(f"postgresql://spy:pw@127.0.0.1:{port}/db") == (
        f"postgresql://spy@127.0.0.1:{port}/db")
    with pytest.raises(StoreError) as caught:  # a database that does not exist
        PostgresDatabase(f"postgresql://spy:s3cr3t-pw@127.0.0.1:{port}/nope")
    assert "nope" in str(caught.value) and "s3cr3t-pw" not in str(caught.value)


class socket_closed:
    """A loopback port nothing listens on while the block runs."""

    def __enter__(self) -> int:
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        return int(self._sock.getsockname()[1])

    def __exit__(self, *_: object) -> None:
        self._sock.close()


# -- the versioned schema ---------------------------------------------------------------------

OLD_SCHEMA = (  # a file made before versions existed (and before the chain and tokens' purpose)
    "CREATE TABLE pins (supervisor TEXT PRIMARY KEY, hash TEXT NOT NULL, updated_at REAL NOT NULL)",
    "CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, started_at REAL NOT NULL, "
    "channel TEXT, uniqueid TEXT, via TEXT NOT NULL, supervisor TEXT, device TEXT, "
    "auth_result TEXT, requested_target TEXT, agent TEXT, resolved_channel TEXT, server TEXT, "
    "modes TEXT, spy_started_at REAL, spy_stopped_at REAL, ended_at REAL, end_reason TEXT, "
    "detail TEXT)",
    "CREATE TABLE cross_tokens (digest TEXT PRIMARY KEY, origin TEXT NOT NULL, destination TEXT "
    "NOT NULL, supervisor TEXT NOT NULL, mode TEXT NOT NULL, target TEXT NOT NULL, device TEXT, "
    "issued_at REAL NOT NULL, expires_at REAL NOT NULL, used_at REAL)",
)


def test_an_old_sqlite_file_is_upgraded_and_marked_with_nothing_lost(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    for statement in OLD_SCHEMA:
        conn.execute(statement)
    conn.execute("INSERT INTO pins VALUES ('2001', 'h', 1.0)")
    conn.execute("INSERT INTO audit (started_at, via, ended_at, end_reason) "
                 "VALUES (1.0, 'phone', 2.0, 'caller_hangup')")
    conn.commit()
    conn.close()
    db = Database(path)
    assert schema.current_version(db) == schema.LATEST
    assert db.execute("SELECT * FROM pins").fetchall() == [("2001", "h", 1.0)]
    # The closed row joined the chain once, as before versions existed (chain.seal_closed).
    assert db.execute("SELECT seq FROM audit").fetchall() == [(1,)]
    assert schema.migrate(db) == (schema.LATEST, schema.LATEST)  # idempotent
    db.close()


def test_a_newer_schema_is_refused_on_both_backends(tmp_path: Path, pg: PostgresDatabase) -> None:
    path = tmp_path / "new.sqlite3"
    Database(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE schema_version SET version = ?", (schema.LATEST + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match=f"version {schema.LATEST + 1}, newer"):
        Database(path)
    pg.execute("UPDATE schema_version SET version = ?", (schema.LATEST + 1,))
    with pytest.raises(StoreError, match="newer"):
        schema.migrate(pg)


CONFIG = """
[server]
pin_pepper = "a-long-enough-pepper-0123"
[store]
url = "{url}"
[[asterisk]]
name = "pbx1"
ami_username = "u"
ami_secret = "s"
"""


def test_postgres_unmigrated_is_refused_with_the_command_to_run(postgres_url: str) -> None:
    import tomllib

    config = parse(tomllib.loads(CONFIG.format(url=postgres_url)))
    with pytest.raises(SchemaOutdated, match=r"fastagi-spy migrate --config FILE"):
        open_database(config)
    bare = PostgresDatabase(postgres_url)
    assert schema.current_version(bare) == 0
    assert schema.migrate(bare) == (0, schema.LATEST)
    assert schema.migrate(bare) == (schema.LATEST, schema.LATEST)
    bare.close()
    db = open_database(config)
    assert getattr(db, "is_remote", False) and schema.current_version(db) == schema.LATEST
    with pytest.raises(StoreError):  # the tables are all there: the schema is complete
        for table in schema.TABLES:
            db.execute(f"SELECT * FROM {table}")
        db.execute("SELECT * FROM not_a_table")
    db.close()


def test_two_instances_migrating_at_once_both_succeed(postgres_url: str) -> None:
    dbs = [PostgresDatabase(postgres_url) for _ in range(2)]
    out: list[tuple[int, int]] = []
    threads = [threading.Thread(target=lambda d=d: out.append(schema.migrate(d))) for d in dbs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(out) == [(0, schema.LATEST), (schema.LATEST, schema.LATEST)]
    for d in dbs:
        d.close()


def test_store_url_must_be_postgresql() -> None:
    import tomllib

    from fastagi_spy.config import ConfigError

    with pytest.raises(ConfigError, match=r"store\.url") as caught:
        parse(tomllib.loads(CONFIG.format(url="mysql://u:hunter2@h/db")))
    assert "hunter2" not in str(caught.value)


def test_audit_queries_and_counts_on_both_backends(any_db: Database) -> None:
    """The audit export's filters (newest N: a subquery PostgreSQL wants aliased) and the
    /metrics tallies read the same on both backends."""
    log = AuditLog(any_db)
    for i in range(5):
        record_id = log.open(T0 + i, "phone", supervisor="2001" if i % 2 else "2002")
        log.update(record_id, agent=f"10{i}")
        log.close(record_id, T0 + 10 + i, EndReason.SUPERVISOR_HANGUP if i < 3
                  else EndReason.DENIED)
    log.open(T0 + 9, "web", supervisor="2001")
    newest = list(audit_query.rows(any_db, audit_query.AuditQuery(newest=2)))
    assert [row["id"] for row in newest] == [5, 6]
    theirs = list(audit_query.rows(any_db, audit_query.AuditQuery(
        supervisor="2001", agents=frozenset({"101", "103", "999"}), since=T0, until=T0 + 4)))
    assert [row["agent"] for row in theirs] == ["101", "103"]
    counts = AuditCounts(any_db)
    assert counts.outcomes() == {"supervisor_hangup": 3, "denied": 2}
    assert counts.lockouts_active(T0) == 0


def test_open_stores_uses_the_configured_postgres_once_migrated(postgres_url: str) -> None:
    """service.open_stores follows [store] url: the stores then write to PostgreSQL."""
    import tomllib

    from fastagi_spy.service import open_stores

    config = parse(tomllib.loads(CONFIG.format(url=postgres_url)))
    with pytest.raises(SchemaOutdated):
        open_stores(config)
    migrating = PostgresDatabase(postgres_url)
    schema.migrate(migrating)
    migrating.close()
    stores = open_stores(config)
    try:
        assert isinstance(stores.db, PostgresDatabase)
        stores.pins.set_hash("2001", "h", T0)
        with psycopg.connect(postgres_url) as other:
            assert other.execute("SELECT supervisor FROM pins").fetchall() == [("2001",)]
    finally:
        stores.db.close()


def test_every_connection_has_the_timeouts(pg: PostgresDatabase) -> None:
    """A dead server or a stuck lock fails within seconds; a hung transaction cannot hold
    every instance's write lock for long."""
    with pg.transaction() as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("5s",)
        assert conn.execute("SHOW idle_in_transaction_session_timeout").fetchone() == ("1min",)


# -- sticky connections and broken ones -------------------------------------------------------


def _ours(url: str) -> str:
    return urllib.parse.urlparse(url).path.lstrip("/")


def _backends(postgres: PostgresServer, url: str) -> list[int]:
    """The server processes serving our connector's connections to the test's database."""
    with psycopg.connect(postgres.url, autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND "
                            "application_name = 'fastagi-spy'", (_ours(url),)).fetchall()
    return sorted(pid for (pid,) in rows)


def _kill_ours(postgres: PostgresServer, url: str) -> int:
    """pg_terminate_backend every connection of ours, waiting until each has gone (as a
    PostgreSQL restart or an admin's kill would leave them)."""
    with psycopg.connect(postgres.url, autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                            "WHERE datname = %s AND application_name = 'fastagi-spy'",
                            (_ours(url),)).fetchall()
    assert rows and all(done for (done,) in rows)
    return len(rows)


def test_a_killed_idle_connection_costs_the_caller_nothing(
        pg: PostgresDatabase, postgres: PostgresServer, postgres_url: str) -> None:
    """After pg_terminate_backend of every connection (this thread's sticky one too), the
    next transaction and the next read just work: the BEGIN and the read are retried once
    on a new connection. Without the retry (checked by hand: return at once in _start and
    execute) both raise StoreError "terminating connection due to administrator command"."""
    pg.execute("INSERT INTO lockouts (key, until) VALUES (?, ?)", ("before", T0))
    _kill_ours(postgres, postgres_url)
    with pg.transaction() as conn:
        conn.execute("INSERT INTO lockouts (key, until) VALUES (?, ?)", ("after", T0))
    _kill_ours(postgres, postgres_url)
    assert pg.execute("SELECT key FROM lockouts ORDER BY key").fetchall() == [
        ("after",), ("before",)]
    _kill_ours(postgres, postgres_url)
    with pg.snapshot() as conn:
        assert conn.execute("SELECT COUNT(*) FROM lockouts").fetchone() == (2,)


def test_a_write_outside_a_transaction_is_never_retried(
        pg: PostgresDatabase, postgres: PostgresServer, postgres_url: str) -> None:
    """An autocommit write on a killed connection may, for all psycopg can tell, have run:
    it fails closed (StoreError, no second copy), and the next call reconnects."""
    pg.execute("SELECT 1")
    _kill_ours(postgres, postgres_url)
    with pytest.raises(StoreError, match="statement"):
        pg.execute("INSERT INTO lockouts (key, until) VALUES (?, ?)", ("maybe", T0))
    assert pg.execute("SELECT key FROM lockouts").fetchall() == []  # the server said no
    pg.execute("INSERT INTO lockouts (key, until) VALUES (?, ?)", ("next", T0))
    assert pg.execute("SELECT key FROM lockouts").fetchall() == [("next",)]


def test_a_connection_killed_inside_a_transaction_fails_closed_and_the_next_call_works(
        pg: PostgresDatabase, postgres: PostgresServer, postgres_url: str) -> None:
    """Statements already ran on the killed connection: the caller hears StoreError (no
    retry could redo them safely), nothing of the transaction stays, the next call works."""
    with pytest.raises(StoreError, match="statement"), pg.transaction() as conn:
        conn.execute("INSERT INTO lockouts (key, until) VALUES (?, ?)", ("lost", T0))
        _kill_ours(postgres, postgres_url)
        conn.execute("INSERT INTO lockouts (key, until) VALUES (?, ?)", ("never", T0))
    with pg.transaction() as conn:
        assert conn.execute("SELECT key FROM lockouts").fetchall() == []
        conn.execute("INSERT INTO lockouts (key, until) VALUES (?, ?)", ("kept", T0))
    assert pg.execute("SELECT key FROM lockouts").fetchall() == [("kept",)]


def test_the_store_thread_keeps_one_connection(
        pg: PostgresDatabase, postgres: PostgresServer, postgres_url: str) -> None:
    """A thread's repeated calls (transactions, snapshots, single statements) all run on one
    connection, taken from the pool once: no checkout and no connection check per call.
    Without the stickiness (checked by hand: a checkout per call) the pool counts 60
    requests, not 1."""
    seen: dict[str, object] = {}

    def store_thread() -> None:
        before = pg._pool.get_stats().get("requests_num", 0)
        pids = set()
        for _ in range(20):
            with pg.transaction() as conn:
                pids.add(conn.execute("SELECT pg_backend_pid()").fetchone()[0])
            with pg.snapshot() as conn:
                pids.add(conn.execute("SELECT pg_backend_pid()").fetchone()[0])
            pids.add(pg.execute("SELECT pg_backend_pid()").fetchone()[0])
        seen["pids"] = pids
        seen["checkouts"] = pg._pool.get_stats().get("requests_num", 0) - before

    thread = threading.Thread(target=store_thread)
    thread.start()
    thread.join(30)
    assert seen["checkouts"] == 1
    assert len(seen["pids"]) == 1  # type: ignore[arg-type]
    assert set(seen["pids"]) <= set(_backends(postgres, postgres_url))  # type: ignore[call-overload]


def test_ended_threads_give_their_connections_back_and_the_cap_holds(
        pg: PostgresDatabase, postgres: PostgresServer, postgres_url: str) -> None:
    """Short-lived threads (tests, the CLI), more of them than the pool's cap, one after the
    other and then all alive at once: every call succeeds, and never more than the cap of
    connections is open (an ended thread's connection is reaped, an idle live thread's is
    taken over)."""
    failures: list[BaseException] = []

    def one_call(key: str) -> None:
        try:
            pg.execute("INSERT INTO lockouts (key, until) VALUES (?, ?)", (key, T0))
        except BaseException as exc:
            failures.append(exc)

    for n in range(POOL_MAX * 2):  # one after the other
        thread = threading.Thread(target=one_call, args=(f"seq{n}",))
        thread.start()
        thread.join(20)
    done = threading.Event()

    def call_then_stay(key: str) -> None:
        one_call(key)
        done.wait(20)  # alive, between calls, holding its connection

    alive = [threading.Thread(target=call_then_stay, args=(f"live{n}",))
             for n in range(POOL_MAX * 2)]
    for thread in alive:
        thread.start()
    for _ in range(200):
        if pg.execute("SELECT COUNT(*) FROM lockouts").fetchone()[0] == POOL_MAX * 4:
            break
        time.sleep(0.05)
    assert len(_backends(postgres, postgres_url)) <= POOL_MAX
    done.set()
    for thread in alive:
        thread.join(20)
    assert failures == []
    assert pg.execute("SELECT COUNT(*) FROM lockouts").fetchone() == (POOL_MAX * 4,)


def test_close_leaves_no_connection_open(postgres: PostgresServer, postgres_url: str) -> None:
    """close() closes every thread's connection: a thread still alive, this one, the pool's."""
    db = PostgresDatabase(postgres_url)
    schema.migrate(db)
    other_called, stop = threading.Event(), threading.Event()

    def other() -> None:
        db.execute("SELECT 1")
        other_called.set()
        stop.wait(20)

    thread = threading.Thread(target=other)
    thread.start()
    try:
        assert other_called.wait(20)
        with db.transaction() as conn:
            conn.execute("SELECT 1")
        assert len(_backends(postgres, postgres_url)) >= 2
        db.close()
        for _ in range(100):  # a backend leaves pg_stat_activity as it exits
            if not _backends(postgres, postgres_url):
                break
            time.sleep(0.05)
        assert _backends(postgres, postgres_url) == []
        with pytest.raises(StoreError):
            db.execute("SELECT 1")
    finally:
        stop.set()
        thread.join(20)
