"""What the model reports after each step, and the subscriber registry."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple, TypeAlias

__all__ = ["Change", "ChangeKind", "Lazy", "Payload", "Subscribers"]

ChangeKind: TypeAlias = Literal["agent", "call", "session", "server", "queue"]
# A JSON-ready dict: str keys; values are str, int, float, bool, None, lists and dicts.
Payload: TypeAlias = dict[str, object]


class Lazy(tuple):  # type: ignore[type-arg]
    """A payload not built yet: ``(function, *args)``, built on first read of ``value``.

    Only for arguments that never change afterwards (views are immutable tuples),
    so the payload is the one it would have been when the change happened.
    """

    __slots__ = ()


class _ChangeFields(NamedTuple):
    server: str
    kind: ChangeKind
    key: str
    # One-item list: the view, a Lazy still to build, or None; the list lets the
    # built view replace the Lazy without the change itself being mutable.
    cell: list[Payload | Lazy | None]


class Change(_ChangeFields):
    """One agent, call, session, server or queue whose public view changed.

    ``value`` is the new JSON-ready view, or None when the thing is gone.
    Subscribers share the dict: treat it as read-only.  Immutable; the model
    builds ``value`` only when somebody reads it.  A tuple underneath, so that
    the model can make one in C, ``tuple.__new__(Change, (server, kind, key,
    [value]))``: it makes one for every agent, call and session that changed in
    every AMI read.
    """

    __slots__ = ()
    __match_args__ = ("server", "kind", "key", "value")

    def __new__(
        cls, server: str, kind: ChangeKind, key: str, value: Payload | Lazy | None
    ) -> Change:
        return _tuple_new(cls, (server, kind, key, [value]))

    @property
    def value(self) -> Payload | None:
        """The new JSON-ready view, or None when the thing is gone."""
        cell = self.cell
        value = cell[0]
        if type(value) is Lazy:
            build, *args = value
            value = build(*args)
            cell[0] = value
        return value  # type: ignore[return-value]

    def _resolved(self) -> tuple[str, ChangeKind, str, Payload | None]:
        return (self.server, self.kind, self.key, self.value)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._resolved() == other._resolved()

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash(self._resolved())

    def __repr__(self) -> str:
        return (
            f"Change(server={self.server!r}, kind={self.kind!r}, key={self.key!r}, "
            f"value={self.value!r})"
        )

    def __reduce__(self) -> tuple[type[Change], tuple[str, ChangeKind, str, Payload | None]]:
        return (Change, self._resolved())


_tuple_new = tuple.__new__


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

    def __bool__(self) -> bool:
        """True while anybody is subscribed."""
        return bool(self._callbacks)

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
