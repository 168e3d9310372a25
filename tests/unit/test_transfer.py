"""store/transfer.py on SQLite alone: which files it accepts as a source, and a copy into an
empty store keeps every row, id and the chain; a store with rows is refused untouched.
(The copy into a real PostgreSQL is in test_migrate_postgres.py.)"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from fastagi_spy.store import chain, schema
from fastagi_spy.store.audit import AuditLog, EndReason
from fastagi_spy.store.database import Database
from fastagi_spy.store.settings import SettingsStore
from fastagi_spy.store.transfer import TransferError, copy_site, inspect_source, upgrades
from tests.unit.transfer_site import T0, build_site, table_rows

TABLES = schema.TABLES


def _open(path: Path) -> Database:
    return Database(path)


def test_a_missing_file_is_refused_and_not_created(tmp_path: Path) -> None:
    with pytest.raises(TransferError, match="no such file"):
        inspect_source(tmp_path / "nope.sqlite3")
    assert not (tmp_path / "nope.sqlite3").exists()


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite3"
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(TransferError, match="not a SQLite database"):
        inspect_source(path)


def test_someone_elses_sqlite_file_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(TransferError, match="not a fastagi-spy database"):
        inspect_source(path)
    conn = sqlite3.connect(path)
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    conn.close()
    assert names == ["customers"]  # no schema of ours written into it


def test_an_old_site_is_upgraded_at_open_and_that_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    # The audit table of the first release: no chain columns, no other tables.
    conn.execute("CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, started_at REAL "
                 "NOT NULL, channel TEXT, uniqueid TEXT, via TEXT NOT NULL, supervisor TEXT, "
                 "device TEXT, auth_result TEXT, requested_target TEXT, agent TEXT, "
                 "resolved_channel TEXT, server TEXT, modes TEXT, spy_started_at REAL, "
                 "spy_stopped_at REAL, ended_at REAL, end_reason TEXT, detail TEXT)")
    conn.execute("INSERT INTO audit (started_at, via, ended_at, end_reason) "
                 "VALUES (1.5, 'phone', 2.5, 'agent_hangup')")
    conn.commit()
    conn.close()
    before = inspect_source(path)
    Database(path).close()
    added = upgrades(before, inspect_source(path))
    assert {"audit.seq", "audit.row_hash", "audit_chain", "pins"} <= set(added)


def test_copy_into_an_empty_store_keeps_every_row_id_and_the_chain(tmp_path: Path) -> None:
    build_site(tmp_path / "site.sqlite3")
    source, target = _open(tmp_path / "site.sqlite3"), _open(tmp_path / "new.sqlite3")
    copied = copy_site(source, target, TABLES, now=T0 + 100)
    counts = dict(copied.counts)
    assert counts["audit"] == 6 and counts["audit_events"] == 5 and counts["pins"] == 2
    assert all(counts[t] > 0 for t in TABLES), counts  # the site really fills every table
    assert copied.chain.ok and copied.chain.checked == 5 and copied.chain.head_seq == 5
    with source.snapshot() as a, target.snapshot() as b:
        for table in TABLES:
            assert table_rows(a, table) == table_rows(b, table), table
    log = AuditLog(target)
    new = log.open(T0 + 200, "web")
    assert new == 7  # the next id after the copied ones
    log.close(new, T0 + 201, EndReason.DENIED)
    with target.snapshot() as conn:
        report = chain.verify(conn, T0 + 300, 3600)
    assert report.ok and report.head_seq == 6


def test_a_store_with_rows_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    build_site(tmp_path / "site.sqlite3")
    source, target = _open(tmp_path / "site.sqlite3"), _open(tmp_path / "new.sqlite3")
    SettingsStore(target).save("2009", "", {"code_listen": "*555"}, T0)
    with target.snapshot() as conn:
        before = {t: table_rows(conn, t) for t in TABLES}
    with pytest.raises(TransferError, match="already has rows in settings, settings_changes"):
        copy_site(source, target, TABLES)
    with target.snapshot() as conn:
        assert {t: table_rows(conn, t) for t in TABLES} == before


def test_a_table_this_version_does_not_know_is_refused(tmp_path: Path) -> None:
    build_site(tmp_path / "site.sqlite3")
    source, target = _open(tmp_path / "site.sqlite3"), _open(tmp_path / "new.sqlite3")
    source.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    with pytest.raises(TransferError, match="tables this version does not know: notes"):
        copy_site(source, target, TABLES)


SQLITE_CONFIG = """
[server]
pin_pepper = "migrate-test-pepper-0123456789"
database = "{database}"

[[asterisk]]
name = "pbx1"
ami_username = "fastagi-spy"
ami_secret = "s3cret"
"""


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from fastagi_spy import cli

    with pytest.raises(SystemExit) as done:
        cli.main(list(argv))
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out, err


def test_migrate_on_a_sqlite_site_says_what_it_did_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.toml"
    config.write_text(SQLITE_CONFIG.format(database=tmp_path / "site.sqlite3"))
    assert _cli(capsys, "migrate", "--config", str(config)) == (
        0, f"schema version 0 -> {schema.LATEST}\n", "")
    assert _cli(capsys, "migrate", "--config", str(config)) == (
        0, f"already at version {schema.LATEST}\n", "")


def test_from_sqlite_needs_a_postgresql_store(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build_site(tmp_path / "site.sqlite3")
    config = tmp_path / "c.toml"
    config.write_text(SQLITE_CONFIG.format(database=tmp_path / "other.sqlite3"))
    code, out, err = _cli(capsys, "migrate", "--config", str(config), "--from-sqlite",
                          str(tmp_path / "site.sqlite3"))
    assert code == 2 and out == ""
    assert "set [store] url" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "other.sqlite3").exists()


def test_the_readme_steps_match_the_command_and_the_config() -> None:
    """README's "Moving to PostgreSQL": its [store] block is a valid config and its
    migrate command line is one the CLI takes."""
    import re
    import tomllib

    from fastagi_spy import cli
    from fastagi_spy.config import parse

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    part = readme.split("#### Moving to PostgreSQL", 1)[1].split("\n### ", 1)[0]
    store = re.search(r"```toml\n(.*?)```", part, re.S)
    assert store is not None
    raw = tomllib.loads(SQLITE_CONFIG.format(database="x.sqlite3") + store.group(1))
    assert (parse(raw).store_url or "").startswith("postgresql://fastagi_spy:")
    command = re.search(r"fastagi-spy (migrate .*?)\n(?!    )", part.replace("\\\n", ""), re.S)
    assert command is not None
    args = cli._parser().parse_args(command.group(1).split())
    assert args.run is cli._migrate and args.from_sqlite is not None
