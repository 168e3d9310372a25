"""``/login`` (the sign-in form and its POST) and ``/logout``.

The password is checked by the same `PasswordChecker` as the HTTP API and VICIdial's API
(hash in the worker, VICIdial's per-user lockout); the per-address throttle (guard.py) comes
first, so an address that keeps guessing is refused without its guesses being checked.
The answer never says whether the user exists. ``next`` is followed only to a path of this
site, so a sign-in link cannot send the person anywhere else.
"""

from __future__ import annotations

import math
import re
from html import escape
from urllib.parse import urlsplit

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from fastagi_spy.supervise.passwords import LoginUnavailable, LoginVerdict, PasswordChecker
from fastagi_spy.web.api import client_address
from fastagi_spy.web.guard import AuthThrottle
from fastagi_spy.web.layout import page
from fastagi_spy.web.session import WebSessions, secure_headers

log = Logger()
HOME = "/live"
SAFE_NEXT = re.compile(r"/(?!/)[A-Za-z0-9/_.\-]{0,200}")
MAX_FIELD = 1024  # longer than any user or password we accept (passwords.py)


def safe_next(raw: str | None) -> str:
    """``raw`` if it is a plain path of this site, else the live page."""
    return raw if raw is not None and SAFE_NEXT.fullmatch(raw) else HOME


def _field(request: Request, name: bytes) -> str | None:
    values = (request.args or {}).get(name)
    if not values or len(values[0]) > MAX_FIELD:
        return None
    try:
        text: str = values[0].decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text


def login_form(next_path: str, error: str = "", user: str = "") -> str:
    alert = f'<p class="alert" role="alert">{escape(error)}</p>' if error else ""
    return (
        f'<section class="card narrow">{alert}'
        '<form method="post" action="/login" class="stack">'
        f'<input type="hidden" name="next" value="{escape(next_path)}">'
        '<label for="user">User</label>'
        f'<input id="user" name="user" autocomplete="username" required autofocus '
        f'inputmode="numeric" maxlength="64" value="{escape(user)}">'
        '<label for="password">Password</label>'
        '<input id="password" name="password" type="password" autocomplete="current-password" '
        'required maxlength="1024">'
        '<button type="submit" class="button primary">Sign in</button>'
        "</form></section>")


def _same_origin(request: Request) -> bool:
    """A browser's Origin, when sent, names this site: no other site posts our login form
    (which would sign the person in as someone else)."""
    origin = request.getHeader("origin")
    if origin is None:
        return True
    host = request.getHeader("host") or ""
    return urlsplit(origin).netloc == host


class LoginPage(Resource):
    isLeaf = True

    def __init__(self, sessions: WebSessions, checker: PasswordChecker,
                 throttle: AuthThrottle) -> None:
        Resource.__init__(self)
        self.sessions = sessions
        self.checker = checker
        self.throttle = throttle

    def render_GET(self, request: Request) -> bytes:
        secure_headers(request)
        request.setHeader("cache-control", "no-store")
        next_path = safe_next(_field(request, b"next"))
        if self.sessions.person(request) is not None:
            request.setResponseCode(303)
            request.setHeader("location", next_path)
            return b""
        return self._form(request, 200, next_path)

    def render_POST(self, request: Request) -> bytes | int:
        secure_headers(request)
        request.setHeader("cache-control", "no-store")
        next_path = safe_next(_field(request, b"next"))
        if not _same_origin(request):
            return self._form(request, 403, next_path, "This form must be sent from this site.")
        client = client_address(request)
        wait = self.throttle.retry_after(client)
        if wait is not None:
            # Refused before the password is looked at: guessing on gains nothing.
            minutes = max(1, math.ceil(wait / 60))
            request.setHeader("retry-after", str(max(1, math.ceil(wait))))
            return self._form(request, 429, next_path, "Too many failed sign-ins from your "
                              f"address; try again in {minutes} minute(s).")
        user, password = _field(request, b"user"), _field(request, b"password")
        if not user or password is None:
            self.throttle.failed(client)
            return self._form(request, 401, next_path, "Wrong user or password.")
        gone: list[bool] = []  # the browser left while the password was being checked
        request.notifyFinish().addErrback(lambda _failure: gone.append(True))
        defer.ensureDeferred(self._answer(request, gone, client, user, password, next_path)
                             ).addErrback(lambda f: log.failure("POST /login failed", f))
        return NOT_DONE_YET

    async def _answer(self, request: Request, gone: list[bool], client: str, user: str,
                      password: str, next_path: str) -> None:
        try:
            login = await self.checker.login(user, password, client)
        except LoginUnavailable:
            body = self._form(request, 503, next_path,
                              "Passwords cannot be checked right now; try again.", user)
        else:
            if login.verdict is LoginVerdict.OK and login.person is not None:
                self.throttle.succeeded(client)
                self.sessions.start(request, login.person)
                request.setResponseCode(303)
                request.setHeader("location", next_path)
                body = b""
            elif login.verdict is LoginVerdict.LOCKED:
                self.throttle.failed(client)
                body = self._form(request, 403, next_path,
                                  "Too many sign-in attempts; try again in 15 minutes.", user)
            else:
                self.throttle.failed(client)
                body = self._form(request, 401, next_path, "Wrong user or password.", user)
        if not gone:
            request.write(body)
            request.finish()

    @staticmethod
    def _form(request: Request, code: int, next_path: str, error: str = "",
              user: str = "") -> bytes:
        request.setResponseCode(code)
        request.setHeader("content-type", "text/html; charset=utf-8")
        return page("Sign in", None, login_form(next_path, error, user), [], "")


class LogoutPage(Resource):
    """POST /logout (with the CSRF token) ends the session; GET offers the button."""

    isLeaf = True

    def __init__(self, sessions: WebSessions) -> None:
        Resource.__init__(self)
        self.sessions = sessions

    def render_GET(self, request: Request) -> bytes:
        person = self.sessions.require(request, None)
        if person is None:
            return b""
        csrf = self.sessions.csrf_token(request)
        body = ('<section class="card narrow"><form method="post" action="/logout">'
                f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
                '<button type="submit" class="button primary">Sign out</button></form></section>')
        request.setHeader("content-type", "text/html; charset=utf-8")
        return page("Sign out", person, body, [], csrf)

    def render_POST(self, request: Request) -> bytes:
        if self.sessions.require(request, None) is None:
            return b""
        self.sessions.end(request)
        request.setResponseCode(303)
        request.setHeader("location", "/login")
        return b""


def mount_sign_in(root: Resource, sessions: WebSessions, checker: PasswordChecker,
                  throttle: AuthThrottle) -> None:
    """/login and /logout on the site's root."""
    root.putChild(b"login", LoginPage(sessions, checker, throttle))
    root.putChild(b"logout", LogoutPage(sessions))
