"""Who may do what on the web page (web/scopes.py), and the shared frame (web/layout.py):
a nav entry only for someone holding its scope, and every text escaped."""

from __future__ import annotations

from twisted.web.resource import Resource

from fastagi_spy.config import ConfigError, parse
from fastagi_spy.domain import AgentEntry, Directory, Mode, SupervisorEntry
from fastagi_spy.web.layout import page
from fastagi_spy.web.scopes import may, visible_agents
from fastagi_spy.web.static_files import static_files
from tests.unit.web_http import http

AGENTS = (AgentEntry("1001", "A", "sales"), AgentEntry("1002", "B", "support"),
          AgentEntry("1003", "C", "sales"), AgentEntry("1004", "D", "billing"))


def person(**fields: object) -> SupervisorEntry:
    base: dict[str, object] = {"teams": frozenset({"sales"}), "modes": frozenset({Mode.LISTEN})}
    base.update(fields)
    return SupervisorEntry("9001", "Sam <b>&", **base)  # type: ignore[arg-type]


def directory(*people: SupervisorEntry) -> Directory:
    return Directory(AGENTS, people, frozenset())


def test_no_scope_is_held_unless_granted() -> None:
    nobody = person()
    assert not any(may(nobody, s) for s in ("see_everyone", "spy", "configure"))
    boss = person(see_everyone=True, spy=True, configure=True)
    assert all(may(boss, s) for s in ("see_everyone", "spy", "configure"))


def test_unknown_scopes_inactive_people_and_spy_without_modes_get_nothing() -> None:
    boss = person(see_everyone=True, spy=True, configure=True)
    assert not may(boss, "Configure") and not may(boss, "") and not may(boss, "admin")
    gone = person(see_everyone=True, spy=True, configure=True, active=False)
    assert not any(may(gone, s) for s in ("see_everyone", "spy", "configure"))
    assert visible_agents(gone, directory(gone)) == set()
    assert not may(person(spy=True, modes=frozenset()), "spy")


def test_visible_agents_are_ones_own_teams_unless_see_everyone() -> None:
    sales = person()
    assert visible_agents(sales, directory(sales)) == {"1001", "1003"}
    two = person(teams=frozenset({"sales", "billing"}))
    assert visible_agents(two, directory(two)) == {"1001", "1003", "1004"}
    boss = person(see_everyone=True, teams=frozenset())
    assert visible_agents(boss, directory(boss)) is None  # everyone, present and future
    assert visible_agents(person(teams=frozenset()), directory()) == set()


def test_scopes_are_read_from_the_config_and_checked() -> None:
    raw = {"server": {"pin_pepper": "a-long-enough-pepper-0123"},
           "asterisk": [{"name": "pbx1", "ami_username": "u", "ami_secret": "s"}],
           "supervisors": [{"number": "9001", "teams": ["sales"], "spy": True,
                            "configure": True}]}
    found = parse(raw).directory.person("9001")
    assert found is not None
    assert (found.spy, found.configure, found.see_everyone) == (True, True, False)
    raw["supervisors"] = [{"number": "9001", "spy": "yes"}]
    try:
        parse(raw)
    except ConfigError as exc:
        assert "supervisors[0].spy: expected bool" in str(exc)
    else:
        raise AssertionError("a non-boolean scope was accepted")


def test_settings_is_in_the_nav_only_with_configure() -> None:
    plain = page("Live", person(), "<p>x</p>", [], "tok").decode()
    assert 'href="/live"' in plain and 'href="/audit"' in plain
    assert 'href="/settings"' not in plain
    boss = page("Live", person(configure=True), "<p>x</p>", [], "tok").decode()
    assert 'href="/settings"' in boss
    assert '<a href="/live" aria-current="page">' in boss


def test_the_frame_escapes_its_texts_and_carries_the_csrf_token() -> None:
    html = page('Live <i>"', person(), "<p>body</p>", ['/static/a.js?"x'], 'a"b<c').decode()
    assert "Sam &lt;b&gt;&amp;" in html and "<b>&" not in html
    assert "Live &lt;i&gt;&quot;" in html
    assert '<meta name="csrf-token" content="a&quot;b&lt;c">' in html
    assert '<input type="hidden" name="csrf" value="a&quot;b&lt;c">' in html
    assert 'src="/static/a.js?&quot;x"' in html
    assert "<p>body</p>" in html  # the page's own, already escaped HTML
    assert 'href="/static/app.css"' in html and "http" not in html.replace("http-equiv", "")


def test_the_signed_out_frame_has_no_navigation() -> None:
    html = page("Sign in", None, "<form></form>", [], "").decode()
    assert 'href="/live"' not in html.split("</header>")[0].replace('class="brand" href="/live"', "")
    assert "/logout" not in html


def test_static_serves_the_stylesheet_and_nothing_outside_or_listed() -> None:
    root = Resource()
    root.putChild(b"static", static_files())
    css = http(root, "GET", "/static/app.css")
    assert css.status == 200 and css.headers["content-type"] == "text/css; charset=utf-8"
    assert "prefers-color-scheme: dark" in css.body
    for path in ("/static/", "/static/../session.py", "/static/%2e%2e/session.py",
                 "/static/x/app.css", "/static/app.css/x", "/static/session.py",
                 "/static/nope.css"):
        assert http(root, "GET", path).status == 404, path
