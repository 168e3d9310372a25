"""Which thread the store ran on: shared by the tests that check that, with a store thread
(PostgreSQL), no database call is made on the reactor thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from twisted.internet import reactor, task

REACTOR_THREAD = threading.get_ident()  # pytest-twisted runs the tests on the reactor thread


class Threads:
    """Every database statement (execute, transaction, snapshot) and the thread it ran on."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def on_reactor(self) -> list[str]:
        return [name for name, thread in self.seen if thread == REACTOR_THREAD]

    def off_reactor(self) -> list[str]:
        return [name for name, thread in self.seen if thread != REACTOR_THREAD]


def note_threads(monkeypatch: pytest.MonkeyPatch, connector: type) -> Threads:
    """Record the thread of every execute, transaction and snapshot of ``connector``."""
    noted = Threads()
    for name in ("execute", "transaction", "snapshot"):
        original = getattr(connector, name)

        def wrapper(self: Any, *args: Any, _name: str = name, _original: Any = original,
                    **kw: Any) -> Any:
            noted.seen.append((_name, threading.get_ident()))
            return _original(self, *args, **kw)

        monkeypatch.setattr(connector, name, wrapper)
    return noted


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.005)):
        if condition():
            return
        await task.deferLater(reactor, 0.005, lambda: None)
    raise AssertionError("condition never met")
