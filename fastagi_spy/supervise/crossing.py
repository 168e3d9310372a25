"""Sending a supervisor over a ``[[cross_server]]`` trunk to the server their agent is on.

On the supervisor's server, once the PIN and the rights check have passed, the server issues a
one-time token (store/tokens.py) and the call dials the trunk with it, say
``Dial(IAX2/trunk-b/<token>,20,g)``. The other server's bundle (context ``fastagi-spy-cross``)
runs our ``spy/cross`` route with the token as its only argument; the flow there redeems it,
resolves the target on that server, checks the bound supervisor's rights again and runs
ChanSpy. Its audio comes back over the trunk. The token is ours, never typed by anybody.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from twisted.logger import Logger

from fastagi_spy.config import CROSS_DIAL, CrossServerRoute
from fastagi_spy.store.errors import StoreError
from fastagi_spy.store.runner import InlineRunner, StoreRunner
from fastagi_spy.store.tokens import TOKEN, TokenGrant, TokenRefused, TokenStore
from fastagi_spy.supervise.line import AGILine

log = Logger()


class Handover(enum.Enum):
    SERVED = "served"  # the other server took the token: its own audit record tells the rest
    TRUNK_FAILED = "trunk_failed"  # the trunk did not answer (DIALSTATUS says why)
    UNUSED = "unused"  # the trunk answered, but the token never reached us from there


@dataclass(frozen=True)
class HandoverResult:
    outcome: Handover
    dial_status: str  # Asterisk's DIALSTATUS after the trunk call ("ANSWER", "CHANUNAVAIL"...)


def dial_argument(route: CrossServerRoute, token: str) -> str:
    """The Dial() argument that carries ``token`` over ``route``: target, timeout, and ``g``
    (back to our AGI when the other side hangs up). ValueError for anything unexpected."""
    # Both were checked where they were made; checked again here, where they meet a dialplan.
    if TOKEN.fullmatch(token) is None:
        raise ValueError("a cross-server token is 32 digits")
    if CROSS_DIAL.fullmatch(route.dial) is None:
        raise ValueError(f"unsafe cross_server dial {route.dial!r}")
    return f"{route.dial.replace('{token}', token)},{int(route.dial_timeout)},g"


class Crossing:
    """The configured trunks and the token store, for both ends of a crossing."""

    def __init__(self, routes: Iterable[CrossServerRoute], tokens: TokenStore,
                 now: Callable[[], float]) -> None:
        self._routes = {(r.origin, r.destination): r for r in routes}
        self.tokens = tokens
        self.now = now

    def route(self, origin: str | None, destination: str) -> CrossServerRoute | None:
        """The trunk from ``origin`` to ``destination``; None when none is configured."""
        return None if origin is None else self._routes.get((origin, destination))

    async def send(self, line: AGILine, route: CrossServerRoute, grant: TokenGrant, *,
                   runner: StoreRunner | None = None) -> HandoverResult:
        """Dial the other server's bundle with a fresh token for ``grant``; returns once the
        trunk call has ended. StoreError when no token could be issued (nothing dialled);
        LineGone when the supervisor hung up. The token is dead afterwards, used or not.
        ``runner``: where the token store calls run (the flow's; inline by default)."""
        runner = runner if runner is not None else InlineRunner()
        token = await runner.run(self.tokens.issue, grant, self.now(), route.token_ttl)
        try:
            await line.exec("Dial", dial_argument(route, token))
            status = await line.get_variable("DIALSTATUS") or ""
        finally:
            redeemed = await self._retire(token, runner)
        if status != "ANSWER":
            return HandoverResult(Handover.TRUNK_FAILED, status or "no DIALSTATUS")
        return HandoverResult(Handover.SERVED if redeemed else Handover.UNUSED, status)

    async def _retire(self, token: str, runner: StoreRunner) -> bool:
        try:
            return await runner.run(self.tokens.revoke, token, self.now())
        except StoreError as exc:
            # It still dies at its expiry; whether it was used is unknown, so not "served".
            log.error("Cross-server token could not be retired: {error}", error=exc)
            return False

    def redeem(self, token: str, server: str | None) -> TokenGrant:
        """The grant of ``token`` presented on ``server``; spent whatever the answer.
        TokenRefused (forged, expired, replayed, wrong_server); StoreError."""
        grant = self.tokens.redeem(token, self.now())
        if server is None or grant.destination != server:
            raise TokenRefused("wrong_server")
        if self.route(grant.origin, grant.destination) is None:
            raise TokenRefused("no_route")  # the trunk was taken out of the config since
        return grant
