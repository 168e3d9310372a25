"""LiveSync: a read the live map fails to apply is never trusted half applied."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from twisted.internet import defer
from twisted.logger import LogLevel, globalLogPublisher

from fastagi_spy.model import LiveMap
from fastagi_spy.net.livesync import LiveSync
from fastagi_spy.wire.ami import ActionResult, AMIMessage
from tests.unit.model_events import Sim, config, directory, incoming_trunk

SERVER = "pbx"
T0 = 1_732_156_800.0


class FakeClient:
    """Logged in; each CoreShowChannels/QueueStatus waits until the test answers it."""

    ready = True

    def __init__(self) -> None:
        self.pending: list[defer.Deferred[ActionResult]] = []
        self.on_ready: Any = None
        self.on_down: Any = None

    def add_listener(self, listener: Any) -> None:
        pass

    def call(self, action: str, timeout: float = 10) -> defer.Deferred[ActionResult]:
        d: defer.Deferred[ActionResult] = defer.Deferred()
        self.pending.append(d)
        return d

    def answer_all(self) -> None:
        """Answer every waiting list action with an empty list (a quiet Asterisk)."""
        while self.pending:
            empty = AMIMessage((("Response", "Success"),))
            self.pending.pop(0).callback(ActionResult("x", empty, (), None))


@pytest.fixture
def errors() -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_level") in (LogLevel.error, LogLevel.critical):
            seen.append(event)

    globalLogPublisher.addObserver(observe)
    yield seen
    globalLogPublisher.removeObserver(observe)


def synced() -> tuple[BreakableMap, LiveSync, FakeClient]:
    live = BreakableMap(LiveMap(directory(), {SERVER: config()}))
    sync = LiveSync(live, SERVER, lambda: T0)
    client = FakeClient()
    sync.attach(client)  # type: ignore[arg-type]
    sync.resync(client)  # type: ignore[arg-type]
    client.answer_all()
    assert not live.snapshot(T0)["servers"][SERVER]["stale"]
    return live, sync, client


class BreakableMap:
    """A real LiveMap whose ``ingest``, once broken, applies the first event of a read and
    then fails: a read left half applied."""

    def __init__(self, live: LiveMap) -> None:
        self.live = live
        self.broken = False

    def ingest(self, server: str, events: Sequence[Any], now: float) -> None:
        if not self.broken:
            self.live.ingest(server, events, now)
            return
        self.live.ingest(server, list(events)[:1], now)
        raise RuntimeError("bug while applying")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.live, name)


def test_a_read_that_fails_to_apply_marks_the_server_stale_and_resyncs(
    errors: list[dict[str, Any]],
) -> None:
    """An unexpected error (not Malformed) mid-read: the server turns stale at once, so the
    half-applied state answers nobody; a resync rebuilds it; one error line, not one a read."""
    live, sync, client = synced()
    live.broken = True
    call = incoming_trunk(Sim(), "1001")[:10]  # rings, answered, both legs bridged
    sync.on_events(call)  # type: ignore[arg-type]  # must not raise into the AMI protocol
    assert live.snapshot(T0)["servers"][SERVER]["stale"] is True
    assert live.resolve("1001", SERVER).reason == "stale"
    assert len(client.pending) == 1  # the resync asked for CoreShowChannels
    sync.on_events(call[1:])  # type: ignore[arg-type]  # held while the resync runs
    assert len(errors) == 1 and "log_failure" in errors[0]
    assert errors[0]["log_failure"].check(RuntimeError)

    live.broken = False
    client.answer_all()
    client.answer_all()
    assert sync.resyncs == 2
    assert live.snapshot(T0)["servers"][SERVER]["stale"] is False
    assert len(errors) == 1

    # Broken again after the rebuild: logged again, once.
    live.broken = True
    sync.on_events(call)  # type: ignore[arg-type]
    assert live.snapshot(T0)["servers"][SERVER]["stale"] is True
    assert len(errors) == 2


def test_a_failing_watcher_does_not_cost_the_map_its_read() -> None:
    """The ChanSpy watches see every event first; their bug must not drop the read."""
    live = LiveMap(directory(), {SERVER: config()})
    seen: list[str | None] = []

    def broken_watcher(message: Any) -> None:
        seen.append(message.event)
        raise RuntimeError("watcher bug")

    sync = LiveSync(live, SERVER, lambda: T0, also=broken_watcher)
    client = FakeClient()
    sync.attach(client)  # type: ignore[arg-type]
    sync.resync(client)  # type: ignore[arg-type]
    client.answer_all()
    call = incoming_trunk(Sim(), "1001")[:10]
    sync.on_events(call)  # type: ignore[arg-type]
    assert len(seen) == len(call)
    (alice,) = [a for a in live.snapshot(T0)["servers"][SERVER]["agents"] if a["number"] == "1001"]
    assert alice["status"] == "Talking"
