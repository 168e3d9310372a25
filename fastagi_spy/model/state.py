"""One Asterisk server's live state: apply events, resync from lists, go stale."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from fastagi_spy.domain import Directory
from fastagi_spy.model.changes import Change, Payload
from fastagi_spy.model.config import ModelConfig
from fastagi_spy.model.devices import UNREGISTERED_STATES
from fastagi_spy.model.events import EventLike, Malformed
from fastagi_spy.model.handlers import HANDLERS
from fastagi_spy.model.queues import queue_payload
from fastagi_spy.model.resolve import SpyTarget, channel_agent, lookup, spy_target
from fastagi_spy.model.resync import load
from fastagi_spy.model.tables import Tables
from fastagi_spy.model.views import (
    AgentView,
    CallView,
    SessionView,
    agent_payload,
    agent_view,
    call_payload,
    call_view,
    flush,
    session_payload,
    session_view,
)

__all__ = ["ServerState"]

# Session ids (rooms come and go) that may wait unreported in apply_quietly.
_MAX_WAITING_SESSIONS = 4096


class ServerState:
    """The live map of one Asterisk server (VICIdial's server_ip).

    ``apply`` and ``resync`` return the changes they caused.  ``stale`` is set
    by ``mark_stale`` when the AMI link drops and cleared by ``resync``:
    callers must not act on a stale server's channels.
    """

    __slots__ = ("_tables", "config", "directory", "last_applied", "name", "stale", "stale_since")

    def __init__(self, name: str, directory: Directory, config: ModelConfig) -> None:
        self.name = name
        self.directory = directory
        self.config = config
        self.stale = False
        self.stale_since: float | None = None
        # When events were last applied (the time a quiet change is reported at).
        self.last_applied = 0.0
        self._tables = Tables(directory, config)
        # Directory agents start logged in with allocated sessions: take that
        # as the baseline so the first event reports only real changes.
        flush(name, self._tables, 0.0)

    @property
    def malformed(self) -> int:
        """Events and list items ignored because a field was missing or unparsable."""
        return self._tables.malformed

    def apply(self, event: EventLike, now: float) -> list[Change]:
        """Apply one AMI event; unknown events cost one dict lookup."""
        return self.apply_many((event,), now)

    def apply_many(self, events: Iterable[EventLike], now: float) -> list[Change]:
        """Apply events in order, then report what changed once for all of them.

        A burst read off the socket becomes one batch of changes, each thing's newest view:
        an agent who rang and answered within the burst is reported Talking, once.
        """
        self.apply_quietly(events, now)
        return self.report_changes(now)

    def apply_quietly(self, events: Iterable[EventLike], now: float) -> None:
        """Apply events in order, leaving what changed for the next ``report_changes``.

        For when nobody follows the changes: working out each thing's view after
        every read is most of what applying costs, and the next report gives the
        same net change.  What waits is bounded by the live agents, calls and
        sessions, and reported (to nobody) once too many sessions are waiting.
        """
        self.last_applied = now
        tables = self._tables
        handlers = HANDLERS
        for event in events:
            handler = handlers.get(event.event or "")
            if handler is None:
                continue
            try:
                handler(tables, event, now)
            except Malformed:
                tables.malformed += 1
        tables.settle_sessions(now)
        if len(tables.touched_sessions) > _MAX_WAITING_SESSIONS:
            self.report_changes(now)

    def report_changes(self, now: float) -> list[Change]:
        """Everything that changed since the last report, each thing's newest view once."""
        tables = self._tables
        if (tables.dirty_agents or tables.dirty_calls or tables.ended or tables.touched_sessions
                or tables.queues.dirty):
            return flush(self.name, tables, now)
        return []

    def resync(
        self,
        channels: Sequence[EventLike],
        queue_members: Sequence[EventLike],
        now: float,
        device_states: Sequence[EventLike] | None = None,
        pool_agents: Sequence[EventLike] = (),
    ) -> list[Change]:
        """Rebuild from CoreShowChannel, QueueMember, DeviceStateChange and Agents items in
        one step (``pool_agents``: the Agents action's list, AgentLogin's logins).

        The new state replaces the old one only once fully built; the changes
        are the difference, so whatever vanished is reported as removed.
        Allocated session ids survive for agents still logged in.
        """
        old = self._tables
        kept = {
            number: agent.allocated
            for number, agent in old.agents.items()
            if agent.allocated is not None and agent.logins
        }
        new = Tables(self.directory, self.config, kept, old.book.allocator.resting(), now)
        new.malformed = old.malformed
        if device_states is None:
            unregistered = old.devices.unavailable
        else:
            unregistered = {
                device
                for item in device_states
                if (device := item.get("Device")) and item.get("State") in UNREGISTERED_STATES
            }
        for device in sorted(unregistered):
            new.set_device_state(device, "UNAVAILABLE")
        load(new, channels, queue_members, now, pool_agents)
        # The day's answered/abandoned counts are ours, not in any list: keep them.
        new.queues.carry_day(old.queues)
        # Sessions in a fixed order so allocation is deterministic.
        for number in sorted(new.dirty_agents):
            new.refresh_session(new.agents[number], now)
        new.session_dirty.clear()
        new.book.release_unused_kept(now)
        new.emitted_agents = dict(old.emitted_agents)
        new.emitted_calls = dict(old.emitted_calls)
        new.emitted_sessions = dict(old.emitted_sessions)
        new.touched_sessions.update(old.emitted_sessions)
        gone_agents = set(old.emitted_agents) - set(new.agents)
        gone_calls = set(old.emitted_calls) - set(new.calls)
        gone_queues = set(new.queues.emitted) - set(new.queues.queues)
        changes = flush(self.name, new, now)
        for number in sorted(gone_agents):
            del new.emitted_agents[number]
            changes.append(Change(self.name, "agent", number, None))
        for linkedid in sorted(gone_calls):
            del new.emitted_calls[linkedid]
            changes.append(Change(self.name, "call", linkedid, None))
        for name in sorted(gone_queues):
            del new.queues.emitted[name]
            changes.append(Change(self.name, "queue", name, None))
        self._tables = new
        if self.stale:
            self.stale = False
            self.stale_since = None
            changes.append(Change(self.name, "server", self.name, self._server_payload()))
        return changes

    def mark_stale(self, now: float) -> list[Change]:
        """The AMI link is down: nothing here may be trusted until the next resync."""
        if self.stale:
            return []
        self.stale = True
        self.stale_since = now
        return [Change(self.name, "server", self.name, self._server_payload())]

    def _server_payload(self) -> Payload:
        return {"stale": self.stale, "stale_since": self.stale_since}

    # --- lookups ----------------------------------------------------------------

    def lookup(self, target: str) -> tuple[int, frozenset[str]] | None:
        """Agents ``target`` names here, with the kind of match (see resolve.lookup)."""
        return lookup(self._tables, target)

    def spy_target(self, number: str) -> SpyTarget:
        """The one channel a spy on agent ``number`` would join here, or why not."""
        return spy_target(self._tables, number)

    # --- views ------------------------------------------------------------------

    def sizes(self) -> tuple[int, int, int]:
        """(agents, calls, sessions) tracked now: the metrics page's map size."""
        tables = self._tables
        return len(tables.agents), len(tables.calls), len(tables.sessions)

    def snapshot(self, now: float) -> Payload:
        """This server as JSON: stale flag, agents, sessions, calls and queues, sorted by key.

        Shows the views last reported: call ``report_changes`` first.
        """
        tables = self._tables
        agents: list[Payload] = []
        for number in sorted(tables.agents):
            agent = tables.agents[number]
            shown = tables.emitted_agents.get(number)
            view = shown if isinstance(shown, AgentView) else agent_view(tables, agent)
            agents.append(agent_payload(agent, view, now))
        sessions: list[Payload] = []
        for session_id in sorted(tables.sessions):
            sview = tables.emitted_sessions.get(session_id)
            if not isinstance(sview, SessionView):
                sview = session_view(tables, session_id)
            if sview is not None:
                sessions.append(session_payload(session_id, sview))
        calls: list[Payload] = []
        for linkedid in sorted(tables.calls):
            cview = tables.emitted_calls.get(linkedid)
            if not isinstance(cview, CallView):
                cview = call_view(tables, tables.calls[linkedid])
            calls.append(call_payload(linkedid, cview, now))
        book = tables.queues
        queues = [queue_payload(name, book.view(name, now), now) for name in sorted(book.queues)]
        return {
            "stale": self.stale,
            "agents": agents,
            "sessions": sessions,
            "calls": calls,
            "queues": queues,
        }

    def channel_names(self) -> frozenset[str]:
        """Names of every live channel tracked here (to compare with CoreShowChannels)."""
        return frozenset(channel.name for channel in self._tables.channels.values())

    def counts(self) -> dict[str, int]:
        """Sizes of the live tables (for health pages and benchmarks)."""
        tables = self._tables
        return {
            "channels": len(tables.channels),
            "bridges": len(tables.bridges),
            "calls": len(tables.calls),
            "agents": len(tables.agents),
            "sessions": len(tables.sessions),
            "malformed": tables.malformed,
        }

    def check_invariants(self) -> list[str]:
        """Cross-reference problems in the tables (empty when consistent); for tests."""
        tables = self._tables
        problems: list[str] = []
        for bridge, members in tables.bridges.items():
            problems.extend(
                f"bridge {bridge} lists missing {u}" for u in members if u not in tables.channels
            )
        for room, members in tables.rooms.items():
            problems.extend(
                f"room {room} lists missing {u}" for u in members if u not in tables.channels
            )
        for linkedid, call in tables.calls.items():
            if not call.channels:
                problems.append(f"call {linkedid} has no channels")
            problems.extend(
                f"call {linkedid} lists missing {u}"
                for u in call.channels
                if u not in tables.channels
            )
        for uniqueid, channel in tables.channels.items():
            own = tables.calls.get(channel.linkedid)
            if own is None or uniqueid not in own.channels:
                problems.append(f"channel {uniqueid} not in its call {channel.linkedid}")
            if channel.bridge is not None and uniqueid not in tables.bridges.get(
                channel.bridge, ()
            ):
                problems.append(f"channel {uniqueid} not in its bridge {channel.bridge}")
            if channel.agent is not None and uniqueid not in tables.agents[channel.agent].channels:
                problems.append(f"channel {uniqueid} not listed by agent {channel.agent}")
        for number, agent in tables.agents.items():
            problems.extend(
                f"agent {number} lists missing {u}"
                for u in agent.channels
                if u not in tables.channels
            )
            if agent.session_id is not None and number not in tables.sessions.get(
                agent.session_id, ()
            ):
                problems.append(f"agent {number} session {agent.session_id} not indexed")
        return problems

    def channel_agent(self, uniqueid: str) -> str | None:
        """The agent the live channel ``uniqueid`` belongs to (see resolve.channel_agent)."""
        return channel_agent(self._tables, uniqueid)

    def bridge_peers(self, channel_name: str) -> tuple[tuple[str, str], ...]:
        """(name, uniqueid) of the channels sharing a bridge with live ``channel_name``:
        whom a HIJACK takes over (the customer facing the agent's leg)."""
        tables = self._tables
        uniqueid = tables.by_name.get(channel_name)
        channel = tables.channels.get(uniqueid) if uniqueid is not None else None
        if channel is None or channel.bridge is None:
            return ()
        peers = (tables.channels.get(u) for u in tables.bridges.get(channel.bridge, ())
                 if u != uniqueid)
        return tuple(sorted((p.name, p.uniqueid) for p in peers if p is not None))

    def on_call_agents(self) -> list[tuple[str, float]]:
        """Agents on an answered call here now, with its answer time: longest call first.

        Each agent's view is worked out from the tables as they are, not taken from the
        last report, so a call answered in a read nobody has reported yet is on the list.
        A paused agent still on a call is on it too: typing the number would reach them.
        """
        tables = self._tables
        found: list[tuple[str, float]] = []
        for number, agent in tables.agents.items():
            if not agent.logins or not agent.channels:
                continue
            view = agent_view(tables, agent)
            call = view.call
            if view.status not in ("Talking", "Paused") or call is None:
                continue
            if call.answered_at is not None:
                found.append((number, call.answered_at))
        found.sort(key=lambda item: (item[1], item[0]))
        return found

    def agent_now(self, number: str) -> AgentView | None:
        """Agent ``number``'s view from the tables as they are now (None: not known here).

        Worked out afresh, not taken from the last report, like ``on_call_agents``.
        """
        agent = self._tables.agents.get(number)
        return None if agent is None else agent_view(self._tables, agent)

    def agent_numbers(self) -> list[str]:
        """Every agent known here (the directory's and those learned from AMI), sorted."""
        return sorted(self._tables.agents)
