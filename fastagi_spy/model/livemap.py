"""Every configured Asterisk server's state, change subscribers and target lookup."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from fastagi_spy.domain import Directory
from fastagi_spy.model.changes import Callback, Change, Payload, Subscribers
from fastagi_spy.model.config import ModelConfig
from fastagi_spy.model.events import EventLike, is_target
from fastagi_spy.model.resolve import Resolution, resolve
from fastagi_spy.model.state import ServerState

__all__ = ["LiveMap"]


class LiveMap:
    """One :class:`ServerState` per configured server name, plus subscribers.

    ``servers`` maps each server name (VICIdial's server_ip, or any label the
    config uses) to its rules.  Every method that changes state tells the
    subscribers and returns the same changes.
    """

    __slots__ = ("_eager", "_servers", "_subscribers")

    def __init__(self, directory: Directory, servers: Mapping[str, ModelConfig]) -> None:
        if not servers:
            raise ValueError("LiveMap needs at least one server")
        self._servers = {name: ServerState(name, directory, cfg) for name, cfg in servers.items()}
        self._subscribers = Subscribers()
        self._eager = 0  # subscribers that need the changes of every read as it happens

    @property
    def server_names(self) -> tuple[str, ...]:
        """Configured server names, in configuration order."""
        return tuple(self._servers)

    def server(self, name: str) -> ServerState:
        """The state of server ``name`` (KeyError for a name not configured)."""
        return self._servers[name]

    def channel_names(self, server: str) -> frozenset[str]:
        """Names of every live channel tracked for ``server``."""
        return self._servers[server].channel_names()

    def subscribe(self, callback: Callback, *, batched: bool = False) -> Callable[[], None]:
        """Call ``callback(changes)`` after every non-empty change; returns unsubscribe.

        What changed before this call is reported to the subscribers already there,
        so the new one hears only what changes from now on.  A ``batched`` subscriber
        is content to hear of AMI reads when somebody calls ``report`` (a page sending
        every 50 ms): while only such subscribers listen, ``ingest`` stays on its quiet
        path, which works the changes out once per report instead of once per read.
        """
        self._report_waiting(None)
        unsubscribe = self._subscribers.subscribe(callback)
        if batched:
            return unsubscribe
        self._eager += 1
        done: list[bool] = []

        def unsubscribe_eager() -> None:
            if not done:
                done.append(True)
                self._eager -= 1
            unsubscribe()

        return unsubscribe_eager

    def report(self, now: float | None = None) -> None:
        """Tell the subscribers what ``ingest`` left waiting (``now`` None: as of each
        server's last read)."""
        self._report_waiting(now)

    def apply(self, server: str, event: EventLike, now: float) -> list[Change]:
        """Apply one AMI event from ``server``."""
        return self.apply_many(server, (event,), now)

    def apply_many(self, server: str, events: Iterable[EventLike], now: float) -> list[Change]:
        """Apply events from ``server`` in order; subscribers hear once, of the net change."""
        changes = self._servers[server].apply_many(events, now)
        if changes:
            self._subscribers.publish(changes)
        return changes

    def ingest(self, server: str, events: Iterable[EventLike], now: float) -> None:
        """Apply one AMI read from ``server``: the server's own path.

        With subscribers this is ``apply_many``.  Without (or with batched ones only),
        the changes are not worked out after every read but when somebody asks: a
        snapshot, ``report``, or a new subscriber.
        """
        if self._eager:
            self.apply_many(server, events, now)
        else:
            self._servers[server].apply_quietly(events, now)

    def _report_waiting(self, now: float | None) -> None:
        """Report what ``ingest`` left waiting, as of ``now`` (None: each server's last read)."""
        for state in self._servers.values():
            self._subscribers.publish(state.report_changes(state.last_applied if now is None else now))

    def resync(
        self,
        server: str,
        channels: Sequence[EventLike],
        queue_members: Sequence[EventLike],
        now: float,
        device_states: Sequence[EventLike] | None = None,
        pool_agents: Sequence[EventLike] = (),
    ) -> list[Change]:
        """Rebuild ``server`` from its CoreShowChannels, QueueStatus, DeviceStateList and
        Agents lists (``device_states`` None: keep the registrations known before;
        ``pool_agents`` empty: nobody is logged in with AgentLogin)."""
        changes = self._servers[server].resync(
            channels, queue_members, now, device_states, pool_agents)
        self._subscribers.publish(changes)
        return changes

    def mark_stale(self, server: str, now: float) -> list[Change]:
        """``server``'s AMI link went down."""
        changes = self._servers[server].mark_stale(now)
        self._subscribers.publish(changes)
        return changes

    def snapshot(self, now: float) -> Payload:
        """Everything as JSON: {"servers": {name: {stale, agents, sessions, calls, queues}}}."""
        self._report_waiting(now)
        return {"servers": {name: state.snapshot(now) for name, state in self._servers.items()}}

    def resolve(self, target: str, server: str | None = None) -> Resolution:
        """The exact live channel ``target`` means, or why there is none (see resolve.resolve)."""
        if server is None:
            return resolve(tuple(self._servers.values()), target)
        state = self._servers.get(server)
        if state is None or not is_target(target):
            return Resolution.refuse("not_found")
        if state.stale:
            return Resolution.refuse("stale", server)
        return resolve((state,), target)

    def channel_agent(self, server: str, uniqueid: str) -> str | None:
        """The agent channel ``uniqueid`` on ``server`` belongs to, as far as the map knows
        (None for a server not configured, or an unknown channel)."""
        state = self._servers.get(server)
        return None if state is None else state.channel_agent(uniqueid)

    def bridge_peers(self, server: str, channel_name: str) -> tuple[tuple[str, str], ...]:
        """(name, uniqueid) of the channels bridged with ``channel_name`` on ``server``;
        empty for a server not configured or stale, or a channel in no bridge."""
        state = self._servers.get(server)
        if state is None or state.stale:
            return ()
        return state.bridge_peers(channel_name)

    def on_call_agents(self, server: str) -> list[tuple[str, float]]:
        """Agents on an answered call on ``server``, with its answer time, longest call first.

        Empty for a server not configured, or stale: nobody can say who is on a call there.
        """
        state = self._servers.get(server)
        if state is None or state.stale:
            return []
        return state.on_call_agents()
