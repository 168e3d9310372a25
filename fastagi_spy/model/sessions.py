"""The allocator of 7-digit session ids for agents whose site gives them none."""

from __future__ import annotations

from collections.abc import Container

__all__ = ["SessionAllocator"]


class SessionAllocator:
    """Hands out the lowest free id of an inclusive range, deterministically.

    ``_hint`` never passes a free id, so a scan from it finds the lowest one;
    allocation is rare (a login), so a short scan over used ids is fine.
    """

    __slots__ = ("_high", "_hint", "_low", "_used")

    def __init__(self, low: int, high: int) -> None:
        self._low = low
        self._high = high
        self._hint = low
        self._used: set[int] = set()

    def allocate(self, taken: Container[str]) -> int | None:
        """The lowest id neither allocated nor in ``taken`` (ids claimed by the site)."""
        candidate = self._hint
        skipped: int | None = None
        while candidate <= self._high:
            if candidate in self._used:
                candidate += 1
                continue
            if str(candidate) in taken:
                # Claimed through a conference room or the session variable: not
                # ours to give, but it may come free again, so the hint stays.
                if skipped is None:
                    skipped = candidate
                candidate += 1
                continue
            self._used.add(candidate)
            self._hint = skipped if skipped is not None else candidate + 1
            return candidate
        return None

    def claim(self, session: int) -> bool:
        """Reserve one specific id (kept across a resync); False if out of range or used."""
        if not (self._low <= session <= self._high) or session in self._used:
            return False
        self._used.add(session)
        return True

    def release(self, session: int) -> None:
        """Give an id back."""
        if session in self._used:
            self._used.remove(session)
            self._hint = min(self._hint, session)
