"""The audit rows a compliance officer asks for, and writing them out as CSV or JSON Lines.

One place for the filters (supervisor, agent, team, time range, end reason, unexplained)
and the formats, so the CLI and the web page give the same answer. Reads run in a snapshot:
an export never holds up the server's audit writes.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from datetime import UTC, date, datetime, timedelta
from typing import TextIO

from fastagi_spy.domain import Directory
from fastagi_spy.store.audit import AuditRecord, AuthResult, EndReason, Via
from fastagi_spy.store.chain import CHAIN_COLUMNS
from fastagi_spy.store.database import Database

# The record's columns, then its place in the tamper-evident chain (chain.py).
COLUMNS = (*(f.name for f in dataclass_fields(AuditRecord)), *CHAIN_COLUMNS)
TIME_COLUMNS = frozenset({"started_at", "spy_started_at", "spy_stopped_at", "ended_at"})
# Spreadsheets run cells starting with these as formulas (OWASP CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
FORMATS = ("csv", "jsonl")
# An attempt's row is opened at most this long before its ChanSpy starts (PIN and target
# prompts are bounded by their timeouts): how far back a spy's explanation is looked for.
EXPLAIN_WINDOW = 6 * 3600.0

Row = dict[str, object]


class QueryError(ValueError):
    """A filter that cannot mean anything; the message says which and why."""


@dataclass(frozen=True)
class AuditQuery:
    supervisor: str | None = None
    agents: frozenset[str] | None = None  # None: any; from --agent and/or --team
    since: float | None = None  # started_at >= since
    until: float | None = None  # started_at < until
    reason: str | None = None
    unexplained: bool = False  # only ChanSpy runs no attempt of ours explains
    newest: int | None = None  # only the newest N rows (still written oldest first)


def parse_when(text: str, option: str, *, end: bool = False) -> float:
    """An ISO date (``2026-12-01``) or datetime (``2026-12-01T09:30``, ``...+01:00``) as a
    Unix time; without an offset it is UTC, as the export's times are. A date given as an
    ``end`` means the whole day: its end (the next midnight)."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return (start + timedelta(days=1) if end else start).timestamp()
        when = datetime.fromisoformat(text)
    except ValueError:
        raise QueryError(f"{option}: {text!r} is not an ISO date or date and time "
                         "(such as 2026-12-01 or 2026-12-01T09:30:00+01:00)") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def build(directory: Directory, *, supervisor: str | None = None, agent: str | None = None,
          team: str | None = None, since: str | None = None, until: str | None = None,
          reason: str | None = None, unexplained: bool = False,
          newest: int | None = None) -> AuditQuery:
    """A query from what a person typed; QueryError names the filter that is wrong."""
    agents: frozenset[str] | None = None
    if team is not None:
        agents = frozenset(a.number for a in directory.agents if a.team == team)
        if not agents:
            teams = ", ".join(sorted({a.team for a in directory.agents})) or "none"
            raise QueryError(f"--team: no agent in the directory is in team {team!r} "
                             f"(teams: {teams})")
    if agent is not None:
        agents = frozenset({agent}) if agents is None else agents & {agent}
    if reason is not None and reason not in set(EndReason):
        raise QueryError(f"--reason: {reason!r} is not an end reason "
                         f"(one of: {', '.join(sorted(EndReason))})")
    if newest is not None and newest < 1:
        raise QueryError("--limit: must be at least 1")
    start = parse_when(since, "--since") if since is not None else None
    stop = parse_when(until, "--until", end=True) if until is not None else None
    if start is not None and stop is not None and stop <= start:
        raise QueryError("--until: must be after --since")
    return AuditQuery(supervisor, agents, start, stop, reason, unexplained, newest)


def rows(db: Database, query: AuditQuery) -> Iterator[Row]:
    """The matching rows, oldest first (by id), as column -> value."""
    conditions: list[str] = []
    params: list[object] = []
    if query.supervisor is not None:
        conditions.append("supervisor = ?")
        params.append(query.supervisor)
    if query.agents is not None:
        conditions.append(f"agent IN ({', '.join('?' * len(query.agents)) or 'NULL'})")
        params.extend(sorted(query.agents))
    if query.since is not None:
        conditions.append("started_at >= ?")
        params.append(query.since)
    if query.until is not None:
        conditions.append("started_at < ?")
        params.append(query.until)
    if query.reason is not None:
        conditions.append("end_reason = ?")
        params.append(query.reason)
    if query.unexplained:
        conditions.append("via = ?")
        params.append(Via.UNEXPLAINED.value)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    sql = f"SELECT {', '.join(COLUMNS)} FROM audit{where}"
    if query.newest is not None:
        # The alias: PostgreSQL (before 16) requires one on a subquery in FROM.
        sql = f"SELECT * FROM ({sql} ORDER BY id DESC LIMIT ?) AS newest ORDER BY id"
        params.append(query.newest)
    else:
        sql += " ORDER BY id"
    with db.snapshot() as conn:
        cursor = conn.execute(sql, params)
        while batch := cursor.fetchmany(500):
            for values in batch:
                yield dict(zip(COLUMNS, values, strict=True))


def explains_spy(db: Database, server: str, spyer_uniqueid: str, spyee_channel: str,
                 at: float, *, notice: bool) -> bool:
    """Whether an authorised attempt of ours on record explains a ChanSpy on ``server``:
    the attempt's own channel spying on the channel it resolved; or, for the join notice's
    ChanSpy (``notice``), any open authorised attempt spying on that channel. The row is on
    disk before EXEC ChanSpy, so this holds however late AMI's event arrives."""
    row = db.execute(
        "SELECT 1 FROM audit WHERE started_at >= ? AND server = ? AND auth_result = ? "
        "AND resolved_channel = ? AND (uniqueid = ? OR (? AND ended_at IS NULL)) LIMIT 1",
        (at - EXPLAIN_WINDOW, server, AuthResult.OK.value, spyee_channel, spyer_uniqueid,
         notice)).fetchone()
    return row is not None


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds")


def _shown(column: str, value: object) -> object:
    """Times as ISO-8601 UTC; everything else as stored."""
    if column in TIME_COLUMNS and isinstance(value, int | float):
        return iso(float(value))
    return value


def write_csv(found: Iterable[Row], out: TextIO) -> int:
    """A header row, then one row per record, formula cells neutralised; returns how many.
    Open ``out`` with newline="" as the csv module asks."""
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    count = 0
    for row in found:
        cells = []
        for column in COLUMNS:
            value = _shown(column, row[column])
            text = "" if value is None else str(value)
            cells.append("'" + text if text.startswith(_FORMULA_STARTS) else text)
        writer.writerow(cells)
        count += 1
    return count


def write_jsonl(found: Iterable[Row], out: TextIO) -> int:
    """One JSON object per line, keys in column order; returns how many."""
    count = 0
    for row in found:
        out.write(json.dumps({c: _shown(c, row[c]) for c in COLUMNS}, ensure_ascii=False))
        out.write("\n")
        count += 1
    return count
