"""The durable audit log: one row per supervision attempt, denied and abandoned ones too.

The row is committed before the spy starts and updated as the attempt goes on, so a kill -9
leaves an open row that the next start-up reconciles with the live channels
(``supervise/reconcile.py``).
"""

from __future__ import annotations

import builtins
import csv
import enum
from collections.abc import Iterable
from dataclasses import astuple, dataclass
from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime
from typing import TextIO

from fastagi_spy.domain import Mode
from fastagi_spy.store import chain
from fastagi_spy.store.database import Database


class EndReason(enum.StrEnum):
    """Why an attempt or session ended."""

    SUPERVISOR_HANGUP = "supervisor_hangup"
    AGENT_HANGUP = "agent_hangup"
    DENIED = "denied"
    LOCKED_OUT = "locked_out"
    BAD_PIN = "bad_pin"
    NOT_FOUND = "not_found"
    NOT_LOGGED_IN = "not_logged_in"
    NOT_ON_CALL = "not_on_call"
    AMBIGUOUS = "ambiguous"
    SERVICE_UNAVAILABLE = "service_unavailable"
    INVALID_TARGET = "invalid_target"
    ABANDONED = "abandoned"
    INTERRUPTED = "interrupted"
    SERVER_SHUTDOWN = "server_shutdown"  # our server stopped and hung the spy up first
    ERROR = "error"
    COMPLETED = "completed"
    NOTICE_FAILED = "notice_failed"  # a required notice could not be played: no spy


class AuthResult(enum.StrEnum):
    """The outcome of identifying the supervisor ("pending" until it is known)."""

    OK = "ok"
    BAD_PIN = "bad_pin"
    UNKNOWN_SUPERVISOR = "unknown_supervisor"
    LOCKED_OUT = "locked_out"
    NO_INPUT = "no_input"
    PENDING = "pending"


class Via(enum.StrEnum):
    """Where the request came from."""

    PHONE = "phone"
    API = "api"
    WEB = "web"
    CROSS_SERVER = "cross_server"  # sent over a [[cross_server]] trunk from another server
    UNEXPLAINED = "unexplained"  # a ChanSpy seen on AMI that no attempt of ours started


@dataclass(frozen=True)
class AuditRecord:
    """One audit row; field order is the column order and the CSV column order."""

    id: int
    started_at: float
    channel: str | None
    uniqueid: str | None
    via: str
    supervisor: str | None
    device: str | None
    auth_result: str | None
    requested_target: str | None
    agent: str | None
    resolved_channel: str | None
    server: str | None
    modes: str | None
    spy_started_at: float | None
    spy_stopped_at: float | None
    ended_at: float | None
    end_reason: str | None
    detail: str | None
    times_uncertain: int | None = None  # 1: spy times guessed (AMI lost meanwhile)


_COLUMNS = tuple(f.name for f in dataclass_fields(AuditRecord))
_TIME_COLUMNS = frozenset({"started_at", "spy_started_at", "spy_stopped_at", "ended_at"})
# Identity, origin and the ending are fixed by open()/close(); everything else may change.
_UPDATABLE = frozenset(_COLUMNS) - {"id", "started_at", "via", "ended_at", "end_reason"}
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM audit"
_MAX_LIST = 10_000
# Spreadsheets run cells starting with these as formulas (OWASP CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

FieldValue = str | float | None
_AUTH_RESULTS = frozenset(AuthResult)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds")


def _csv_cell(column: str, value: object) -> str:
    if value is None:
        return ""
    if column in _TIME_COLUMNS and isinstance(value, int | float):
        return _iso(float(value))
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _assignments(fields: dict[str, FieldValue]) -> tuple[str, tuple[FieldValue, ...]]:
    """``"a = ?, b = ?"`` and the values, for columns on the allow-list only.

    ValueError for any other column or an unknown auth_result. Column names come from the
    allow-list, never from the caller's values.
    """
    unknown = sorted(set(fields) - _UPDATABLE)
    if unknown:
        raise ValueError(f"audit columns not updatable: {', '.join(unknown)}")
    auth_result = fields.get("auth_result")
    if auth_result is not None and auth_result not in _AUTH_RESULTS:
        raise ValueError(f"unknown auth_result {auth_result!r}")
    names = tuple(fields)
    return ", ".join(f"{name} = ?" for name in names), tuple(fields[name] for name in names)


class EventKind(enum.StrEnum):
    """What an attempt's event (the audit_events table) records."""

    PIN = "pin"  # one typed PIN: "<claimed supervisor or -> <auth result>"
    MODE = "mode"  # a mode the spy switched to
    REFUSED = "refused"  # a target asked for and refused: "<target> <reason>: <detail>"
    NOTICE = "notice"  # the notice to the monitored parties: played, or why not


@dataclass(frozen=True)
class AuditEvent:
    audit_id: int
    at: float
    kind: str
    detail: str | None


