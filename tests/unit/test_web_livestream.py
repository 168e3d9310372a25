"""/api/stream through the real Site: snapshot on connect, per-person filtering, coalescing,
heartbeats, stale servers, slow clients and reconnects (fake transports, task.Clock)."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from fastagi_spy.domain import Mode, SupervisorEntry
from fastagi_spy.model import LiveMap
from fastagi_spy.web.live import mount_live
from fastagi_spy.web.livestream import WINDOW, LiveHub
from tests.unit.model_events import Sim, config, directory, incoming_trunk

SERVER = "pbx1"
RED = SupervisorEntry("2001", "Red lead", frozenset({"red"}), frozenset({Mode.LISTEN}))
BLUE = SupervisorEntry("2002", "Blue lead", frozenset({"blue"}), frozenset({Mode.LISTEN}))
BOSS = SupervisorEntry("2003", "Everyone", frozenset(), frozenset({Mode.LISTEN}))
PEOPLE = {p.number: p for p in (RED, BLUE, BOSS)}
BOOK = directory()


def visible(person: SupervisorEntry) -> frozenset[str] | None:
    if person is BOSS:
        return None
    return frozenset(a.number for a in BOOK.agents if a.team in person.teams)


class FakeSessions:
    """Who is signed in comes from a "who" header; nobody: 403, as WebSessions answers."""

    def require(self, request: Request, scope: str | None) -> SupervisorEntry | None:
        who = (request.getHeader("who") or "")
        person = PEOPLE.get(who)
        if person is None:
            request.setResponseCode(403)
        return person

    def csrf_token(self, request: Request) -> str:
        return "t"


def page(title: str, person: SupervisorEntry, body: str, scripts: list[str], csrf: str) -> bytes:
    return f"<title>{title}</title>{body}{''.join(scripts)}".encode()


class Stand:
    def __init__(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_732_156_800)
        self.map = LiveMap(BOOK, {SERVER: config()})
        self.hub = LiveHub(self.map, self.clock.seconds, self.clock)
        root = Resource()
        root.putChild(b"api", Resource())
        mount_live(root, self.hub, FakeSessions(), visible, BOOK, page)
        self.site = Site(root, reactor=self.clock)
        self.sim = Sim()

    def connect(self, who: str) -> tuple[Any, StringTransport]:
        addr = IPv4Address("TCP", "127.0.0.1", 40000)
        proto = self.site.buildProtocol(addr)
        transport = StringTransport(peerAddress=addr)
        proto.makeConnection(transport)
        proto.dataReceived(f"GET /api/stream HTTP/1.1\r\nHost: x\r\nwho: {who}\r\n\r\n".encode())
        return proto, transport

    def apply(self, events: list[Any]) -> None:
        self.map.apply_many(SERVER, events, self.clock.seconds())


def events(transport: StringTransport) -> list[tuple[str, Any]]:
    """The (event, data) pairs written so far, after the HTTP head; clears the transport."""
    text = transport.value().decode()
    transport.clear()
    found = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line
                     and line.split(": ", 1)[0] in ("event", "data"))
        if "event" in lines:
            found.append((lines["event"], json.loads(lines["data"])))
    return found


def numbers(data: Any) -> set[str]:
    return {row["number"] for row in data["agents"]}


def test_snapshot_on_connect_shows_only_the_persons_teams() -> None:
    stand = Stand()
    _, red = stand.connect("2001")
    assert red.value().startswith(b"HTTP/1.1 200")
    assert b"text/event-stream" in red.value()
    (kind, data), = events(red)
    assert kind == "snapshot"
    assert numbers(data) == {"1001", "1002"}
    assert data["servers"] == {SERVER: {"stale": False, "stale_since": None, "queues": []}}
    _, boss = stand.connect("2003")
    assert numbers(events(boss)[0][1]) == {"1001", "1002", "10", "100", "7001"}


def test_nobody_signed_in_gets_no_stream() -> None:
    stand = Stand()
    _, anon = stand.connect("")
    assert anon.value().startswith(b"HTTP/1.1 403")
    assert b"event:" not in anon.value()
    assert stand.hub.clients == []


def test_a_call_reaches_its_team_only_and_other_teams_hear_nothing() -> None:
    stand = Stand()
    _, red = stand.connect("2001")
    _, blue = stand.connect("2002")
    events(red), events(blue)
    call = incoming_trunk(stand.sim, "1001")
    stand.apply(call[:10])  # ringing, answered, bridged
    stand.clock.advance(WINDOW)
    (kind, data), = events(red)
    assert kind == "change"
    row, = data["agents"]
    assert (row["number"], row["status"], row["customer_number"], row["customer_name"],
            row["direction"], row["active"]) == (
        "1001", "Talking", "5553000", "Widget Co", "incoming", True)
    assert row["since"] <= data["now"]
    assert events(blue) == []  # not even an empty change: blue never learns 1001 moved
    stand.apply(incoming_trunk(stand.sim, "10")[:10])
    stand.clock.advance(WINDOW)
    assert events(red) == []
    assert [r["number"] for r in events(blue)[0][1]["agents"]] == ["10"]


def test_changes_within_the_window_are_sent_once_with_the_last_state() -> None:
    stand = Stand()
    _, red = stand.connect("2001")
    events(red)
    call = incoming_trunk(stand.sim, "1001")
    for event in call[:10]:  # ringing, then answered: one read each
        stand.apply([event])
    assert events(red) == []  # nothing before the window ends
    stand.clock.advance(WINDOW)
    sent = events(red)
    assert len(sent) == 1
    row, = sent[0][1]["agents"]
    assert (row["status"], row["customer_number"], row["active"]) == ("Talking", "5553000", True)
    for event in call[10:]:  # hold, unhold, hang up
        stand.apply([event])
    stand.clock.advance(WINDOW)
    row, = events(red)[0][1]["agents"]
    assert (row["status"], row["customer_number"], row["active"]) == ("Idle", "", False)


def test_a_call_that_comes_and_goes_within_one_window_sends_nothing() -> None:
    stand = Stand()
    _, red = stand.connect("2001")
    events(red)
    for event in incoming_trunk(stand.sim, "1001"):
        stand.apply([event])
    stand.clock.advance(WINDOW)
    assert events(red) == []  # Idle before, Idle after: the table has nothing to change


def test_a_reconnect_gets_a_fresh_snapshot_of_the_current_state() -> None:
    stand = Stand()
    proto, red = stand.connect("2001")
    events(red)
    stand.hub.disconnect_all()
    assert red.disconnecting
    proto.connectionLost(Failure(ConnectionDone()))
    assert stand.hub.clients == []
    stand.apply(incoming_trunk(stand.sim, "1002")[:10])  # while nobody was listening
    _, again = stand.connect("2001")
    (kind, data), = events(again)
    assert kind == "snapshot"
    talking = {r["number"]: r["status"] for r in data["agents"]}
    assert talking == {"1001": "Idle", "1002": "Talking"}


def test_the_map_is_followed_only_while_somebody_watches() -> None:
    stand = Stand()
    assert not stand.map._subscribers
    proto, _ = stand.connect("2001")
    assert stand.map._subscribers
    proto.connectionLost(Failure(ConnectionDone()))
    assert not stand.map._subscribers


def test_heartbeat_comment_every_15_seconds() -> None:
    stand = Stand()
    _, red = stand.connect("2001")
    red.clear()
    stand.clock.advance(14.9)
    assert red.value() == b""
    stand.clock.advance(0.1)
    assert b": keep-alive\n\n" in red.value()


def test_a_server_going_stale_is_flagged_to_everyone() -> None:
    stand = Stand()
    _, red = stand.connect("2001")
    _, blue = stand.connect("2002")
    events(red), events(blue)
    stand.map.mark_stale(SERVER, stand.clock.seconds())
    stand.clock.advance(WINDOW)
    for transport in (red, blue):
        (kind, data), = events(transport)
        assert kind == "change"
        assert data["servers"][SERVER]["stale"] is True
        assert data["agents"] == []


def test_a_slow_client_gets_a_snapshot_when_it_drains_not_a_backlog() -> None:
    stand = Stand()
    _, red = stand.connect("2001")
    events(red)
    client = stand.hub.clients[0]
    stand.hub.paused(client)
    stand.apply(incoming_trunk(stand.sim, "1001")[:10])
    stand.clock.advance(WINDOW)
    assert events(red) == []
    stand.hub.resumed(client)
    (kind, data), = events(red)
    assert kind == "snapshot"
    assert {r["number"]: r["status"] for r in data["agents"]}["1001"] == "Talking"


def test_the_page_lists_only_the_persons_teams_in_the_filter() -> None:
    stand = Stand()
    addr = IPv4Address("TCP", "127.0.0.1", 40000)
    proto = stand.site.buildProtocol(addr)
    transport = StringTransport(peerAddress=addr)
    proto.makeConnection(transport)
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\nwho: 2002\r\n\r\n")
    body = transport.value().decode()
    assert '<table id="live"' in body and '<div id="queue-strip">' in body
    assert '<option value="blue">' in body and '"red"' not in body
    assert "/static/live.js" in body


def test_with_only_pages_open_ami_reads_are_worked_out_once_per_window() -> None:
    stand = Stand()
    _, red = stand.connect("2001")
    events(red)
    heard: list[int] = []
    stand.map.subscribe(lambda changes: heard.append(len(changes)), batched=True)
    for event in incoming_trunk(stand.sim, "1001")[:10]:  # ten AMI reads, as the server does
        stand.map.ingest(SERVER, [event], stand.clock.seconds())
    assert heard == []  # the quiet path: no changes worked out per read
    assert events(red) == []
    stand.clock.advance(WINDOW)
    assert len(heard) == 1  # one report for the window
    row, = events(red)[0][1]["agents"]
    assert (row["number"], row["status"]) == ("1001", "Talking")


def test_queues_ride_along_per_server_for_the_queue_strip() -> None:
    stand = Stand()
    _, red = stand.connect("2001")
    events(red)
    stand.apply([stand.sim.queue_member("QueueMemberAdded", "sales", "Alice", "PJSIP/1001")])
    stand.clock.advance(WINDOW)
    (_, data), = events(red)
    assert [q["queue"] for q in data["servers"][SERVER]["queues"]] == ["sales"]
    _, again = stand.connect("2002")  # a fresh snapshot carries them too
    (_, snap), = events(again)
    assert [q["queue"] for q in snap["servers"][SERVER]["queues"]] == ["sales"]
