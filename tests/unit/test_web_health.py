"""/healthz and /readyz through the service's own HTTP tree: AMI links and the store faked
at their edges (a logged-in protocol stand-in, a resync of the live map, a closed database)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.internet import reactor

from fastagi_spy.config import load
from fastagi_spy.service import SpyService
from fastagi_spy.web.health import LinkState, link_problems
from tests.unit.web_http import http

CONFIG = """
[server]
pin_pepper = "unit-test-pepper-0123456789"
database = "spy.sqlite3"

[[asterisk]]
name = "a"
ami_host = "10.0.0.5"
ami_username = "u"
ami_secret = "topsecret-ami"

[[asterisk]]
name = "b"
ami_host = "10.0.0.6"
ami_username = "u"
ami_secret = "topsecret-ami"

[[agents]]
number = "1001"
team = "sales"
devices = ["PJSIP/1001"]
"""


class LoggedIn:
    """Stands in for a logged-in AMIProtocol: AMIClient.ready reads only ``connected``."""

    connected = True


@pytest.fixture
def service(tmp_path: Path) -> Iterator[SpyService]:
    path = tmp_path / "spy.toml"
    path.write_text(CONFIG)
    spy = SpyService(load(path), reactor)
    yield spy
    spy.stores.db.close()


def link_up_and_synced(service: SpyService, name: str) -> None:
    service.clients[name].protocol = LoggedIn()  # type: ignore[assignment]
    service.live_map.resync(name, [], [], 1.0, [])


def test_healthz_is_ok_even_when_nothing_is_connected(service: SpyService) -> None:
    reply = http(service.site.resource, "GET", "/healthz")
    assert (reply.status, reply.body) == (200, "ok\n")


def test_readyz_503_names_each_down_link_before_anything_connects(service: SpyService) -> None:
    reply = http(service.site.resource, "GET", "/readyz")
    assert reply.status == 503
    assert reply.body.splitlines() == ["ami a: down", "ami b: down"]
    assert reply.headers["content-type"].startswith("text/plain")


def test_readyz_200_once_every_link_is_up_and_synced(service: SpyService) -> None:
    link_up_and_synced(service, "a")
    link_up_and_synced(service, "b")
    reply = http(service.site.resource, "GET", "/readyz")
    assert (reply.status, reply.body) == (200, "ready\n")


def test_readyz_503_for_a_link_up_but_not_yet_resynced(service: SpyService) -> None:
    link_up_and_synced(service, "a")
    service.clients["b"].protocol = LoggedIn()  # type: ignore[assignment]  # logged in only
    reply = http(service.site.resource, "GET", "/readyz")
    assert (reply.status, reply.body) == (503, "ami b: not synced\n")


def test_readyz_503_when_a_link_drops_after_sync(service: SpyService) -> None:
    link_up_and_synced(service, "a")
    link_up_and_synced(service, "b")
    service.clients["a"].protocol = None  # the link dropped
    service.live_map.mark_stale("a", 2.0)
    reply = http(service.site.resource, "GET", "/readyz")
    assert (reply.status, reply.body) == (503, "ami a: down\n")


def test_readyz_503_when_the_store_does_not_answer(service: SpyService) -> None:
    link_up_and_synced(service, "a")
    link_up_and_synced(service, "b")
    service.stores.db.close()
    reply = http(service.site.resource, "GET", "/readyz")
    assert (reply.status, reply.body) == (503, "store: unreachable\n")
    assert "spy.sqlite3" not in reply.body and "topsecret" not in reply.body


def test_link_problems_down_wins_over_not_synced() -> None:
    assert link_problems([LinkState("x", False, False), LinkState("y", True, True)]) == [
        "ami x: down"]
