"""Which exact channel a target means: the one place that answers it.

A target is a 7-digit session id, an agent number, or an extension.  Each server's
tables answer who it names (``lookup``) and the one channel a spy on that agent would
join (``spy_target``); ``resolve`` decides across servers, refusing whenever two people
or a stale server could be meant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastagi_spy.domain import Reason
from fastagi_spy.model.agents import Agent
from fastagi_spy.model.channels import Channel, first_half_name, is_second_half
from fastagi_spy.model.events import is_target
from fastagi_spy.model.tables import Tables

if TYPE_CHECKING:
    from fastagi_spy.model.state import ServerState

__all__ = [
    "Reason",
    "Resolution",
    "SpyTarget",
    "channel_agent",
    "facing_call",
    "lookup",
    "order",
    "resolve",
    "spy_channels",
    "spy_target",
    "with_others",
]


@dataclass(frozen=True, slots=True)
class Resolution:
    """A resolved spy target, or the reason there is none.

    Only ``ok`` answers carry ``channel``: the exact channel name to hand to
    ChanSpy, taken from our own tracked state, never from the caller.
    """

    ok: bool
    reason: Reason
    server: str | None = None
    agent_number: str | None = None
    session_id: str | None = None
    channel: str | None = None
    uniqueid: str | None = None

    @classmethod
    def refuse(
        cls,
        reason: Reason,
        server: str | None = None,
        agent_number: str | None = None,
        session_id: str | None = None,
    ) -> Resolution:
        """A negative answer (``ok`` False, no channel)."""
        return cls(False, reason, server, agent_number, session_id)


class SpyTarget:
    """What one server knows about spying on one agent (see LiveMap.resolve)."""

    __slots__ = ("channel", "reason", "session_id", "uniqueid")

    def __init__(
        self,
        reason: str,
        session_id: str | None = None,
        channel: str | None = None,
        uniqueid: str | None = None,
    ) -> None:
        self.reason = reason
        self.session_id = session_id
        self.channel = channel
        self.uniqueid = uniqueid


def with_others(tables: Tables, channel: Channel) -> bool:
    """In a bridge, or a 7-digit room, together with at least one other channel."""
    bridge = channel.bridge
    if bridge is not None and len(tables.bridges.get(bridge, ())) > 1:
        return True
    room = channel.room
    return room is not None and len(tables.rooms.get(room, ())) > 1


def _peers(tables: Tables, channel: Channel) -> set[str]:
    """Uniqueids sharing a bridge or a room with ``channel``."""
    peers: set[str] = set()
    if channel.bridge is not None:
        peers.update(tables.bridges.get(channel.bridge, ()))
    if channel.room is not None:
        peers.update(tables.rooms.get(channel.room, ()))
    peers.discard(channel.uniqueid)
    return peers


def channel_agent(tables: Tables, uniqueid: str) -> str | None:
    """The agent a channel belongs to: its own agent, else the one agent on a call with it
    (a customer's leg); None when it is unknown, or nobody or several could be meant."""
    channel = tables.channels.get(uniqueid)
    if channel is None:
        return None
    if channel.agent is not None:
        return channel.agent
    owners = {peer.agent for u in _peers(tables, channel)
              if (peer := tables.channels.get(u)) is not None and peer.agent is not None}
    return owners.pop() if len(owners) == 1 else None


def facing_call(tables: Tables, agent: Agent, candidates: list[Channel]) -> list[Channel]:
    """Of an agent's busy channels, the ones facing the call rather than the agent's phone.

    One call can reach an agent through a chain of its own channels: with
    Dial(Local/1001@agents/n) the chain is customer <-> Local;1 ... Local;2 <->
    PJSIP/1001-..., all bridged.  A channel whose bridge and room hold only the
    agent's own channels is a link inside that chain, not the call.  If both
    halves of a Local pair still face others, ";1" is the one Dial or Queue put
    in the caller's bridge, and ";2" only leads on to the agent's phone.
    """
    if len(candidates) < 2:
        return candidates
    own = agent.channels
    facing = [c for c in candidates if any(p not in own for p in _peers(tables, c))]
    if facing:
        candidates = facing
    names = {c.name for c in candidates}
    return [
        c for c in candidates if not (is_second_half(c.name) and first_half_name(c.name) in names)
    ]


def order(channel: Channel) -> tuple[float, str]:
    """Oldest channel first; uniqueid breaks ties."""
    return channel.created_at, channel.uniqueid


def spy_channels(tables: Tables, agent: Agent) -> list[Channel]:
    """The agent's device channels a spy could mean: on a call, or in its session room."""
    channels = tables.channels
    candidates = [
        channel
        for channel in (channels[u] for u in agent.channels)
        if channel.room is not None or with_others(tables, channel)
    ]
    return sorted(facing_call(tables, agent, candidates), key=order)


def lookup(tables: Tables, target: str) -> tuple[int, frozenset[str]] | None:
    """Agents ``target`` names here, with the kind of match.

    Rank 0: a 7-digit session id; 1: an agent number; 2: an extension.
    Exact dict lookups only: "10" never finds "100", "PJSIP/100" never "PJSIP/1001".
    """
    if len(target) == 7:
        holders = tables.sessions.get(target)
        if holders:
            return 0, frozenset(holders)
    if target in tables.agents:
        return 1, frozenset((target,))
    owners = tables.ext_agents.get(target)
    if owners:
        return 2, frozenset(owners)
    return None


def spy_target(tables: Tables, number: str) -> SpyTarget:
    """The one channel a spy on agent ``number`` would join here, or why not."""
    agent = tables.agents.get(number)
    if agent is None:
        return SpyTarget("not_found")
    if not agent.logins:
        return SpyTarget("not_logged_in")
    candidates = spy_channels(tables, agent)
    if not candidates:
        return SpyTarget("not_on_call", agent.session_id)
    if len(candidates) > 1:
        return SpyTarget("ambiguous", agent.session_id)
    channel = candidates[0]
    return SpyTarget("ok", agent.session_id, channel.name, channel.uniqueid)


def resolve(states: Sequence[ServerState], target: str) -> Resolution:
    """The exact live channel ``target`` means, or why there is none.

    ``target`` is tried as a 7-digit session id, then an agent number, then
    an extension; the first kind that matches anywhere wins.  Searching all
    servers, a stale one that could hold the target answers "stale": a
    guess from the others could be the wrong person.
    """
    if not is_target(target):
        return Resolution.refuse("not_found")
    hits: list[tuple[ServerState, int, frozenset[str]]] = []
    for state in states:
        hit = state.lookup(target)
        if state.stale:
            # Sessions and rooms come and go: any 7-digit target could be there.
            if hit is not None or len(target) == 7:
                return Resolution.refuse("stale", state.name)
            continue
        if hit is not None:
            hits.append((state, hit[0], hit[1]))
    if not hits:
        return Resolution.refuse("not_found")
    best = min(rank for _, rank, _ in hits)
    hits = [h for h in hits if h[1] == best]
    people = frozenset().union(*(numbers for _, _, numbers in hits))
    if len(people) > 1:
        # Two different agents answer to this target: never pick one.
        return Resolution.refuse("ambiguous")
    (number,) = people
    answers = [(state, state.spy_target(number)) for state, _, _ in hits]
    return _decide(number, answers)


def _decide(number: str, answers: list[tuple[ServerState, SpyTarget]]) -> Resolution:
    ok = [(state, answer) for state, answer in answers if answer.reason == "ok"]
    if len(ok) > 1 or any(answer.reason == "ambiguous" for _, answer in answers):
        first = next(s for s, a in answers if a.reason in ("ok", "ambiguous"))
        return Resolution.refuse("ambiguous", first.name, number)
    if ok:
        state, answer = ok[0]
        return Resolution(
            True,
            "ok",
            state.name,
            number,
            answer.session_id,
            answer.channel,
            answer.uniqueid,
        )
    for state, answer in answers:
        if answer.reason == "not_on_call":
            return Resolution.refuse("not_on_call", state.name, number, answer.session_id)
    state, _ = answers[0]
    return Resolution.refuse("not_logged_in", state.name, number)
