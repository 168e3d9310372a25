"""``fastagi-spy audit``: filters, CSV / JSON Lines export and ``--verify``, as an operator
runs them (the console script on a real config and database)."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fastagi_spy.config import load
from fastagi_spy.service import open_stores
from fastagi_spy.store.audit import EndReason, Via

CONFIG = """
[server]
pin_pepper = "export-test-pepper-0123456789"
database = "export.sqlite3"

[[asterisk]]
name = "pbx1"
ami_username = "fastagi-spy"
ami_secret = "s3cret"

[[agents]]
number = "1001"
team = "sales"
[[agents]]
number = "1002"
team = "sales"
[[agents]]
number = "1003"
team = "support"

[[supervisors]]
number = "2001"
teams = ["sales", "support"]
[[supervisors]]
number = "2002"
teams = ["sales"]
"""


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


# (started, supervisor, agent, end reason, via)
ROWS = [
    ("2026-11-30T23:59:59", "2001", "1001", EndReason.AGENT_HANGUP, Via.PHONE),
    ("2026-12-01T00:00:00", "2001", "1002", EndReason.DENIED, Via.PHONE),
    ("2026-12-01T12:00:00", "2002", "1003", EndReason.DENIED, Via.PHONE),
    ("2026-12-01T23:59:59", "2002", "1001", EndReason.SUPERVISOR_HANGUP, Via.PHONE),
    ("2026-12-02T00:00:00", None, "1003", EndReason.COMPLETED, Via.UNEXPLAINED),
]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(CONFIG)
    stores = open_stores(load(path))
    for started, supervisor, agent, reason, via in ROWS:
        rid = stores.audit.open(ts(started), via.value, supervisor=supervisor,
                                channel="Local/2001@fsp-phones-0001;2")
        stores.audit.update(rid, agent=agent, detail="=cmd|' /C calc'!A0")
        stores.audit.close(rid, ts(started) + 30, reason)
    stores.audit.open(ts("2026-12-02T01:00:00"), "phone", supervisor="2001")  # still open
    stores.db.close()
    return path


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fastagi_spy.cli", "audit", "--config",
                           str(config), *args],
                          capture_output=True, text=True, timeout=60, check=False)


def jsonl(config: Path, *args: str) -> list[dict[str, object]]:
    done = cli(config, "--format", "jsonl", *args)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def started(rows: list[dict[str, object]]) -> list[str]:
    return [str(r["started_at"])[:19] for r in rows]


@pytest.mark.parametrize("args, expected", [
    ((), [r[0] for r in ROWS] + ["2026-12-02T01:00:00"]),
    (("--supervisor", "2002"), [ROWS[2][0], ROWS[3][0]]),
    (("--agent", "1001"), [ROWS[0][0], ROWS[3][0]]),
    (("--team", "support"), [ROWS[2][0], ROWS[4][0]]),
    (("--team", "sales", "--agent", "1002"), [ROWS[1][0]]),
    (("--since", "2026-12-01", "--until", "2026-12-01"), [ROWS[1][0], ROWS[2][0], ROWS[3][0]]),
    (("--since", "2026-12-01T12:00:00Z"), [r[0] for r in ROWS[2:]] + ["2026-12-02T01:00:00"]),
    (("--until", "2026-12-01T13:00:00+01:00"), [ROWS[0][0], ROWS[1][0]]),  # exclusive
    (("--until", "2026-12-01T13:00:01+01:00"), [ROWS[0][0], ROWS[1][0], ROWS[2][0]]),
    (("--reason", "denied"), [ROWS[1][0], ROWS[2][0]]),
    (("--reason", "denied", "--supervisor", "2001"), [ROWS[1][0]]),
    (("--unexplained",), [ROWS[4][0]]),
    (("--limit", "2"), [ROWS[4][0], "2026-12-02T01:00:00"]),
])
def test_filters(config: Path, args: tuple[str, ...], expected: list[str]) -> None:
    assert started(jsonl(config, *args)) == expected


def test_jsonl_rows_carry_every_column_and_their_place_in_the_chain(config: Path) -> None:
    rows = jsonl(config)
    first = rows[0]
    assert first["started_at"] == "2026-11-30T23:59:59.000+00:00"
    assert first["end_reason"] == "agent_hangup" and first["seq"] == 1
    assert first["prev_hash"] == "0" * 64 and len(str(first["row_hash"])) == 64
    assert rows[1]["prev_hash"] == first["row_hash"]
    assert rows[-1]["seq"] is None and rows[-1]["ended_at"] is None  # open: not chained yet
    assert first["detail"] == "=cmd|' /C calc'!A0"  # JSON is data: kept as written


def test_csv_has_a_header_and_neutralised_formulas(config: Path) -> None:
    done = cli(config, "--format", "csv", "--agent", "1003")
    assert done.returncode == 0, done.stderr
    header, *rows = list(csv.reader(io.StringIO(done.stdout)))
    assert header[:2] == ["id", "started_at"] and header[-3:] == ["seq", "prev_hash", "row_hash"]
    assert len(rows) == 2
    detail = rows[0][header.index("detail")]
    assert detail == "'=cmd|' /C calc'!A0"
    assert cli(config, "--csv", "--agent", "1003").stdout == done.stdout


def test_table_is_newest_first(config: Path) -> None:
    done = cli(config, "--supervisor", "2002")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if "2002" in line]
    assert "supervisor_hangup" in lines[0] and "denied" in lines[1]


@pytest.mark.parametrize("args, message", [
    (("--since", "2026-13-01"), "--since: '2026-13-01' is not an ISO date or date and time"),
    (("--until", "yesterday"), "--until: 'yesterday' is not an ISO date"),
    (("--since", "2026-12-02", "--until", "2026-12-01T00:00"), "--until: must be after --since"),
    (("--team", "salse"), "--team: no agent in the directory is in team 'salse' "
                          "(teams: sales, support)"),
    (("--reason", "hangup"), "--reason: 'hangup' is not an end reason (one of: "),
    (("--limit", "0"), "--limit: must be at least 1"),
])
def test_bad_filters_get_a_clear_error(config: Path, args: tuple[str, ...], message: str) -> None:
    done = cli(config, *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_verify_passes_then_names_the_first_broken_row(config: Path) -> None:
    done = cli(config, "--verify")
    assert done.returncode == 0, done.stderr
    assert "5 closed rows checked" in done.stdout and "audit chain OK" in done.stdout
    assert "not chained yet" not in done.stdout
    old = cli(config, "--verify", "--open-bound", "60")
    assert old.returncode == 0 and "not chained yet (open longer than 60 s): rows 6" in old.stdout

    conn = sqlite3.connect(config.parent / "export.sqlite3")
    conn.execute("UPDATE audit SET agent = '1002' WHERE id = 3")
    conn.commit()
    conn.close()
    done = cli(config, "--verify")
    assert done.returncode == 1
    assert ("audit chain BROKEN at row id 3 (seq 3): its contents changed after it was closed"
            in done.stderr)
