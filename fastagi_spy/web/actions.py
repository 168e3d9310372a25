"""The Live Monitor's Listen / Whisper / Barge buttons: ``/api/spy``.

- ``GET /api/spy``: the modes whose buttons the signed-in person sees (scope ``spy``, their
  ``modes``, and only modes whose feature code is configured); ``[]`` hides them all.
- ``POST /api/spy`` (form fields ``agent``, ``mode``; header ``X-CSRF-Token``): rings the
  person's own phone by blind_monitor's path (``MonitorLauncher.launch_agent``: rights, the
  launch's audit row via web, a one-time token, an Originate into the bundle); the flow spies
  on answer. 202 with the launch's id, or the refusal and its reason.
- ``GET /api/spy/<id>``: what became of that launch (ringing, answered, connected, ended,
  refused with the reason, not answered), read from the audit rows; only its own person's.

The server refuses whatever the page shows: no ``spy`` scope or a mode the person lacks is
403, a missing or wrong CSRF token is 403.

The audit reads go through the store runner (on the store thread with PostgreSQL): a status
poll waits for the database, the reactor does not.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from dataclasses import fields
from typing import Any, Protocol

from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

from fastagi_spy.domain import Mode, PhoneEntry, SupervisorEntry
from fastagi_spy.store.audit import AuditLog, AuditRecord, EndReason, Via
from fastagi_spy.store.database import Database
from fastagi_spy.store.errors import StoreError
from fastagi_spy.store.runner import InlineRunner, StoreRunner
from fastagi_spy.supervise.launch import TARGET, TOKEN_TTL, LaunchRefused
from fastagi_spy.web.api import send_json
from fastagi_spy.web.later import answer_later

log = Logger()
_RECORD_COLUMNS = ", ".join(f.name for f in fields(AuditRecord))


class Gate(Protocol):
    """The signed-in person and CSRF check (web/session.py's WebSessions satisfies it)."""

    def require(self, request: Request, scope: str | None) -> SupervisorEntry | None: ...
    def csrf_ok(self, request: Request) -> bool: ...


class Launcher(Protocol):
    def phone(self, login: str) -> PhoneEntry | None: ...
    async def launch_agent(self, person: SupervisorEntry, phone: PhoneEntry,
                           agent_number: str, mode: Mode) -> int: ...


def button_modes(person: SupervisorEntry, codes: Mapping[Mode, str | None]) -> list[Mode]:
    """The buttons ``person`` sees: scope spy, their own modes, a configured feature code."""
    if not person.spy:
        return []
    return [m for m in Mode if m in person.modes and codes.get(m)]


def _field(request: Request, name: str) -> str | None:
    values = (request.args or {}).get(name.encode())
    if not values or len(values) != 1:
        return None
    try:
        return str(values[0].decode("ascii"))
    except UnicodeDecodeError:
        return None


class SpyResource(Resource):
    """``/api/spy``; its children are the launches' status."""

    def __init__(self, gate: Gate, launcher: Launcher,
                 codes: Callable[[], Mapping[Mode, str | None]], audit: AuditLog, db: Database,
                 now: Callable[[], float], runner: StoreRunner | None = None) -> None:
        Resource.__init__(self)
        self.runner: StoreRunner = runner or InlineRunner()
        self.gate = gate
        self.launcher = launcher
        self.codes = codes
        self.audit = audit
        self.db = db
        self.now = now

    def getChild(self, path: bytes, request: Request) -> Resource:
        return SpyStatus(self, path)

    def render_GET(self, request: Request) -> bytes | int:
        person = self.gate.require(request, None)
        if person is None:
            return b""
        return self._later(request, self._buttons(request, person), "GET /api/spy")

    async def _buttons(self, request: Request, person: SupervisorEntry) -> bytes:
        try:
            codes = await self.runner.run(self.codes)  # the settings page's feature codes
        except StoreError:
            return send_json(request, 503, {"error": "settings store unavailable"})
        modes = button_modes(person, codes)
        return send_json(request, 200, {"modes": [m.value for m in modes]})

    @staticmethod
    def _later(request: Request, answer: Coroutine[Any, Any, bytes], what: str) -> int:
        """Write ``answer``'s body once it is ready (a JSON 500 if it broke)."""
        return answer_later(request, answer, what, _json_error)

    def render_POST(self, request: Request) -> bytes | int:
        person = self.gate.require(request, "spy")
        if person is None:
            return b""
        if not self.gate.csrf_ok(request):
            return send_json(request, 403, {"error": "missing or wrong CSRF token; reload "
                                            "the page"})
        agent, mode_text = _field(request, "agent"), _field(request, "mode")
        if agent is None or TARGET.fullmatch(agent) is None:
            return send_json(request, 400, {"error": "agent: an agent number (digits)"})
        try:
            mode = Mode(mode_text or "")
        except ValueError:
            return send_json(request, 400, {"error": "mode: listen, whisper or barge"})
        if mode not in person.modes:
            return send_json(request, 403, {"error": f"you may not {mode.value}"})
        return self._later(request, self._launch(request, person, agent, mode),
                           "POST /api/spy")

    async def _launch(self, request: Request, person: SupervisorEntry, agent: str,
                      mode: Mode) -> bytes:
        try:
            codes = await self.runner.run(self.codes)
        except StoreError:
            return send_json(request, 503, {"state": "refused",
                                            "reason": "settings store unavailable"})
        if not codes.get(mode):
            return send_json(request, 403, {"error": f"the {mode.value} feature code is not "
                                            "configured (settings)"})
        phone = self.launcher.phone(person.phone) if person.phone else None
        if phone is None:
            return send_json(request, 409, {"error": "your profile has no phone to ring; "
                                            "ask an administrator to set one"})
        try:
            launch_id = await self.launcher.launch_agent(person, phone, agent, mode)
        except LaunchRefused as exc:
            body = send_json(request, 409, {"state": "refused", "reason": exc.reason})
        except Exception:
            log.failure("Live Monitor launch failed")
            body = send_json(request, 500, {"state": "refused", "reason": "internal error"})
        else:
            body = send_json(request, 202, {"id": launch_id, "state": "ringing",
                                            "phone": phone.login})
        return body


class SpyStatus(Resource):
    """``GET /api/spy/<launch id>``."""

    isLeaf = True

    def __init__(self, parent: SpyResource, path: bytes) -> None:
        Resource.__init__(self)
        self.parent = parent
        self.path = path

    def render_GET(self, request: Request) -> bytes | int:
        person = self.parent.gate.require(request, None)
        if person is None:
            return b""
        text = self.path.decode("ascii", "replace")
        if not (text.isdigit() and len(text) < 19):
            return _no_such_launch(request)
        return self.parent._later(request, self._status(request, person, int(text)),
                                  "GET /api/spy/<id>")

    async def _status(self, request: Request, person: SupervisorEntry,
                      launch_id: int) -> bytes:
        parent = self.parent
        try:
            launch, answer = await parent.runner.run(_launch_and_answer, parent.audit,
                                                     parent.db, launch_id)
        except StoreError:
            body = send_json(request, 503, {"error": "audit store unavailable"})
        else:
            # Someone else's launch is as absent as one that never was.
            if (launch is None or launch.via != Via.WEB.value
                    or launch.supervisor != person.number):
                body = _no_such_launch(request)
            else:
                body = send_json(request, 200, {"id": launch.id, **state_of(
                    launch, answer, parent.now())})
        return body


def _no_such_launch(request: Request) -> bytes:
    return send_json(request, 404, {"error": "no such launch of yours"})


def _launch_and_answer(audit: AuditLog, db: Database, launch_id: int
                       ) -> tuple[AuditRecord | None, AuditRecord | None]:
    """Both reads in one store call (one hop to the store thread)."""
    launch = audit.get(launch_id)
    if launch is None or launch.via != Via.WEB.value:
        return launch, None
    return launch, answer_to(db, launch_id)


def answer_to(db: Database, launch_id: int) -> AuditRecord | None:
    """The phone's own row: the flow writes the launch's "launch=#<id>" in its detail."""
    tag = f"launch=#{launch_id}"
    row = db.execute(
        f"SELECT {_RECORD_COLUMNS} FROM audit WHERE id > ? AND via = ? AND (detail LIKE ? "
        "OR detail LIKE ? OR detail LIKE ?) ORDER BY id LIMIT 1",
        (launch_id, Via.API.value, f"%{tag}", f"%{tag};%", f"%{tag} %")).fetchone()
    return None if row is None else AuditRecord(*row)


def state_of(launch: AuditRecord, answer: AuditRecord | None, now: float) -> dict[str, str]:
    """What the page says about a launch."""
    if launch.end_reason != EndReason.COMPLETED.value:
        return {"state": "refused", "reason": launch.end_reason or "not rung"}
    if answer is None:
        if now - launch.started_at <= TOKEN_TTL:
            return {"state": "ringing"}
        return {"state": "not answered"}
    if answer.spy_started_at is not None:
        return {"state": "ended" if answer.ended_at is not None else "connected"}
    if answer.ended_at is not None:
        return {"state": "refused", "reason": answer.end_reason or "refused"}
    return {"state": "answered"}


def _json_error(request: Request) -> bytes:
    return send_json(request, 500, {"error": "internal error"})
