"""What the supervision flow needs from a FastAGI call, as a Protocol.

``net.fastagi.AGISession`` satisfies it; the flow never imports Twisted adapters, and unit
tests can drive the flow with a scripted line.
"""

from __future__ import annotations

from typing import Protocol

from fastagi_spy.wire.agi import AGIEnvironment, AGIReply


class LineGone(Exception):
    """The caller hung up or the FastAGI connection closed: nobody is left to hear a prompt."""


class AGILine(Protocol):
    env: AGIEnvironment
    hung_up: bool

    async def answer(self) -> AGIReply: ...

    async def get_data(self, prompt: str, timeout_ms: int, max_digits: int) -> str | None: ...

    async def stream_file(self, name: str) -> AGIReply: ...

    async def say_digits(self, digits: str, escape: str) -> str | None:
        """Say ``digits`` (ASCII digits only); the key in ``escape`` pressed meanwhile, or None."""

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        """The key pressed within ``timeout_ms``, or None."""

    async def set_variable(self, name: str, value: str) -> AGIReply: ...

    async def get_variable(self, name: str) -> str | None: ...

    async def exec(self, app: str, data: str, timeout: float | None = None) -> AGIReply: ...
