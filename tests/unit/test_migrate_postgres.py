"""``fastagi-spy migrate`` on a real PostgreSQL (the ``postgres_url`` fixture): a SQLite site
moves over with nothing lost (every row, the same ids, the audit chain verifying and going
on); a target with rows is refused untouched; an unreachable server is one clear line."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from fastagi_spy import cli
from fastagi_spy.store import chain, schema, transfer
from fastagi_spy.store.audit import AuditLog, EndReason
from fastagi_spy.store.database import Database
from fastagi_spy.store.postgres import PostgresDatabase
from tests.unit.transfer_site import T0, build_site, table_rows

CONFIG = """
[server]
pin_pepper = "migrate-test-pepper-0123456789"
database = "{database}"

[store]
url = "{url}"

[[asterisk]]
name = "pbx1"
ami_username = "fastagi-spy"
ami_secret = "s3cret"
"""


def _config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(CONFIG.format(database=tmp_path / "unused.sqlite3", url=url))
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        cli.main(list(argv))
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out, err


def _everything(db: Any) -> dict[str, list[tuple[Any, ...]]]:
    with db.snapshot() as conn:
        return {t: table_rows(conn, t) for t in schema.TABLES}


@pytest.fixture
def site(tmp_path: Path) -> Path:
    path = tmp_path / "fastagi-spy.sqlite3"
    build_site(path)
    return path


def test_a_sqlite_site_moves_to_postgres_with_nothing_lost(
        tmp_path: Path, site: Path, postgres_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, postgres_url)
    code, out, err = _run(capsys, "migrate", "--config", str(config), "--from-sqlite", str(site))
    assert code == 0, err
    assert "audit" in out and " 6" in out  # the per-table counts are printed
    source = Database(site)
    target = PostgresDatabase(postgres_url)
    try:
        expected, copied = _everything(source), _everything(target)
        assert copied == expected  # every table, every row, every id
        assert len(copied["audit"]) == 6 and len(copied["pins"]) == 2
        code, out, err = _run(capsys, "audit", "--config", str(config), "--verify")
        assert code == 0, err
        assert "5 closed rows checked" in out and "audit chain OK" in out
        # The next attempt gets the next id (not 1: the sequence was moved past the copied
        # ids) and joins the copied chain.
        log = AuditLog(target)
        new = log.open(T0 + 200, "web", supervisor="2001")
        assert new == 7
        log.close(new, T0 + 201, EndReason.DENIED, "not allowed")
        with target.snapshot() as conn:
            report = chain.verify(conn, T0 + 300, 3600)
        assert report.ok and report.checked == 6 and report.head_seq == 6
    finally:
        source.close()
        target.close()


def test_a_target_with_rows_is_refused_and_left_unchanged(
        tmp_path: Path, site: Path, postgres_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, postgres_url)
    target = PostgresDatabase(postgres_url)
    try:
        schema.migrate(target)
        AuditLog(target).open(T0, "phone", supervisor="2009")
        before = _everything(target)
        code, _out, err = _run(capsys, "migrate", "--config", str(config),
                              "--from-sqlite", str(site))
        assert code == 2
        assert "already has rows in audit" in err and "nothing" in err
        assert len(err.strip().splitlines()) == 1
        assert _everything(target) == before
    finally:
        target.close()


def test_plain_migrate_brings_the_store_to_the_latest_version_once(
        tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, postgres_url)
    code, out, _ = _run(capsys, "migrate", "--config", str(config))
    assert code == 0 and out.strip() == f"schema version 0 -> {schema.LATEST}"
    code, out, _ = _run(capsys, "migrate", "--config", str(config))
    assert code == 0 and out.strip() == f"already at version {schema.LATEST}"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when this returns: nothing listens


@pytest.mark.parametrize("extra", [(), ("--from-sqlite",)])
def test_an_unreachable_postgres_is_one_line_naming_host_and_database_not_the_password(
        tmp_path: Path, site: Path, capsys: pytest.CaptureFixture[str],
        extra: tuple[str, ...]) -> None:
    url = f"postgresql://spy:hunter2-not-shown@127.0.0.1:{_closed_port()}/callcentre"
    config = _config(tmp_path, url)
    argv = ["migrate", "--config", str(config), *extra, *([str(site)] if extra else [])]
    code, out, err = _run(capsys, *argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "127.0.0.1" in err and "callcentre" in err
    assert "hunter2" not in err + out
    assert "Traceback" not in err


def test_ids_never_come_back_even_when_the_newest_row_was_deleted(
        tmp_path: Path, site: Path, postgres_url: str) -> None:
    """SQLite's AUTOINCREMENT never reuses the id of a deleted newest row (sqlite_sequence
    keeps it); after the move PostgreSQL does not either."""
    conn = sqlite3.connect(site)
    conn.execute("DELETE FROM audit WHERE id = 6 AND ended_at IS NULL")  # the open row
    conn.commit()
    conn.close()
    source, target = Database(site), PostgresDatabase(postgres_url)
    try:
        schema.migrate(target)
        copied = transfer.copy_site(source, target, schema.TABLES)
        assert dict(copied.counts)["audit"] == 5
        assert copied.sequences["audit.id"] == 7
        assert AuditLog(target).open(T0 + 200, "web") == 7
    finally:
        source.close()
        target.close()


def test_a_site_from_before_schema_versions_moves_and_its_chain_verifies(
        tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A file from the first release (an audit table only, no chain yet) is upgraded as it is
    opened, which the command says, and arrives with its closed row chained."""
    old = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(old)
    conn.execute("CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, started_at REAL "
                 "NOT NULL, channel TEXT, uniqueid TEXT, via TEXT NOT NULL, supervisor TEXT, "
                 "device TEXT, auth_result TEXT, requested_target TEXT, agent TEXT, "
                 "resolved_channel TEXT, server TEXT, modes TEXT, spy_started_at REAL, "
                 "spy_stopped_at REAL, ended_at REAL, end_reason TEXT, detail TEXT)")
    conn.execute("INSERT INTO audit (id, started_at, via, ended_at, end_reason) "
                 "VALUES (41, 1.5, 'phone', 2.5, 'agent_hangup')")
    conn.commit()
    conn.close()
    config = _config(tmp_path, postgres_url)
    code, out, err = _run(capsys, "migrate", "--config", str(config), "--from-sqlite", str(old))
    assert code == 0, err
    assert f"was at schema version 0; brought up to version {schema.LATEST} in place" in out
    code, out, err = _run(capsys, "audit", "--config", str(config), "--verify")
    assert code == 0 and "1 closed rows checked" in out, out + err
    target = PostgresDatabase(postgres_url)
    try:
        assert AuditLog(target).open(T0, "web") == 42
    finally:
        target.close()


