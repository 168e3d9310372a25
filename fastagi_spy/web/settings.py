"""The settings page (``/settings``, scope ``configure``): per server the AMI address, user and
password, and the three feature codes; ``/settings/status`` is each server's link state.

Saved values go to the database (store/settings.py) and apply at once: a server whose AMI
values changed reconnects with them (``apply``), so a wrong password shows as its link down.
The AMI password is never sent to the browser: its field is always empty, and left empty it
stays as it is. Each change is recorded with who made it (a password as "(changed)").
Every read and write of the store goes through the store runner (the store thread with
PostgreSQL); the answer is written when it comes back. ``apply`` runs on the reactor (it
reconnects an AMI client) and may answer later (a Deferred or coroutine).
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

from fastagi_spy.domain import Mode, SupervisorEntry
from fastagi_spy.store.errors import StoreError
from fastagi_spy.store.runner import InlineRunner, StoreRunner
from fastagi_spy.store.settings import (
    FEATURE_KEYS,
    GLOBAL,
    ServerAMI,
    SettingsError,
    SettingsStore,
    validate,
)
from fastagi_spy.web.api import send_json
from fastagi_spy.web.later import answer_later

log = Logger()
Page = Callable[[str, SupervisorEntry, str, list[str], str], bytes]
_LABELS = {Mode.LISTEN: "Listen", Mode.WHISPER: "Whisper", Mode.BARGE: "Barge"}


class Gate(Protocol):
    def require(self, request: Request, scope: str | None) -> SupervisorEntry | None: ...
    def csrf_ok(self, request: Request) -> bool: ...
    def csrf_token(self, request: Request) -> str: ...


class SettingsResource(Resource):
    """``GET``: the form; ``POST`` (form fields, header X-CSRF-Token): save and apply."""

    def __init__(self, gate: Gate, store: SettingsStore, page: Page,
                 servers: Callable[[], Sequence[tuple[str, ServerAMI]]],
                 apply: Callable[[str], Any], link_up: Callable[[str], bool],
                 now: Callable[[], float], runner: StoreRunner | None = None) -> None:
        Resource.__init__(self)
        self.runner: StoreRunner = runner or InlineRunner()
        self.gate = gate
        self.store = store
        self.page = page
        self.servers = servers  # (name, the AMI settings in force) per configured server
        self.apply = apply  # reconnect that server's AMI with its settings in force
        self.link_up = link_up
        self.now = now
        self.putChild(b"status", LinkStatus(self))

    def render_GET(self, request: Request) -> bytes | int:
        person = self.gate.require(request, "configure")
        if person is None:
            return b""
        request.setHeader("cache-control", "no-store")
        return answer_later(request, self._form(request, person), "GET /settings")

    def _read(self) -> tuple[list[tuple[str, ServerAMI]], dict[Mode, str | None], list[Any]]:
        """Everything the form shows from the store, in one call (on the store thread)."""
        return list(self.servers()), self.store.feature_codes(), list(self.store.changes())

    async def _form(self, request: Request, person: SupervisorEntry) -> bytes:
        try:
            servers, codes, changes = await self.runner.run(self._read)
        except StoreError:
            request.setResponseCode(503)
            request.setHeader("content-type", "text/plain; charset=utf-8")
            return b"the settings store is unavailable; try again"
        return self.page("Settings", person, self._body(servers, codes, changes),
                         ["/static/settings.js"], self.gate.csrf_token(request))

    def render_POST(self, request: Request) -> bytes | int:
        person = self.gate.require(request, "configure")
        if person is None:
            return b""
        if not self.gate.csrf_ok(request):
            return send_json(request, 403, {"error": "missing or wrong CSRF token; reload "
                                            "the page"})
        return answer_later(request, self._save(request, person), "POST /settings")

    def _in_force(self) -> dict[str, dict[str, str]]:
        in_force = {name: {"ami_host": a.host, "ami_port": str(a.port),
                           "ami_username": a.username, "ami_secret": a.secret}
                    for name, a in self.servers()}
        in_force[GLOBAL] = {FEATURE_KEYS[m]: c or ""
                            for m, c in self.store.feature_codes().items()}
        return in_force

    async def _save(self, request: Request, person: SupervisorEntry) -> bytes:
        at = self.now()
        saved: list[str] = []
        try:
            plan = self._plan(request, await self.runner.run(self._in_force))
            for scope, values in plan.items():
                changed = await self.runner.run(self.store.save, person.number, scope, values,
                                                at)
                saved.extend(f"{scope or 'feature codes'}: {key}" for key in changed)
                if scope != GLOBAL and changed:
                    await defer.maybeDeferred(self.apply, scope)
        except SettingsError as exc:
            return send_json(request, 400, {"error": str(exc)})
        except StoreError as exc:
            log.error("settings not saved: {error}", error=exc)
            return send_json(request, 503, {"error": "the database is unavailable; nothing "
                                            "more was saved"})
        log.info("Settings changed by {person}: {what}", person=person.number,
                 what=", ".join(saved) or "nothing")
        return send_json(request, 200, {"saved": saved})

    def _plan(self, request: Request, in_force: dict[str, dict[str, str]]
              ) -> dict[str, dict[str, str]]:
        """scope -> key -> value from the form, every value checked before anything is
        saved; unknown fields are an error, an empty password means unchanged, other empty
        AMI fields are an error."""
        plan: dict[str, dict[str, str]] = {}
        for raw_key, raw_values in (request.args or {}).items():
            try:
                field = raw_key.decode("ascii")
                value = b"".join(raw_values[:1]).decode("utf-8").strip()
            except UnicodeDecodeError:
                raise SettingsError("fields must be text") from None
            if len(raw_values) != 1:
                raise SettingsError(f"{field}: given more than once")
            scope, _, key = field.rpartition(".")
            if field in FEATURE_KEYS.values():
                plan.setdefault(GLOBAL, {})[field] = validate(field, value)
            elif scope in in_force and key in ("ami_host", "ami_port", "ami_username",
                                            "ami_secret"):
                if value == "" and key == "ami_secret":
                    continue  # never shown, so empty means "keep it"
                if value == "":
                    raise SettingsError(f"{field}: required")
                try:
                    plan.setdefault(scope, {})[key] = validate(key, value)
                except SettingsError as exc:  # name the server's field, not just the key
                    raise SettingsError(f"{scope}.{exc}") from None
            else:
                raise SettingsError(f"{field}: not a setting")
        # Only what differs from the values in force is a change (and is recorded as one).
        return {scope: {k: v for k, v in values.items() if in_force[scope].get(k) != v}
                for scope, values in plan.items()}

    def _body(self, servers: Sequence[tuple[str, ServerAMI]], codes: dict[Mode, str | None],
              changes: Sequence[Any]) -> str:
        esc = html.escape
        parts = ['<form id="settings-form" class="settings" method="post" action="/settings">',
                 '<p class="status" id="settings-result" role="status" aria-live="polite">'
                 "</p>"]
        for name, ami in servers:
            n = esc(name)
            up = self.link_up(name)
            parts.append(
                f'<fieldset data-server="{n}"><legend>Server {n} '
                f'<span class="link {"up" if up else "down"}" data-link="{n}">'
                f'{"link up" if up else "link down"}</span></legend>'
                f'{_input(f"{name}.ami_host", "AMI address", ami.host)}'
                f'{_input(f"{name}.ami_port", "AMI port", str(ami.port), "number")}'
                f'{_input(f"{name}.ami_username", "AMI user", ami.username)}'
                f'{_input(f"{name}.ami_secret", "AMI password", "", "password", "unchanged")}'
                "</fieldset>")
        parts.append("<fieldset><legend>Feature codes</legend>"
                     "<p>Blank hides that button on the Live page.</p>")
        for mode, key in FEATURE_KEYS.items():
            parts.append(_input(key, _LABELS[mode], codes[mode] or ""))
        parts.append('</fieldset><button type="submit">Save</button></form>')
        parts.append(_changes(changes))
        return "".join(parts)


def _changes(changes: Sequence[Any]) -> str:
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(_when(c.at))}</td><td>{esc(c.person)}</td>"
        f"<td>{esc(c.scope or 'feature codes')}</td><td>{esc(c.key)}</td>"
        f"<td>{esc(c.shown)}</td></tr>" for c in changes)
    return ('<h2>Recent changes</h2><table class="changes"><thead><tr><th>When (UTC)</th>'
            "<th>Who</th><th>Where</th><th>Setting</th><th>New value</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>")


class LinkStatus(Resource):
    """``GET /settings/status``: {"server": true|false} (AMI logged in), for settings.js."""

    isLeaf = True

    def __init__(self, parent: SettingsResource) -> None:
        Resource.__init__(self)
        self.parent = parent

    def render_GET(self, request: Request) -> bytes | int:
        person = self.parent.gate.require(request, "configure")
        if person is None:
            return b""
        return answer_later(request, self._links(request), "GET /settings/status")

    async def _links(self, request: Request) -> bytes:
        try:
            servers = await self.parent.runner.run(lambda: list(self.parent.servers()))
        except StoreError:
            return send_json(request, 503, {"error": "the settings store is unavailable"})
        links = {name: self.parent.link_up(name) for name, _ in servers}
        request.setResponseCode(200)
        request.setHeader("content-type", "application/json")
        request.setHeader("cache-control", "no-store")
        return json.dumps(links, sort_keys=True).encode()


def _input(name: str, label: str, value: str, kind: str = "text", placeholder: str = "") -> str:
    esc = html.escape
    hint = f' placeholder="{esc(placeholder)}"' if placeholder else ""
    auto = ' autocomplete="new-password"' if kind == "password" else ""
    return (f'<label>{esc(label)} <input type="{kind}" name="{esc(name)}" '
            f'value="{esc(value)}"{hint}{auto}></label>')


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
