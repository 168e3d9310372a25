"""The audit view (``/audit``) and its CSV export (``/audit.csv``).

Who listened to whom, when, for how long, in which modes, by which way in (feature code,
API, page), and the unexplained spies; filtered by supervisor, agent, team, dates, end
reason or unexplained only. The filters and the CSV are store/audit_query.py's, the same as
the CLI's export. A person without ``see_everyone`` sees only rows on their teams' agents.
The rows are read through the store runner (the store thread with PostgreSQL); the page is
written when they come back, so a long export holds up no call or AMI event.
"""

from __future__ import annotations

import html
import io
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import urlencode

from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

from fastagi_spy.domain import Directory, SupervisorEntry
from fastagi_spy.store.audit import EndReason, Via
from fastagi_spy.store.audit_query import AuditQuery, QueryError, Row, build, rows, write_csv
from fastagi_spy.store.database import Database
from fastagi_spy.store.errors import StoreError
from fastagi_spy.store.runner import InlineRunner, StoreRunner
from fastagi_spy.web.later import answer_later

Page = Callable[[str, SupervisorEntry, str, list[str], str], bytes]
log = Logger()
FILTERS = ("supervisor", "agent", "team", "since", "until", "reason")
SHOWN = 500  # newest rows on the page; the CSV has them all
_WAYS = {Via.PHONE.value: "feature code", Via.API.value: "API", Via.WEB.value: "page",
         Via.CROSS_SERVER.value: "feature code (other server)",
         Via.UNEXPLAINED.value: "unexplained"}


class Gate(Protocol):
    def require(self, request: Request, scope: str | None) -> SupervisorEntry | None: ...
    def csrf_token(self, request: Request) -> str: ...


def way_in(row: Row) -> str:
    """The way in as a person says it; the rung phone of a page button is the page's."""
    via = str(row["via"])
    if via == Via.API.value and str(row.get("detail") or "").startswith("web "):
        return "page"
    return _WAYS.get(via, via)


def query_for(request: Request, person: SupervisorEntry, directory: Directory,
              newest: int | None) -> AuditQuery:
    """The person's filters, narrowed to the agents they may see; QueryError says which
    filter is wrong."""
    given = {name: _arg(request, name) for name in FILTERS}
    text = {k: v for k, v in given.items() if v}
    query = build(directory, supervisor=text.get("supervisor"), agent=text.get("agent"),
                  team=text.get("team"), since=text.get("since"), until=text.get("until"),
                  reason=text.get("reason"), unexplained=_arg(request, "unexplained") == "1",
                  newest=newest)
    if person.see_everyone:
        return query
    mine = frozenset(a.number for a in directory.agents if a.team in person.teams)
    agents = mine if query.agents is None else query.agents & mine
    return AuditQuery(query.supervisor, agents, query.since, query.until, query.reason,
                      query.unexplained, query.newest)


def _arg(request: Request, name: str) -> str | None:
    values = (request.args or {}).get(name.encode())
    if not values:
        return None
    return str(values[0].decode("utf-8", "replace")).strip()[:100]




def _all_rows(db: Database, query: AuditQuery) -> list[Row]:
    return list(rows(db, query))


