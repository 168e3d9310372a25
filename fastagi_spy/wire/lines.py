"""Bounded incremental line splitter shared by the FastAGI and AMI parsers."""

from __future__ import annotations

from fastagi_spy.wire.errors import RemoteProtocolError

__all__ = ["LineBuffer"]

_CR = 0x0D


class LineBuffer:
    """Split a byte stream into lines on ``b"\\n"``, dropping one trailing ``b"\\r"``.

    Both wire protocols are line based: FastAGI sends bare LF (res_agi.c
    ``ast_agi_send``), AMI sends CRLF but manager.c ``get_input`` also accepts a
    bare LF, so splitting on LF and trimming one CR covers both.  Memory is
    bounded: a complete line, or the partial tail still waiting for its LF, longer
    than ``max_line`` bytes raises :class:`RemoteProtocolError`.
    """

    __slots__ = ("_max_line", "_tail")

    def __init__(self, max_line: int) -> None:
        if max_line < 1:
            raise ValueError("max_line must be positive")
        self._max_line = max_line
        self._tail = b""

    @property
    def pending(self) -> int:
        """Number of buffered bytes that do not yet form a complete line."""
        return len(self._tail)

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return every line it completed, without terminators."""
        if not data:
            return []
        buf = self._tail + data if self._tail else bytes(data)
        limit = self._max_line
        if b"\n" not in buf:
            self._check_tail(buf)
            self._tail = buf
            return []
        lines = buf.split(b"\n")
        tail = lines.pop()
        self._check_tail(tail)
        # Cheap common case: a buffer no longer than the limit cannot hold an
        # over-long line; otherwise let max() do the scan in C.  The limit is
        # checked before CR trimming, so one extra byte is allowed for it.
        if len(buf) > limit and max(map(len, lines)) > limit:
            for line in lines:
                if len(line) - (line[-1:] == b"\r") > limit:
                    raise RemoteProtocolError(
                        f"line of {len(line)} bytes exceeds the {limit}-byte limit"
                    )
        self._tail = tail
        if b"\r" in buf:
            return [line[:-1] if line[-1:] == b"\r" else line for line in lines]
        return lines

    def _check_tail(self, tail: bytes) -> None:
        # The tail may hold a full-size line plus the CR of its CRLF; anything
        # longer can never become a legal line, so fail now instead of buffering.
        size = len(tail)
        limit = self._max_line
        if size > limit and not (size == limit + 1 and tail[-1] == _CR):
            raise RemoteProtocolError(
                f"unterminated line of {size} bytes exceeds the {limit}-byte limit"
            )
