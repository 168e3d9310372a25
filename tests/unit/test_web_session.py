"""Signing in to the web page: cookie flags, expiry, CSRF, the login throttle, sign-out, and
the gate (web/session.py, web/login.py) through the real twisted.web Site."""

from __future__ import annotations

import re
from urllib.parse import urlencode

from twisted.internet.task import Clock
from twisted.web.resource import Resource
from twisted.web.server import Request

from fastagi_spy.domain import SupervisorEntry
from fastagi_spy.web.guard import AuthThrottle
from fastagi_spy.web.login import mount_sign_in, safe_next
from fastagi_spy.web.session import COOKIE, IDLE_S, LIFETIME_S, WebSessions
from tests.unit.people import People, people, person
from tests.unit.web_http import Reply, http

BOSS = person("9001", configure=True, spy=True, see_everyone=True)
PLAIN = person("9002")


class Guarded(Resource):
    """A page behind the gate: says who it let in."""

    isLeaf = True

    def __init__(self, sessions: WebSessions, scope: str | None) -> None:
        Resource.__init__(self)
        self.sessions, self.scope = sessions, scope

    def render_GET(self, request: Request) -> bytes:
        who = self.sessions.require(request, self.scope)
        return b"" if who is None else f"hello {who.number}".encode()

    render_POST = render_GET


class Site:
    def __init__(self, *extra: SupervisorEntry, failures: int = 5) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.people: People = people({"9001": "boss-password", "9002": "plain-password"}, *extra,
                                     now=self.clock.seconds)
        self.directory = {p.number: p for p in extra}
        self.sessions = WebSessions(self.directory.get, self.clock.seconds)
        self.throttle = AuthThrottle(failures, 60.0, self.clock.seconds)
        self.root = Resource()
        mount_sign_in(self.root, self.sessions, self.people.checker, self.throttle)
        self.root.putChild(b"page", Guarded(self.sessions, None))
        self.root.putChild(b"settings", Guarded(self.sessions, "configure"))
        api = Resource()
        self.root.putChild(b"api", api)
        api.putChild(b"thing", Guarded(self.sessions, None))

    def login(self, user: str, password: str, headers: dict[str, str] | None = None,
              next_path: str = "/page") -> Reply:
        body = urlencode({"user": user, "password": password, "next": next_path})
        return http(self.root, "POST", "/login", body, headers, self.clock)

    def get(self, path: str, cookie: str | None) -> Reply:
        return http(self.root, "GET", path, "", _cookie(cookie), self.clock)

    def post(self, path: str, cookie: str | None, csrf: str | None = None,
             form: dict[str, str] | None = None) -> Reply:
        headers = _cookie(cookie)
        if csrf is not None:
            headers["X-CSRF-Token"] = csrf
        return http(self.root, "POST", path, urlencode(form or {}), headers, self.clock)

    def csrf(self, cookie: str) -> str:
        reply = self.get("/logout", cookie)  # the sign-out page carries the token
        match = re.search(r'name="csrf" value="([^"]+)"', reply.body)
        assert match, reply.body
        return match.group(1)