def test_a_file_that_is_not_ours_is_refused_and_nothing_is_written(
        tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "crm.sqlite3"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.commit()
    conn.close()
    config = _config(tmp_path, postgres_url)
    code, _out, err = _run(capsys, "migrate", "--config", str(config), "--from-sqlite",
                           str(other))
    assert code == 2 and "not a fastagi-spy database" in err
    target = PostgresDatabase(postgres_url)
    try:
        with target.snapshot() as conn2:
            assert transfer.full_tables(conn2, schema.TABLES) == []
    finally:
        target.close()


def test_a_row_postgres_rejects_half_way_leaves_the_target_empty(
        tmp_path: Path, site: Path, postgres_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """All or nothing: the last table's bad row (text where a time belongs, which SQLite
    took) fails the copy after the audit rows went in, and none of them stays."""
    conn = sqlite3.connect(site)
    conn.execute("UPDATE settings_changes SET at = 'yesterday' WHERE id = 3")
    conn.commit()
    conn.close()
    config = _config(tmp_path, postgres_url)
    code, _out, err = _run(capsys, "migrate", "--config", str(config), "--from-sqlite",
                           str(site))
    assert code == 2 and "copying settings_changes" in err, err
    assert len(err.strip().splitlines()) == 1
    target = PostgresDatabase(postgres_url)
    try:
        with target.snapshot() as conn2:
            assert transfer.full_tables(conn2, schema.TABLES) == []
    finally:
        target.close()


@pytest.mark.parametrize("command", [("serve",), ("locks",)])
def test_a_server_or_command_on_an_unmigrated_postgres_says_to_migrate_in_one_line(
        tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str],
        command: tuple[str, ...]) -> None:
    """An admin who set [store] url but did not migrate yet: one line naming the command to
    run, exit 2, no traceback; the server never starts on a schema it does not know."""
    config = _config(tmp_path, postgres_url)
    code, out, err = _run(capsys, *command, "--config", str(config))
    assert code == 2, (out, err)
    assert err.strip().count("\n") == 0, err
    assert "fastagi-spy migrate --config" in err and "Traceback" not in err
