"""What the model reports after each step, and the subscriber registry."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

__all__ = ["Change", "ChangeKind", "Payload", "Subscribers"]

ChangeKind: TypeAlias = Literal["agent", "call", "session", "server"]
# A JSON-ready dict: str keys; values are str, int, float, bool, None, lists and dicts.
Payload: TypeAlias = dict[str, object]


@dataclass(frozen=True, slots=True)
class Change:
    """One agent, call, session or server whose public view changed.

    ``value`` is the new JSON-ready view, or None when the thing is gone.
    Subscribers share the dict: treat it as read-only.
    """

    server: str
    kind: ChangeKind
    key: str
    value: Payload | None


Callback: TypeAlias = Callable[[Sequence[Change]], None]


class Subscribers:
    """Callbacks told about every non-empty batch of changes, in subscription order."""

    __slots__ = ("_callbacks",)

    def __init__(self) -> None:
        self._callbacks: list[Callback] = []

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """Register ``callback``; the returned function unregisters it (idempotent)."""
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return unsubscribe

    def publish(self, changes: Sequence[Change]) -> None:
        """Call every subscriber; one that raises does not stop the others.

        The state has already changed, so every subscriber must hear about it;
        the first exception is re-raised afterwards for the caller to log.
        """
        if not changes:
            return
        failure: Exception | None = None
        for callback in tuple(self._callbacks):
            try:
                callback(changes)
            except Exception as exc:
                if failure is None:
                    failure = exc
        if failure is not None:
            raise failure
