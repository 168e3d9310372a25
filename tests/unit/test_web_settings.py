"""The settings page: only for configure, CSRF, values checked before anything is saved,
the AMI password never sent back, changes applied at once and recorded without secrets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlencode

import pytest
from twisted.web.resource import Resource

from fastagi_spy.domain import Mode, SupervisorEntry
from fastagi_spy.store.database import Database
from fastagi_spy.store.settings import ServerAMI, SettingsStore
from fastagi_spy.web.settings import SettingsResource
from tests.unit.web_http import CSRF, FakeGate, http, page

ADMIN = SupervisorEntry("7777", "Admin", frozenset(), frozenset(Mode), configure=True)
BASE = {"pbx1": ServerAMI("127.0.0.1", 5038, "fastagi", "config-secret-1")}


class Site:
    def __init__(self, db: Database) -> None:
        self.store = SettingsStore(db)
        self.gate = FakeGate(ADMIN)
        self.applied: list[str] = []
        self.root = Resource()
        self.root.putChild(b"settings", SettingsResource(
            self.gate, self.store, page,
            lambda: [(n, self.store.server_ami(n, b)) for n, b in BASE.items()],
            self.applied.append, lambda name: name == "pbx1", lambda: 1000.0))

    def save(self, csrf: str = CSRF, **fields: str) -> tuple[int, dict[str, object]]:
        reply = http(self.root, "POST", "/settings", urlencode(fields),
                     {"X-CSRF-Token": csrf})
        return reply.status, json.loads(reply.body or "{}")

    def ami(self) -> ServerAMI:
        return self.store.server_ami("pbx1", BASE["pbx1"])


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    db = Database(tmp_path / "settings.sqlite3")
    yield Site(db)
    db.close()


def test_the_form_shows_the_settings_in_force_but_never_the_password(site: Site) -> None:
    reply = http(site.root, "GET", "/settings")
    assert reply.status == 200
    assert 'name="pbx1.ami_host" value="127.0.0.1"' in reply.body
    assert 'name="pbx1.ami_secret" value=""' in reply.body
    assert "config-secret-1" not in reply.body
    assert 'name="code_listen" value="*222"' in reply.body
    assert "link up" in reply.body


def test_a_new_password_applies_at_once_and_is_recorded_as_changed_only(site: Site) -> None:
    assert site.save(**{"pbx1.ami_secret": "new-secret-2", "pbx1.ami_username": "spy"}) == (
        200, {"saved": ["pbx1: ami_secret", "pbx1: ami_username"]})
    assert site.ami() == ServerAMI("127.0.0.1", 5038, "spy", "new-secret-2")
    assert site.applied == ["pbx1"]
    body = http(site.root, "GET", "/settings").body
    assert "new-secret-2" not in body
    assert [(c.person, c.key, c.shown) for c in site.store.changes()] == [
        ("7777", "ami_username", "spy"), ("7777", "ami_secret", "(changed)")]


def test_a_blank_password_keeps_it_and_unchanged_values_do_not_reconnect(site: Site) -> None:
    site.save(**{"pbx1.ami_secret": "new-secret-2"})
    site.applied.clear()
    # The whole form comes back with the values in force: none of them is a change.
    assert site.save(**{"pbx1.ami_secret": "", "pbx1.ami_host": "127.0.0.1",
                        "pbx1.ami_port": "5038", "code_listen": "*222"}) == (200, {"saved": []})
    assert site.ami().secret == "new-secret-2"
    assert site.applied == []
    assert [c.key for c in site.store.changes()] == ["ami_secret"]


@pytest.mark.parametrize(("fields", "error"), [
    ({"pbx1.ami_port": "70000"}, "pbx1.ami_port: a port number from 1 to 65535"),
    ({"pbx1.ami_username": "spy\r\nAction: Originate"},
     "pbx1.ami_username: letters, digits and _ . @ - (up to 80)"),
    ({"pbx1.ami_secret": "two words"},
     "pbx1.ami_secret: printable characters without spaces (up to 128)"),
    ({"pbx1.ami_host": ""}, "pbx1.ami_host: required"),
    ({"pbx1.ami_host": "::1:port=1"}, "pbx1.ami_host: a host name or IPv4 address"),
    ({"pbx9.ami_host": "127.0.0.1"}, "pbx9.ami_host: not a setting"),
    ({"code_listen": "222"}, "code_listen: a star and 1 to 6 digits, such as *222, or blank "
                             "to hide the button"),
])
def test_a_wrong_value_is_named_and_nothing_is_saved(site: Site, fields: dict[str, str],
                                                      error: str) -> None:
    # A good value alongside is not saved either: a form is saved whole or not at all.
    assert site.save(**{"code_barge": "*999", **fields}) == (400, {"error": error})
    assert site.store.feature_codes()[Mode.BARGE] == "*224"
    assert site.ami() == BASE["pbx1"] and site.applied == []


def test_feature_codes_can_be_blanked(site: Site) -> None:
    assert site.save(code_whisper="", code_barge="*9")[0] == 200
    assert site.store.feature_codes() == {Mode.LISTEN: "*222", Mode.WHISPER: None,
                                          Mode.BARGE: "*9"}
    assert site.applied == []  # no AMI change, no reconnect


def test_only_configure_and_only_with_the_csrf_token(site: Site) -> None:
    assert site.save(csrf="guessed", code_listen="*1")[0] == 403
    site.gate.person = replace(ADMIN, configure=False)
    assert http(site.root, "GET", "/settings").status == 403
    assert http(site.root, "GET", "/settings/status").status == 403
    assert site.save(code_listen="*1")[0] == 403
    site.gate.person = None
    assert http(site.root, "GET", "/settings").status == 302
    assert site.store.feature_codes()[Mode.LISTEN] == "*222"


def test_the_link_status_is_per_server(site: Site) -> None:
    reply = http(site.root, "GET", "/settings/status")
    assert (reply.status, json.loads(reply.body)) == (200, {"pbx1": True})