def _cookie(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Cookie": f"{COOKIE}={token}"}


def session_cookie(reply: Reply) -> tuple[str, str]:
    """The session token and the whole Set-Cookie line."""
    line = reply.headers["set-cookie"]
    match = re.match(rf"{COOKIE}=([^;]*)", line)
    assert match, line
    return match.group(1), line


def test_a_right_password_signs_in_with_a_strict_httponly_cookie() -> None:
    site = Site(BOSS, PLAIN)
    reply = site.login("9001", "boss-password")
    assert reply.status == 303 and reply.headers["location"] == "/page"
    token, line = session_cookie(reply)
    assert len(token) >= 40
    assert "HttpOnly" in line and "SameSite=strict" in line and "Path=/" in line
    assert "Secure" not in line  # plain HTTP: a Secure cookie would never come back
    assert site.get("/page", token).body == "hello 9001"


def test_the_cookie_is_secure_when_served_over_tls() -> None:
    site = Site(BOSS)
    request_seen: list[bool] = []

    class Tls(Resource):
        isLeaf = True

        def render_GET(self, request: Request) -> bytes:
            request.isSecure = lambda: True  # type: ignore[method-assign]
            request_seen.append(True)
            site.sessions.start(request, BOSS)
            return b""

    site.root.putChild(b"tls", Tls())
    _, line = session_cookie(http(site.root, "GET", "/tls", clock=site.clock))
    assert request_seen and "Secure" in line


def test_a_wrong_password_or_unknown_user_gets_the_form_again_and_no_cookie() -> None:
    site = Site(BOSS, PLAIN)
    for user, password in (("9001", "nope"), ("7777", "boss-password"), ("", "x")):
        reply = site.login(user, password)
        assert reply.status == 401
        assert "Wrong user or password." in reply.body
        assert "set-cookie" not in reply.headers
        assert "boss-password" not in reply.body and "nope" not in reply.body


def test_without_a_session_a_page_redirects_to_login_and_an_api_gets_401() -> None:
    site = Site(BOSS)
    reply = site.get("/page", None)
    assert reply.status == 302 and reply.headers["location"] == "/login?next=/page"
    assert site.get("/api/thing", None).status == 401
    assert site.get("/page", "made-up-token").status == 302
    assert site.post("/page", None).status == 401


def test_the_session_ends_after_idle_time_and_after_its_lifetime() -> None:
    site = Site(BOSS)
    token, _ = session_cookie(site.login("9001", "boss-password"))
    site.clock.advance(IDLE_S - 1)
    assert site.get("/page", token).status == 200  # used: the idle time starts again
    site.clock.advance(IDLE_S - 1)
    assert site.get("/page", token).status == 200
    site.clock.advance(IDLE_S)
    assert site.get("/page", token).status == 302  # idle too long
    token, _ = session_cookie(site.login("9001", "boss-password"))
    for _ in range(int(LIFETIME_S // (IDLE_S / 2))):
        site.clock.advance(IDLE_S / 2)
        site.get("/page", token)
    assert site.get("/page", token).status == 302  # busy all along, but past its lifetime


def test_a_person_removed_from_the_config_is_signed_out_at_once() -> None:
    site = Site(BOSS, PLAIN)
    token, _ = session_cookie(site.login("9002", "plain-password"))
    assert site.get("/page", token).status == 200
    del site.directory["9002"]
    assert site.get("/page", token).status == 302


def test_a_post_without_the_sessions_csrf_token_is_refused_with_403() -> None:
    site = Site(BOSS)
    token, _ = session_cookie(site.login("9001", "boss-password"))
    csrf = site.csrf(token)
    assert site.post("/page", token).status == 403
    assert site.post("/page", token, csrf="not-the-token").status == 403
    other, _ = session_cookie(site.login("9001", "boss-password"))
    assert site.post("/page", token, csrf=site.csrf(other)).status == 403  # another session's
    refused = site.post("/page", token)
    assert "CSRF" in refused.body
    assert site.post("/page", token, csrf=csrf).body == "hello 9001"  # header
    assert site.post("/page", token, form={"csrf": csrf}).body == "hello 9001"  # form field


def test_a_missing_scope_is_403_whatever_the_page_shows() -> None:
    site = Site(BOSS, PLAIN)
    plain, _ = session_cookie(site.login("9002", "plain-password"))
    reply = site.get("/settings", plain)
    assert reply.status == 403 and "configure" in reply.body
    boss, _ = session_cookie(site.login("9001", "boss-password"))
    assert site.get("/settings", boss).body == "hello 9001"


def test_an_unknown_scope_is_refused() -> None:
    site = Site(BOSS)
    site.root.putChild(b"typo", Guarded(site.sessions, "confgure"))
    token, _ = session_cookie(site.login("9001", "boss-password"))
    assert site.get("/typo", token).status == 403


def test_sign_out_ends_the_session_and_needs_the_csrf_token() -> None:
    site = Site(BOSS)
    token, _ = session_cookie(site.login("9001", "boss-password"))
    csrf = site.csrf(token)
    assert site.post("/logout", token).status == 403  # a forged sign-out does nothing
    assert site.get("/page", token).status == 200
    reply = site.post("/logout", token, form={"csrf": csrf})
    assert reply.status == 303 and reply.headers["location"] == "/login"
    cleared, line = session_cookie(reply)
    assert cleared == "" and "Max-Age=0" in line
    assert site.get("/page", token).status == 302  # the old cookie is worth nothing now


def test_signing_in_again_replaces_the_old_session() -> None:
    site = Site(BOSS)
    first, _ = session_cookie(site.login("9001", "boss-password"))
    second, _ = session_cookie(site.login("9001", "boss-password", headers=_cookie(first)))
    assert first != second
    assert site.get("/page", first).status == 302
    assert site.get("/page", second).status == 200


def test_failed_logins_from_one_address_are_throttled_without_checking_the_password() -> None:
    site = Site(BOSS, failures=3)
    for _ in range(3):
        assert site.login("9001", "wrong").status == 401
    asked = len(site.people.verifier.asked)
    reply = site.login("9001", "boss-password")
    assert reply.status == 429 and "Too many failed sign-ins" in reply.body
    assert "retry-after" in reply.headers and "set-cookie" not in reply.headers
    assert len(site.people.verifier.asked) == asked  # the right password was never looked at
    site.clock.advance(61)
    assert site.login("9001", "boss-password").status == 303


def test_the_users_lockout_shows_its_own_message() -> None:
    site = Site(BOSS, failures=100)
    for _ in range(10):
        site.login("9001", "wrong")
    reply = site.login("9001", "boss-password")
    assert reply.status == 403 and "try again in 15 minutes" in reply.body


def test_a_login_posted_from_another_site_is_refused() -> None:
    site = Site(BOSS)
    reply = site.login("9001", "boss-password", headers={"Origin": "http://evil.example"})
    assert reply.status == 403 and "set-cookie" not in reply.headers
    assert site.login("9001", "boss-password", headers={"Origin": "http://x"}).status == 303


def test_next_only_leads_to_a_path_of_this_site() -> None:
    assert safe_next("/settings") == "/settings"
    for bad in ("//evil.example/", "https://evil.example/", "/x\r\nSet-Cookie: a=b",
                "javascript:alert(1)", None, "", "/a?b=<script>"):
        assert safe_next(bad) == "/live"
    site = Site(BOSS)
    reply = site.login("9001", "boss-password", next_path="//evil.example/")
    assert reply.status == 303 and reply.headers["location"] == "/live"


def test_the_login_page_escapes_what_the_browser_sent() -> None:
    site = Site(BOSS)
    reply = site.login('<script>x</script>', "wrong")
    assert "<script>x" not in reply.body and "&lt;script&gt;x" in reply.body
    reply = site.get("/login?next=%22%3E%3Cb%3E", None)
    assert '"><b>' not in reply.body


def test_pages_behind_the_gate_forbid_framing_and_caching() -> None:
    site = Site(BOSS)
    token, _ = session_cookie(site.login("9001", "boss-password"))
    reply = site.get("/page", token)
    assert reply.headers["x-frame-options"] == "DENY"
    assert "default-src 'self'" in reply.headers["content-security-policy"]
    assert reply.headers["cache-control"] == "no-store"
