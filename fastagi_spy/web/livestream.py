"""The live page's rows and their fan-out to Server-Sent Events clients.

One :class:`LiveHub` follows the live map for every open page, and only while one is open:
subscribing makes the map work out its changes after every AMI read, which nobody needs
when nobody looks.  Changes are coalesced for ``window`` seconds (last state of each agent
wins) and each batch is JSON-encoded once per distinct set of visible agents, not once per
client: 200 supervisors of 20 teams cost 20 encodings per batch, not 200.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

from fastagi_spy.model import LiveMap
from fastagi_spy.model.agents import extension_of
from fastagi_spy.model.changes import Change, Payload

__all__ = ["LiveHub", "StreamClient", "agent_row", "sse"]

Row = dict[str, Any]
Visible = frozenset[str] | None  # agent numbers a person may see; None: everyone
WINDOW = 0.05  # seconds changes are gathered before they are sent
HEARTBEAT = 15.0  # seconds between keep-alive comments (proxies close silent streams)


def sse(event: str, body: object) -> bytes:
    """One Server-Sent Event; json.dumps escapes newlines, so the data is one line."""
    return b"event: " + event.encode() + b"\ndata: " + _json(body) + b"\n\n"


def agent_row(server: str, agent: Payload, since: float) -> Row:
    """What the page shows of one agent (``agent``: the live map's agent payload)."""
    call: Any = agent.get("call")
    devices: Any = agent.get("devices") or []
    status = agent["status"]
    return {
        "server": server,
        "number": agent["number"],
        "name": agent["name"],
        "team": agent["team"],
        "extension": extension_of(devices[0]) if devices else "",
        "status": status,
        # The model's checked text (printable, bounded); the page shows it as text.
        "pause_reason": agent.get("pause_reason") or "",
        "logged_in": agent["logged_in"],
        "customer_number": call["customer_number"] if call else "",
        "customer_name": call["customer_name"] if call else "",
        "direction": call["direction"] if call else "",
        # Spy buttons only on an answered call: ChanSpy on a ringing leg hears nothing.
        "active": bool(call and call["answered_at"] is not None),
        "since": since,
    }


def _since(agent: Payload, before: Row | None, now: float) -> float:
    """When the agent's current state began: the call's own times while ringing or talking,
    else when this hub first saw the status (the model keeps no time for idle or paused)."""
    call: Any = agent.get("call")
    status = agent["status"]
    if call:
        if status == "Talking" and call["answered_at"] is not None:
            return float(call["answered_at"])
        if status == "Ringing" and call["ringing_at"] is not None:
            return float(call["ringing_at"])
    if before is not None and before["status"] == status:
        return float(before["since"])
    return now


def _server(state: Any, queues: dict[str, Any]) -> Row:
    """A server's entry: its link state and its whole queue list (the queue strip's data;
    queues are not per team, so everyone signed in sees them)."""
    return {"stale": bool(state.get("stale")), "stale_since": state.get("stale_since"),
            "queues": [queues[name] for name in sorted(queues)]}


class StreamClient:
    """One open stream: where its bytes go and which agents it may be told about."""

    __slots__ = ("close", "paused", "resync", "visible", "write")

    def __init__(self, write: Callable[[bytes], object], visible: Visible,
                 close: Callable[[], object]) -> None:
        self.write = write
        self.visible = visible
        self.close = close
        # Paused by TCP flow control: changes are not queued for it; once it drains it
        # gets one fresh snapshot instead, so a slow browser costs one snapshot of memory.
        self.paused = False
        self.resync = False


class LiveHub:
    """The rows every open page may see, kept from the live map's changes."""

    def __init__(self, live_map: LiveMap, now: Callable[[], float], clock: IReactorTime,
                 window: float = WINDOW, heartbeat: float = HEARTBEAT) -> None:
        self.live_map = live_map
        self.now = now
        self.clock = clock
        self.window = window
        self.clients: list[StreamClient] = []
        self.rows: dict[tuple[str, str], Row] = {}
        self.servers: dict[str, Row] = {}
        self._links: dict[str, Any] = {}  # server -> its last "server" payload (stale flags)
        self._queues: dict[str, dict[str, Any]] = {}  # server -> queue name -> payload
        self._pending_rows: dict[tuple[str, str], Change] = {}
        self._pending_servers: dict[str, list[Change]] = {}
        self._ticker = LoopingCall(self.tick)
        self._ticker.clock = clock
        self._unsubscribe: Callable[[], None] | None = None
        self._heartbeat = LoopingCall(self._beat)
        self._heartbeat.clock = clock
        self._heartbeat_every = heartbeat

    # --- clients ----------------------------------------------------------------------

    def attach(self, client: StreamClient) -> None:
        """Start ``client``'s stream: a snapshot now, changes from then on."""
        if self._unsubscribe is None:
            self._follow()
        self.clients.append(client)
        client.write(self.snapshot_event(client.visible))

    def detach(self, client: StreamClient) -> None:
        """``client`` went away; the last one to go stops the map's change reports."""
        if client in self.clients:
            self.clients.remove(client)
        if not self.clients and self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
            self.rows.clear()
            self.servers.clear()
            self._links.clear()
            self._queues.clear()
            self._pending_rows.clear()
            self._pending_servers.clear()
            if self._ticker.running:
                self._ticker.stop()
            if self._heartbeat.running:
                self._heartbeat.stop()

    def disconnect_all(self) -> None:
        """Close every stream (the pages reconnect and resync from a fresh snapshot)."""
        for client in tuple(self.clients):
            client.close()

    def paused(self, client: StreamClient) -> None:
        client.paused = True

    def resumed(self, client: StreamClient) -> None:
        client.paused = False
        if client.resync and client in self.clients:
            client.resync = False
            client.write(self.snapshot_event(client.visible))

    # --- the map's side ---------------------------------------------------------------

    def _follow(self) -> None:
        # Subscribe first: what the snapshot below already holds may be reported to us once
        # more, which the rows absorb; nothing can fall between the two.
        self._unsubscribe = self.live_map.subscribe(self._changed, batched=True)
        now = self.now()
        self.rows.clear()
        for server, state in self.live_map.snapshot(now)["servers"].items():  # type: ignore[attr-defined]
            self._links[server] = state
            self._queues[server] = {q["queue"]: q for q in state.get("queues", ())}
            self.servers[server] = _server(state, self._queues[server])
            for agent in state["agents"]:
                key = (server, agent["number"])
                self.rows[key] = agent_row(server, agent, _since(agent, None, now))
        self._pending_rows.clear()
        self._pending_servers.clear()
        self._heartbeat.start(self._heartbeat_every, now=False)
        self._ticker.start(self.window, now=False)

    def tick(self) -> None:
        """Every ``window`` while pages are open: collect what the AMI reads changed (the
        map works it out now, once, not after every read) and send it."""
        self.live_map.report()
        self.flush()

    def _changed(self, changes: Sequence[Change]) -> None:
        # Called at each report (and at once for a resync or a link going down): only note
        # what changed (the last change of an agent wins); rows are built at the flush.
        pending = self._pending_rows
        for change in changes:
            kind = change.kind
            if kind == "agent":
                pending[(change.server, change.key)] = change
            elif kind in ("server", "queue"):
                self._pending_servers.setdefault(change.server, []).append(change)

    def _settle(self) -> tuple[list[tuple[tuple[str, str], bytes | None]], dict[str, Row]]:
        """Fold the pending changes into the rows; the rows that changed as JSON (None:
        gone), each encoded once whoever it goes to."""
        pending, self._pending_rows = self._pending_rows, {}
        server_changes, self._pending_servers = self._pending_servers, {}
        now = self.now()
        rows = self.rows
        settled: list[tuple[tuple[str, str], bytes | None]] = []
        for key, change in pending.items():
            agent = change.value
            if agent is None:
                if rows.pop(key, None) is not None:
                    settled.append((key, None))
                continue
            before = rows.get(key)
            row = agent_row(key[0], agent, _since(agent, before, now))
            if row == before:
                continue  # a change the table does not show (a channel renamed, a session)
            rows[key] = row
            settled.append((key, _json(row)))
        servers: dict[str, Row] = {}
        for name, changes in server_changes.items():
            queues = self._queues.setdefault(name, {})
            for change in changes:
                if change.kind == "server":
                    self._links[name] = change.value or {}
                elif change.value is None:
                    queues.pop(change.key, None)
                else:
                    queues[change.key] = change.value
            self.servers[name] = servers[name] = _server(self._links.get(name, {}), queues)
        return settled, servers

    # --- what is sent -----------------------------------------------------------------

    def snapshot_event(self, visible: Visible) -> bytes:
        rows = [r for r in self.rows.values() if visible is None or r["number"] in visible]
        return sse("snapshot", {"now": self.now(), "servers": dict(self.servers), "agents": rows})

    def flush(self) -> None:
        """Send what changed since the last flush to every client, filtered per client."""
        pending, servers = self._settle()
        if not pending and not servers:
            return
        now = self.now()
        encoded: dict[Visible, bytes | None] = {}
        for client in tuple(self.clients):
            visible = client.visible
            if visible not in encoded:
                encoded[visible] = _change_event(pending, servers, visible, now)
            data = encoded[visible]
            if data is None:
                continue
            if client.paused:
                client.resync = True
            else:
                client.write(data)

    def _beat(self) -> None:
        for client in tuple(self.clients):
            if not client.paused:
                client.write(b": keep-alive\n\n")


def _json(body: object) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _change_event(pending: Iterable[tuple[tuple[str, str], bytes | None]],
                  servers: dict[str, Row], visible: Visible, now: float) -> bytes | None:
    rows: list[bytes] = []
    gone: list[list[str]] = []
    for (server, number), row in pending:
        if visible is not None and number not in visible:
            continue  # another team's agent: never sent, not even that it changed
        if row is None:
            gone.append([server, number])
        else:
            rows.append(row)
    if not rows and not gone and not servers:
        return None
    # The rows are JSON already: the event is put together around them.
    return b"".join((b'event: change\ndata: {"now":', _json(now), b',"servers":', _json(servers),
                     b',"agents":[', b",".join(rows), b'],"gone":', _json(gone), b"}\n\n"))
