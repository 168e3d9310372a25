"""The audit view and its CSV: audit_query's filters, the rows a person may see, the way in
as people say it, and clear errors for wrong filters."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.web.resource import Resource

from fastagi_spy.domain import AgentEntry, Directory, Mode, SupervisorEntry
from fastagi_spy.store.audit import AuditLog, AuthResult, EndReason, Via
from fastagi_spy.store.audit_query import COLUMNS
from fastagi_spy.store.database import Database
from fastagi_spy.web.audit_view import AuditCsv, AuditView
from tests.unit.web_http import FakeGate, http, page

T0 = 1_764_633_600.0  # 2025-12-02T00:00:00Z
EVERYONE = SupervisorEntry("7777", "Boss", frozenset({"sales"}), frozenset(Mode),
                           see_everyone=True)
SALES = SupervisorEntry("6666", "Lead", frozenset({"sales"}), frozenset(Mode))
DIRECTORY = Directory((AgentEntry("1001", "Ann", "sales"), AgentEntry("1003", "Cy", "support")),
                      (EVERYONE, SALES), frozenset())


def spy(audit: AuditLog, via: Via, agent: str, at: float, reason: EndReason,
        detail: str = "") -> None:
    record = audit.open(at, via.value, supervisor="7777", auth_result=AuthResult.OK)
    audit.update(record, agent=agent, modes="listen", detail=detail or None)
    audit.mark_spy_started(record, at + 1)
    audit.mark_spy_stopped(record, at + 66)
    audit.close(record, at + 66, reason)


@pytest.fixture
def root(tmp_path: Path) -> Iterator[tuple[Resource, FakeGate]]:
    db = Database(tmp_path / "audit.sqlite3")
    audit = AuditLog(db)
    spy(audit, Via.PHONE, "1001", T0 + 10, EndReason.SUPERVISOR_HANGUP)
    spy(audit, Via.API, "1003", T0 + 20, EndReason.AGENT_HANGUP, "web barge phone=w launch=#9")
    spy(audit, Via.UNEXPLAINED, "1001", T0 + 86_400, EndReason.COMPLETED)
    gate = FakeGate(EVERYONE)
    top = Resource()
    top.putChild(b"audit", AuditView(gate, db, DIRECTORY, page))
    top.putChild(b"audit.csv", AuditCsv(gate, db, DIRECTORY))
    yield top, gate
    db.close()


def csv_rows(top: Resource, query: str = "") -> list[dict[str, str]]:
    reply = http(top, "GET", f"/audit.csv{query}")
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(reply.body)))
    assert tuple(table[0]) == COLUMNS  # audit_query's own CSV
    return [dict(zip(table[0], row, strict=True)) for row in table[1:]]


def test_the_view_says_who_whom_how_long_and_the_way_in(root: tuple[Resource, FakeGate]
                                                        ) -> None:
    top, _ = root
    body = http(top, "GET", "/audit").body
    assert "<td>1:05</td>" in body  # 65 s of listening
    assert "<td>feature code</td>" in body and "<td>page</td>" in body
    assert '<tr class="unexplained">' in body and "<td>unexplained</td>" in body


@pytest.mark.parametrize(("query", "agents"), [
    ("", ["1001", "1003", "1001"]),
    ("?team=support", ["1003"]),
    ("?agent=1001&reason=supervisor_hangup", ["1001"]),
    ("?unexplained=1", ["1001"]),
    ("?since=2025-12-03", ["1001"]),
    ("?until=2025-12-02", ["1001", "1003"]),
])
def test_filters_are_audit_querys(root: tuple[Resource, FakeGate], query: str,
                                  agents: list[str]) -> None:
    top, _ = root
    assert [r["agent"] for r in csv_rows(top, query)] == agents


def test_without_see_everyone_only_ones_own_teams_rows(root: tuple[Resource, FakeGate]
                                                       ) -> None:
    top, gate = root
    gate.person = SALES
    assert [r["agent"] for r in csv_rows(top)] == ["1001", "1001"]
    assert csv_rows(top, "?team=support") == []
    assert "<td>1003</td>" not in http(top, "GET", "/audit").body


@pytest.mark.parametrize(("query", "error"), [
    ("?since=yesterday", "since: &#x27;yesterday&#x27; is not an ISO date"),
    ("?reason=bored", "reason: &#x27;bored&#x27; is not an end reason"),
    ("?team=nobody", "team: no agent in the directory is in team &#x27;nobody&#x27;"),
])
def test_a_wrong_filter_is_a_clear_400(root: tuple[Resource, FakeGate], query: str,
                                       error: str) -> None:
    top, _ = root
    reply = http(top, "GET", f"/audit{query}")
    assert reply.status == 400 and error in reply.body
    assert http(top, "GET", f"/audit.csv{query}").status == 400


def test_signed_out_goes_to_login(root: tuple[Resource, FakeGate]) -> None:
    top, gate = root
    gate.person = None
    assert http(top, "GET", "/audit").status == 302
    assert http(top, "GET", "/audit.csv").status == 302
