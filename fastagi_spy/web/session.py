"""Signed-in people on the web page: cookie sessions, CSRF tokens, and the gate every page uses.

A session is a random token in the ``fsp_session`` cookie (HttpOnly: no script reads it;
SameSite=Strict: no other site's page sends it; Secure when served over TLS). The server
keeps only the token's SHA-256, the person's number, a CSRF token and two times: a session
ends after ``idle`` seconds unused or ``lifetime`` seconds after sign-in, whichever is first.
The person is looked up in the directory on every request, so a changed or removed person
loses what they lost at once.

Every request that changes something (any method but GET/HEAD) must carry the session's CSRF
token, as the ``X-CSRF-Token`` header or a ``csrf`` form field; `require` refuses it with 403
otherwise, before the page's own code runs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from twisted.web.server import Request

from fastagi_spy.domain import SupervisorEntry
from fastagi_spy.web.scopes import SCOPES, may

COOKIE = "fsp_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = b"csrf"
IDLE_S = 2 * 3600.0  # a shift's quiet spell, not a weekend
LIFETIME_S = 12 * 3600.0  # one shift: sign in again the next day
MAX_SESSIONS = 10_000  # a bound on memory whoever signs in
SAFE_METHODS = (b"GET", b"HEAD")
# Every response the gate lets through or refuses: no framing, no third-party anything.
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                               "form-action 'self'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


@dataclass
class _Session:
    number: str
    csrf: str
    started: float
    seen: float


def _digest(token: str) -> str:
    # Only the hash is kept: a leaked session table signs nobody in.
    return hashlib.sha256(token.encode()).hexdigest()


def secure_headers(request: Request) -> None:
    for name, value in SECURITY_HEADERS.items():
        request.setHeader(name, value)


def _cookie_token(request: Request) -> str | None:
    raw: bytes | None = request.getCookie(COOKIE.encode())
    if not raw or len(raw) > 128:
        return None
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return None


class WebSessions:
    """The sessions of signed-in people (in memory: a restart signs everyone out)."""

    def __init__(self, people: Callable[[str], SupervisorEntry | None],
                 now: Callable[[], float], idle: float = IDLE_S,
                 lifetime: float = LIFETIME_S) -> None:
        self.people = people
        self.now = now
        self.idle = idle
        self.lifetime = lifetime
        self._sessions: dict[str, _Session] = {}

    # -- signing in and out (web/login.py) -------------------------------------------------

    def start(self, request: Request, person: SupervisorEntry) -> None:
        """A new session for ``person``, its cookie set on ``request``. Any session the
        browser had is ended first: a token set before sign-in never becomes a signed-in one."""
        self.end(request)
        self._make_room()
        token = secrets.token_urlsafe(32)
        now = self.now()
        self._sessions[_digest(token)] = _Session(person.number, secrets.token_urlsafe(32),
                                                  now, now)
        request.addCookie(COOKIE, token, path="/", httpOnly=True, sameSite="strict",
                          secure=request.isSecure() or None)

    def end(self, request: Request) -> None:
        """Ends the browser's session (if any) and clears its cookie."""
        token = _cookie_token(request)
        if token is None:
            return
        self._sessions.pop(_digest(token), None)
        request.addCookie(COOKIE, "", path="/", max_age="0", httpOnly=True, sameSite="strict",
                          secure=request.isSecure() or None)

    # -- the API pages use ------------------------------------------------------------------

    def person(self, request: Request) -> SupervisorEntry | None:
        """The signed-in person, or None (no cookie, unknown or expired session, person gone
        from the config or made inactive)."""
        found = self._session(request)
        return None if found is None else found[1]

    def csrf_token(self, request: Request) -> str:
        """The session's CSRF token for the page's ``<meta>`` and hidden fields ("" when
        signed out: it then matches nothing)."""
        found = self._session(request)
        return "" if found is None else found[0].csrf

    def csrf_ok(self, request: Request) -> bool:
        """Whether the request carries its session's CSRF token (header or form field)."""
        found = self._session(request)
        if found is None:
            return False
        sent = request.getHeader(CSRF_HEADER)
        if sent is None:
            field = (request.args or {}).get(CSRF_FIELD) or [b""]
            sent = field[0].decode("ascii", "replace")
        return bool(sent) and hmac.compare_digest(sent.encode(), found[0].csrf.encode())

    def require(self, request: Request, scope: str | None) -> SupervisorEntry | None:
        """The signed-in person holding ``scope`` (None: only signed in), or None after
        answering the request: a page asks for sign-in (302 to /login), an API or a change
        gets 401; a missing scope or CSRF token gets 403. The caller then returns b""."""
        secure_headers(request)
        request.setHeader("cache-control", "no-store")
        person = self.person(request)
        if person is None:
            if request.method in SAFE_METHODS and not _is_api(request):
                request.setResponseCode(302)
                request.setHeader("location", "/login?next=" + quote(_path(request), safe="/"))
                return None
            self._refuse(request, 401, "sign in first")
            return None
        if request.method not in SAFE_METHODS and not self.csrf_ok(request):
            self._refuse(request, 403, "missing or wrong CSRF token; reload the page")
            return None
        if scope is not None and (scope not in SCOPES or not may(person, scope)):
            self._refuse(request, 403, f"you do not have the {scope!r} right")
            return None
        return person

    # -- internals --------------------------------------------------------------------------

    def _session(self, request: Request) -> tuple[_Session, SupervisorEntry] | None:
        token = _cookie_token(request)
        if token is None:
            return None
        key = _digest(token)
        session = self._sessions.get(key)
        if session is None:
            return None
        now = self.now()
        if now - session.seen >= self.idle or now - session.started >= self.lifetime:
            del self._sessions[key]
            return None
        person = self.people(session.number)
        if person is None or not person.active:
            del self._sessions[key]
            return None
        session.seen = now
        return session, person

    def _make_room(self) -> None:
        if len(self._sessions) < MAX_SESSIONS:
            return
        now = self.now()
        for key in [k for k, s in self._sessions.items()
                    if now - s.seen >= self.idle or now - s.started >= self.lifetime]:
            del self._sessions[key]
        while len(self._sessions) >= MAX_SESSIONS:  # all live: the oldest sign-in goes
            del self._sessions[next(iter(self._sessions))]

    @staticmethod
    def _refuse(request: Request, code: int, error: str) -> None:
        body = json.dumps({"error": error}).encode()
        request.setResponseCode(code)
        request.setHeader("content-type", "application/json")
        request.setHeader("content-length", str(len(body)))
        # Written now, so the caller's b"" only ends the response (it cannot add a body).
        request.write(body)


def _path(request: Request) -> str:
    return (request.path or b"/").decode("utf-8", "replace")


def _is_api(request: Request) -> bool:
    return _path(request).startswith("/api/")