class AuditLog:
    """Reads and writes the audit table; every method is one committed transaction."""

    def __init__(self, db: Database, instance: str | None = None) -> None:
        """``instance``: the name of the instance writing (several may share the database);
        each row it opens carries it, so its restart reconciles only its own rows."""
        self._db = db
        self._instance = instance

    @property
    def instance(self) -> str | None:
        """The name written on the rows this log opens."""
        return self._instance

    def open(
        self,
        started_at: float,
        via: str,
        *,
        channel: str | None = None,
        uniqueid: str | None = None,
        supervisor: str | None = None,
        device: str | None = None,
        auth_result: AuthResult = AuthResult.PENDING,
    ) -> int:
        """Start a record and return its id; committed before returning.

        ``auth_result`` stays "pending" until the caller is known; a caller already known
        (the next attempt in one call) opens its record as "ok".
        """
        Via(via)  # ValueError for anything but phone/api/web/cross_server
        # RETURNING, not lastrowid (PostgreSQL has none); fetchall reads the statement to its
        # end, so SQLite's autocommit commits it before this returns.
        rows = self._db.execute(
            "INSERT INTO audit (started_at, via, channel, uniqueid, supervisor, device, "
            "auth_result, instance) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (started_at, via, channel, uniqueid, supervisor, device,
             AuthResult(auth_result).value, self._instance),
        ).fetchall()
        return int(rows[0][0])

    def open_once(self, started_at: float, via: str, *, channel: str | None,
                  uniqueid: str | None, device: str | None = None,
                  **fields: FieldValue) -> tuple[int, bool]:
        """Open a record with ``fields`` unless an open one of this ``via``, channel and
        uniqueid exists; returns (its id, whether this call opened it). One transaction, and
        writers of every instance sharing the database run one at a time, so instances that
        see the same AMI event at once write one row between them."""
        with self._db.transaction() as conn:
            row = conn.execute(
                "SELECT id FROM audit WHERE ended_at IS NULL AND via = ? AND uniqueid = ? "
                "AND channel = ? ORDER BY id LIMIT 1", (via, uniqueid, channel)).fetchone()
            if row is not None:
                return int(row[0]), False
            record = self.open(started_at, via, channel=channel, uniqueid=uniqueid,
                               device=device)
            self.update(record, **fields)
            return record, True

    def update(self, record_id: int, **fields: FieldValue) -> None:
        """Set some columns; ValueError for a column outside the allow-list."""
        if not fields:
            return
        assignments, values = _assignments(fields)
        # A closed row is final: it is in the tamper-evident chain (chain.py).
        cursor = self._db.execute(
            f"UPDATE audit SET {assignments} WHERE id = ? AND ended_at IS NULL",
            (*values, record_id),
        )
        if cursor.rowcount == 0:
            raise KeyError(f"no open audit record {record_id}")

    def add_mode(self, record_id: int, mode: str) -> None:
        """Append a mode to the record's mode history ("listen,barge"); repeats are skipped."""
        Mode(mode)  # ValueError for anything but listen/whisper/barge
        with self._db.transaction() as conn:
            row = conn.execute("SELECT modes, ended_at FROM audit WHERE id = ?",
                               (record_id,)).fetchone()
            if row is None:
                raise KeyError(f"no audit record {record_id}")
            if row[1] is not None:
                return  # closed rows are final (chain.py): a late event changes nothing
            history = row[0].split(",") if row[0] else []
            if history and history[-1] == mode:
                return
            history.append(mode)
            conn.execute("UPDATE audit SET modes = ? WHERE id = ?", (",".join(history), record_id))

    def add_event(self, record_id: int, at: float, kind: EventKind, detail: str) -> None:
        """Append one event to an attempt's history (the row itself is not changed)."""
        self._db.execute(
            "INSERT INTO audit_events (audit_id, at, kind, detail) VALUES (?, ?, ?, ?)",
            (record_id, at, EventKind(kind).value, detail[:200]))

    def events(self, record_id: int) -> builtins.list[AuditEvent]:
        """An attempt's events, oldest first."""
        with self._db.transaction() as conn:
            rows = conn.execute(
                "SELECT audit_id, at, kind, detail FROM audit_events WHERE audit_id = ? "
                "ORDER BY at, id", (record_id,)).fetchall()
        return [AuditEvent(*row) for row in rows]

    def mark_spy_started(self, record_id: int, at: float) -> None:
        """Note when ChanSpy started; the first start is kept."""
        self._db.execute(
            "UPDATE audit SET spy_started_at = ? WHERE id = ? AND spy_started_at IS NULL "
            "AND ended_at IS NULL",
            (at, record_id),
        )

    def mark_spy_stopped(self, record_id: int, at: float) -> None:
        """Note when ChanSpy stopped; the last stop wins."""
        self._db.execute("UPDATE audit SET spy_stopped_at = ? WHERE id = ? AND ended_at IS NULL",
                         (at, record_id))

    def close(
        self,
        record_id: int,
        ended_at: float,
        reason: EndReason,
        detail: str | None = None,
        **fields: FieldValue,
    ) -> bool:
        """End the record once; later calls change nothing. Returns whether this call closed it.

        A None detail keeps any detail already written. ``fields`` (as :meth:`update` takes
        them) are written by the same statement, so only while the record is still open.
        A reason :meth:`claim_end` set stays, with its detail, whoever closes the record.
        """
        assignments, values = _assignments(fields) if fields else ("", ())
        reason = EndReason(reason)
        with self._db.transaction() as conn:
            cursor = conn.execute(
                f"UPDATE audit SET {assignments}{', ' if assignments else ''}"
                "ended_at = ?, end_reason = COALESCE(end_reason, ?), "
                "detail = CASE WHEN end_reason IS NULL OR end_reason = ? "
                "THEN COALESCE(?, detail) ELSE detail END "
                "WHERE id = ? AND ended_at IS NULL",
                (*values, ended_at, reason.value, reason.value, detail, record_id),
            )
            closed = cursor.rowcount > 0
            if closed:
                chain.link(conn, record_id)  # final now: it joins the chain as it closes
        return closed

    def claim_end(self, record_id: int, reason: EndReason, detail: str) -> bool:
        """Fix how an open record will end before it does (the shutdown, about to hang a spy
        up, so the flow's own close when its line drops cannot say otherwise). The first
        claim wins; returns whether this one did."""
        cursor = self._db.execute(
            "UPDATE audit SET end_reason = ?, detail = ? "
            "WHERE id = ? AND ended_at IS NULL AND end_reason IS NULL",
            (EndReason(reason).value, detail, record_id))
        return cursor.rowcount > 0

    def close_interrupted(self, now: float) -> int:
        """Close every open record as "interrupted" (start-up after a crash); returns how many.

        This assumes no other live instance shares the table: with several instances on one
        database it would also close their open records.
        """
        with self._db.transaction() as conn:
            cursor = conn.execute(
                "UPDATE audit SET ended_at = ?, end_reason = ? WHERE ended_at IS NULL",
                (now, EndReason.INTERRUPTED.value),
            )
            chain.seal_closed(conn)
        return cursor.rowcount

    def open_records(self) -> builtins.list[AuditRecord]:
        """Every record not closed yet, oldest first: what a crashed run left behind. With an
        instance name, only the rows that instance opened, and rows from before names (NULL):
        another live instance's open rows are its attempts in progress."""
        where, params = "ended_at IS NULL", tuple[str, ...]()
        if self._instance is not None:
            where, params = f"{where} AND (instance IS NULL OR instance = ?)", (self._instance,)
        with self._db.transaction() as conn:
            rows = conn.execute(f"{_SELECT} WHERE {where} ORDER BY id", params).fetchall()
        return [AuditRecord(*row) for row in rows]

    def open_record_of(self, uniqueid: str, channel: str) -> int | None:
        """The open record of the call with this uniqueid and channel (a spyer's), if any."""
        with self._db.transaction() as conn:
            row = conn.execute(
                "SELECT id FROM audit WHERE ended_at IS NULL AND uniqueid = ? AND channel = ? "
                "ORDER BY id DESC LIMIT 1", (uniqueid, channel)).fetchone()
        return None if row is None else int(row[0])

    def get(self, record_id: int) -> AuditRecord | None:
        """One record by id."""
        with self._db.transaction() as conn:
            row = conn.execute(f"{_SELECT} WHERE id = ?", (record_id,)).fetchone()
        return None if row is None else AuditRecord(*row)

    def list(
        self, limit: int = 100, since: float | None = None, supervisor: str | None = None
    ) -> builtins.list[AuditRecord]:
        """The newest records first, optionally since a time and for one supervisor."""
        if not 1 <= limit <= _MAX_LIST:
            raise ValueError(f"limit must be between 1 and {_MAX_LIST}")
        conditions: builtins.list[str] = []
        params: builtins.list[FieldValue] = []
        if since is not None:
            conditions.append("started_at >= ?")
            params.append(since)
        if supervisor is not None:
            conditions.append("supervisor = ?")
            params.append(supervisor)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        with self._db.transaction() as conn:
            rows = conn.execute(
                f"{_SELECT}{where} ORDER BY started_at DESC, id DESC LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [AuditRecord(*row) for row in rows]

    @staticmethod
    def export_csv(records: Iterable[AuditRecord], out: TextIO) -> None:
        """Write records as CSV: a header row, ISO-8601 UTC times, formula cells neutralised.

        Open `out` with newline="" as the csv module asks.
        """
        writer = csv.writer(out)
        writer.writerow(_COLUMNS)
        for record in records:
            writer.writerow(
                [_csv_cell(col, val) for col, val in zip(_COLUMNS, astuple(record), strict=True)]
            )