class AuditView(Resource):
    isLeaf = True

    def __init__(self, gate: Gate, db: Database, directory: Directory, page: Page,
                 runner: StoreRunner | None = None) -> None:
        Resource.__init__(self)
        self.gate, self.db, self.directory, self.page = gate, db, directory, page
        self.runner: StoreRunner = runner or InlineRunner()

    def render_GET(self, request: Request) -> bytes | int:
        person = self.gate.require(request, None)
        if person is None:
            return b""
        request.setHeader("cache-control", "no-store")
        return answer_later(request, self._page(request, person), "GET /audit")

    async def _page(self, request: Request, person: SupervisorEntry) -> bytes:
        error = ""
        found: list[Row] = []
        try:
            query = query_for(request, person, self.directory, SHOWN)
            found = await self.runner.run(_all_rows, self.db, query)
        except QueryError as exc:
            request.setResponseCode(400)
            error = str(exc).replace("--limit", "limit").lstrip("-")
        except StoreError:
            request.setResponseCode(503)
            error = "the audit store is unavailable; try again"
        body = self._filters(request, error) + _table(list(reversed(found)))
        return self.page("Audit", person, body, [], self.gate.csrf_token(request))

    def _filters(self, request: Request, error: str) -> str:
        esc = html.escape
        fields = []
        for name in FILTERS:
            value = esc(_arg(request, name) or "")
            if name == "reason":
                options = "".join(
                    f'<option value="{esc(r)}"{" selected" if r == value else ""}>{esc(r)}'
                    "</option>" for r in ("", *sorted(EndReason)))
                fields.append(f'<label>Result <select name="reason">{options}</select></label>')
                continue
            kind = "date" if name in ("since", "until") else "text"
            fields.append(f'<label>{name.capitalize()} <input type="{kind}" name="{name}" '
                          f'value="{value}"></label>')
        checked = " checked" if _arg(request, "unexplained") == "1" else ""
        fields.append(f'<label><input type="checkbox" name="unexplained" value="1"{checked}> '
                      "Unexplained only</label>")
        given = [(n, v) for n in (*FILTERS, "unexplained") if (v := _arg(request, n))]
        csv_link = "/audit.csv" + (f"?{urlencode(given)}" if given else "")
        alert = f'<p class="error" role="alert">{esc(error)}</p>' if error else ""
        return (f'{alert}<form class="filters" method="get" action="/audit">{"".join(fields)}'
                f'<button type="submit">Filter</button> <a class="button" id="audit-csv" '
                f'href="{esc(csv_link)}">Export CSV</a></form>')


def _table(found: list[Row]) -> str:
    esc = html.escape
    body = []
    for row in found:
        cls = ' class="unexplained"' if row["via"] == Via.UNEXPLAINED.value else ""
        body.append(
            f"<tr{cls}><td>{esc(_when(row['started_at']))}</td>"
            f"<td>{esc(str(row['supervisor'] or ''))}</td>"
            f"<td>{esc(str(row['agent'] or row['requested_target'] or ''))}</td>"
            f"<td>{esc(_duration(row))}</td><td>{esc(str(row['modes'] or ''))}</td>"
            f"<td>{esc(way_in(row))}</td><td>{esc(str(row['end_reason'] or 'open'))}</td>"
            f"<td>{esc(str(row['detail'] or ''))}</td></tr>")
    empty = '<tr><td colspan="8">No audit rows match.</td></tr>'
    return ('<table class="audit"><thead><tr><th>When (UTC)</th><th>Supervisor</th>'
            "<th>Agent</th><th>Listened</th><th>Modes</th><th>Way in</th><th>Result</th>"
            f"<th>Detail</th></tr></thead><tbody>{''.join(body) or empty}</tbody></table>")


def _when(value: object) -> str:
    if not isinstance(value, int | float):
        return ""
    return datetime.fromtimestamp(float(value), tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _duration(row: Row) -> str:
    """How long the spy ran (to now for one still running: shown as "running")."""
    start, stop = row["spy_started_at"], row["spy_stopped_at"]
    if not isinstance(start, int | float):
        return ""
    if not isinstance(stop, int | float):
        return "running"
    seconds = max(0, round(float(stop) - float(start)))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _csv(db: Database, query: AuditQuery) -> str:
    out = io.StringIO(newline="")
    write_csv(rows(db, query), out)
    return out.getvalue()


class AuditCsv(Resource):
    """``GET /audit.csv``: the filtered rows, all of them, as audit_query writes them."""

    isLeaf = True

    def __init__(self, gate: Gate, db: Database, directory: Directory,
                 runner: StoreRunner | None = None) -> None:
        Resource.__init__(self)
        self.gate, self.db, self.directory = gate, db, directory
        self.runner: StoreRunner = runner or InlineRunner()

    def render_GET(self, request: Request) -> bytes | int:
        person = self.gate.require(request, None)
        if person is None:
            return b""
        return answer_later(request, self._export(request, person), "GET /audit.csv")

    async def _export(self, request: Request, person: SupervisorEntry) -> bytes:
        try:
            query = query_for(request, person, self.directory, None)
            text = await self.runner.run(_csv, self.db, query)
        except QueryError as exc:
            request.setResponseCode(400)
            request.setHeader("content-type", "text/plain; charset=utf-8")
            return str(exc).encode()
        except StoreError:
            request.setResponseCode(503)
            request.setHeader("content-type", "text/plain; charset=utf-8")
            return b"the audit store is unavailable; try again"
        request.setHeader("content-type", "text/csv; charset=utf-8")
        request.setHeader("content-disposition", 'attachment; filename="audit.csv"')
        request.setHeader("cache-control", "no-store")
        return text.encode()
