"""How ``serve`` writes its log: Twisted's text lines, or one flat JSON object per line.

Twisted's own ``jsonFileLogObserver`` writes its internal event dict (format strings, every
field, record separators) so a log shipper would have to know Twisted. Ours writes only what
an operator searches on: time, level, system, the event text, and the attempt's audit id
where the code logged one (``audit_id=`` on the log call).
"""

from __future__ import annotations

import json
import time
from typing import IO, Any

from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LogEvent,
    formatEvent,
    textFileLogObserver,
)

FORMATS = ("text", "json")


def flat_event(event: LogEvent) -> dict[str, Any]:
    """The fields of one line: time (UTC, ISO 8601), level, system, event[, audit_id]."""
    level = event.get("log_level")
    at = float(event.get("log_time") or time.time())
    out: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}Z",
        "level": level.name if level is not None else "info",
        "system": event.get("log_system") or event.get("log_namespace") or "-",
        "event": formatEvent(event),
    }
    failure = event.get("log_failure")
    if failure is not None:  # the traceback goes in the same object: one line per event
        out["traceback"] = failure.getTraceback()
    audit_id = event.get("audit_id")
    if isinstance(audit_id, int):
        out["audit_id"] = audit_id
    return out


def _json_line(event: LogEvent) -> str:
    return json.dumps(flat_event(event), default=str, ensure_ascii=False) + "\n"


def json_observer(out: IO[Any]) -> ILogObserver:
    """One JSON object per line on ``out``."""
    return FileLogObserver(out, _json_line)


def observer(form: str, out: IO[Any]) -> ILogObserver:
    """The observer for ``--log-format``; text unless asked for json."""
    if form == "json":
        return json_observer(out)
    return textFileLogObserver(out)
