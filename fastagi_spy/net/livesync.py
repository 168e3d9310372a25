"""Keeps one server's part of the live map exact over one AMI connection.

On every login it rebuilds that server's state from CoreShowChannels, QueueStatus,
DeviceStateList and Agents in one step. Events that arrive while the snapshot is being
collected are held back and applied after it, in order, so a Hangup racing the snapshot can
never resurrect a dead channel. While AMI is down the server's state is marked stale, so
nobody acts on a guess.

A read the map fails to apply (anything but a ``Malformed`` event, which the model counts and
skips) may have been applied in part: the server is marked stale and rebuilt by a resync,
never trusted as it stands.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from fastagi_spy.net.ami import AMIClient, AMIError
from fastagi_spy.wire.ami import AMIMessage

# QueueStatus's list items the map rebuilds from (app_queue.c manager_queues_status).
_QUEUE_ITEMS = frozenset(("QueueParams", "QueueMember", "QueueEntry"))


class LiveSync:
    log = Logger()

    def __init__(
        self,
        live_map: Any,
        server: str,
        now: Callable[[], float],
        also: Callable[[AMIMessage], None] | None = None,
    ) -> None:
        self.live_map = live_map
        self.server = server
        self.now = now
        self.also = also  # e.g. the ChanSpy watches; they see every event
        self._held: list[AMIMessage] | None = None
        self._client: AMIClient | None = None
        self.resyncs = 0
        self._broken = False  # a read failed to apply; stale until a resync succeeds

    def attach(self, client: AMIClient) -> None:
        self._client = client
        client.on_ready = self.resync
        client.on_down = lambda _c: self.live_map.mark_stale(self.server, self.now())
        client.add_listener(self.on_events)

    def on_events(self, messages: Sequence[AMIMessage]) -> None:
        """One read's events, in order; those not held for a resync are applied together."""
        ready: list[AMIMessage] = []
        for message in messages:
            if self.also is not None:
                try:
                    self.also(message)
                except Exception:  # a watcher's bug must not cost the map this read
                    self.log.failure("Event watcher failed on {event}", event=message.event)
            name = message.event
            if name == "Shutdown":
                self._apply(ready)
                self.live_map.mark_stale(self.server, self.now())
            elif name == "FullyBooted" and self._client is not None and self._client.ready:
                # Asterisk finished booting after we logged in: what we saw may be incomplete.
                self._apply(ready)
                self.resync(self._client).addErrback(self._resync_failed)
            if self._held is not None:
                self._held.append(message)
            else:
                ready.append(message)
        self._apply(ready)

    def _apply(self, messages: list[AMIMessage]) -> None:
        if not messages:
            return
        try:
            self.live_map.ingest(self.server, messages, self.now())
        except Exception:
            self._failed_to_apply(Failure())
        finally:
            messages.clear()

    def _failed_to_apply(self, failure: Failure) -> None:
        """The read may be half applied: stop trusting the server's state and rebuild it."""
        if not self._broken:
            self._broken = True  # logged once; later reads fail the same way until rebuilt
            self.log.failure(
                "Live map for {server} failed to apply an AMI read; marked stale until a "
                "resync rebuilds it", failure, level=LogLevel.error, server=self.server)
        self.live_map.mark_stale(self.server, self.now())
        if self._client is not None and self._client.ready:
            self.resync(self._client).addErrback(self._resync_failed)

    def _resync_failed(self, failure: Failure) -> None:
        if not failure.check(AMIError):  # AMIErrors are logged by _resync already
            self.log.failure("Resync of {server} failed", failure, server=self.server)

    def resync(self, client: AMIClient) -> defer.Deferred[None]:
        return defer.ensureDeferred(self._resync(client))

    async def _device_states(self, client: AMIClient) -> list[AMIMessage] | None:
        """Every device state Asterisk has cached (who is registered), or None when the
        server will not list them: the states seen before the reconnect are kept then."""
        try:
            listed = await client.call("DeviceStateList", timeout=30)
        except AMIError as exc:
            self.log.warn("DeviceStateList on {server} failed ({error}): registrations seen "
                          "before the reconnect are kept", server=self.server, error=exc)
            return None
        return [e for e in listed.events if e.event == "DeviceStateChange"]

    async def _pool_agents(self, client: AMIClient) -> list[AMIMessage]:
        """app_agent_pool's agents (AgentLogin logins), or none when the server will not
        list them: a login nobody can confirm is not kept (no spy on a guess)."""
        try:
            listed = await client.call("Agents", timeout=30)
        except AMIError as exc:
            # Most sites do not use AgentLogin, and the shipped account has no write=agent:
            # say it plainly, once per login, without crying wolf in every log.
            self.log.info("AgentLogin logins not tracked on {server} ({error}); a site that "
                          "uses AgentLogin needs write = agent on the AMI account",
                          server=self.server, error=exc)
            return []
        return [e for e in listed.events if e.event == "Agents"]

    async def _resync(self, client: AMIClient) -> None:
        if self._held is not None:
            return  # one already running; it will apply what arrives meanwhile
        self._held = []
        try:
            channels = await client.call("CoreShowChannels", timeout=30)
            queues = await client.call("QueueStatus", timeout=30)
            # Members, and the queues themselves with the callers waiting in them.
            members = [e for e in queues.events if e.event in _QUEUE_ITEMS]
            devices = await self._device_states(client)
            pool = await self._pool_agents(client)
            self.live_map.resync(self.server, channels.events, members, self.now(), devices, pool)
            self.resyncs += 1
            self._broken = False
            self.log.info(
                "Live map for {server} rebuilt: {channels} channels, {members} queue members",
                server=self.server, channels=len(channels.events), members=len(members))
        except AMIError as exc:
            self.log.warn("Resync of {server} failed: {error}", server=self.server, error=exc)
            raise
        finally:
            held, self._held = self._held, None
            self._apply(held or [])
