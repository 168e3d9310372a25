"""Running totals read from the audit log itself, for the metrics page.

The audit trail already records every attempt's end reason and every PIN typed, so the
metrics count those rows instead of keeping counters of their own on the call path. Each
scrape reads only the rows added since the last one: rows below the oldest still-open
attempt are settled (an attempt's end reason is written once) and folded into a tally;
only the rows above it are counted again. The totals therefore cover the whole trail,
survive a restart and never go down.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from fastagi_spy.store.audit import AuthResult, EndReason
from fastagi_spy.store.database import Database

_PIN_RESULTS = frozenset(r.value for r in AuthResult)
_END_REASONS = frozenset(r.value for r in EndReason)


def _by_reason(rows: Iterable[tuple[str | None, int]]) -> Counter[str]:
    found: Counter[str] = Counter()
    for reason, count in rows:
        found[reason if reason in _END_REASONS else "other"] += count
    return found


class AuditCounts:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._settled_below = 0  # every audit row with id <= this is closed and tallied
        self._settled: Counter[str] = Counter()
        self._events_seen = 0  # audit_events rows (append-only) with id <= this are tallied
        self._pins: Counter[str] = Counter()

    def outcomes(self) -> dict[str, int]:
        """Closed attempts by end reason."""
        with self._db.snapshot() as conn:
            low = self._settled_below
            first_open = conn.execute(
                "SELECT min(id) FROM audit WHERE id > ? AND ended_at IS NULL", (low,)
            ).fetchone()[0]
            if first_open is None:
                first_open = (conn.execute("SELECT max(id) FROM audit").fetchone()[0] or 0) + 1
            high = first_open - 1
            high = max(low, high)
            settled = _by_reason(conn.execute(
                "SELECT end_reason, count(*) FROM audit WHERE id > ? AND id <= ? "
                "GROUP BY end_reason", (low, high)))
            tail = _by_reason(conn.execute(
                "SELECT end_reason, count(*) FROM audit WHERE id > ? AND ended_at IS NOT NULL "
                "GROUP BY end_reason", (high,)))
        # Folded in only once both reads succeeded: a failed scrape leaves the tally as it was.
        self._settled += settled
        self._settled_below = high
        return dict(self._settled + tail)

    def pin_results(self) -> dict[str, int]:
        """PINs typed, by result (ok, bad_pin, locked_out, ...): the audit's "pin" events,
        whose detail ends in the result."""
        found: Counter[str] = Counter()
        with self._db.snapshot() as conn:
            top = conn.execute("SELECT max(id) FROM audit_events").fetchone()[0] or 0
            for detail, count in conn.execute(
                    "SELECT detail, count(*) FROM audit_events WHERE id > ? AND id <= ? "
                    "AND kind = 'pin' GROUP BY detail", (self._events_seen, top)):
                # "<claimed supervisor or -> <result>": only the result is kept (the typed
                # number never becomes a label), and only one of ours.
                result = (detail or "").rpartition(" ")[2]
                found[result if result in _PIN_RESULTS else "other"] += count
        self._pins += found
        self._events_seen = max(self._events_seen, top)
        return dict(self._pins)

    def lockouts_active(self, now: float) -> int:
        """Keys (supervisors, devices) locked out of PIN entry now."""
        row = self._db.execute("SELECT count(*) FROM lockouts WHERE until > ?",
                               (now,)).fetchone()
        return int(row[0])
