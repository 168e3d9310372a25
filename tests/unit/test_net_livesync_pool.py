"""LiveSync asks Asterisk for its AgentLogin logins (the Agents action) at every resync."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from twisted.internet import defer
from twisted.logger import LogLevel, globalLogPublisher

from fastagi_spy.model import LiveMap
from fastagi_spy.net.ami import AMIActionFailed
from fastagi_spy.net.livesync import LiveSync
from fastagi_spy.wire.ami import ActionResult, AMIMessage
from tests.unit.model_events import Sim, config, directory

SERVER = "pbx"
T0 = 1_732_156_800.0


def result(items: list[AMIMessage]) -> ActionResult:
    return ActionResult("x", AMIMessage((("Response", "Success"),)), tuple(items), None)


class ListingClient:
    """Answers each list action at once from ``lists``; ``Agents`` may be refused."""

    ready = True

    def __init__(self, lists: dict[str, list[AMIMessage]], refuse: frozenset[str] = frozenset()):
        self.lists = lists
        self.refuse = refuse
        self.asked: list[str] = []
        self.on_ready: Any = None
        self.on_down: Any = None

    def add_listener(self, listener: Callable[..., None]) -> None:
        pass

    def call(self, action: str, timeout: float = 10) -> defer.Deferred[ActionResult]:
        self.asked.append(action)
        if action in self.refuse:
            refused = ActionResult("x", AMIMessage((("Response", "Error"),
                                                    ("Message", "Invalid/unknown command"))),
                                   (), None)
            return defer.fail(AMIActionFailed(action, refused))
        return defer.succeed(result(self.lists.get(action, [])))


@pytest.fixture
def warnings() -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_level") in (LogLevel.info, LogLevel.warn):
            seen.append(event)

    globalLogPublisher.addObserver(observe)
    yield seen
    globalLogPublisher.removeObserver(observe)


def pool_lists(sim: Sim) -> dict[str, list[AMIMessage]]:
    """1001 logged in with AgentLogin on PJSIP/2050, as CoreShowChannels and Agents list it."""
    leg = sim.chan("PJSIP/2050", state=6, context="agents")
    channel = AMIMessage(tuple(sim.core_show_channel(leg, application="AgentLogin").headers))
    agent = AMIMessage((("Event", "Agents"), ("Agent", "1001"), ("Name", "Alice"),
                        ("Status", "AGENT_IDLE"), ("LoggedInTime", "1732156800"),
                        *leg.snapshot()))
    return {"CoreShowChannels": [channel], "Agents": [agent]}


def test_a_resync_counts_the_agent_pool_logins_asterisk_lists() -> None:
    live = LiveMap(directory(), {SERVER: config(logged_in_by="login")})
    sync = LiveSync(live, SERVER, lambda: T0)
    lists = pool_lists(Sim())
    client = ListingClient(lists)
    sync.attach(client)  # type: ignore[arg-type]
    sync.resync(client)  # type: ignore[arg-type]
    assert "Agents" in client.asked
    assert live.resolve("1001", SERVER).reason == "not_on_call"  # logged in, on no call
    assert live.resolve("2050", SERVER).agent_number == "1001"


def test_a_server_that_will_not_list_agents_keeps_no_pool_login(
    warnings: list[dict[str, Any]],
) -> None:
    """No app_agent_pool (or no right to ask): nobody counts as logged in by AgentLogin,
    one log line says so (and what the account needs), and the rest of the resync stands."""
    live = LiveMap(directory(), {SERVER: config(logged_in_by="login")})
    sync = LiveSync(live, SERVER, lambda: T0)
    lists = pool_lists(Sim())
    client = ListingClient(lists, refuse=frozenset({"Agents"}))
    sync.attach(client)  # type: ignore[arg-type]
    sync.resync(client)  # type: ignore[arg-type]
    assert sync.resyncs == 1
    assert live.resolve("1001", SERVER).reason == "not_logged_in"
    assert [w for w in warnings if "write = agent" in str(w.get("log_format"))]
