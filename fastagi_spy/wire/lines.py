"""Bounded incremental line splitter shared by the FastAGI and AMI parsers."""

from __future__ import annotations

from fastagi_spy.wire.errors import RemoteProtocolError

__all__ = ["LineBuffer"]

_CR = 0x0D


class LineBuffer:
    """Split a byte stream into lines on ``b"\\n"``, dropping one trailing ``b"\\r"``.

    Both wire protocols are line based: FastAGI sends bare LF (res_agi.c
    ``ast_agi_send``); AMI sends CRLF, and manager.c ``get_input`` also accepts
    a bare LF, so splitting on LF and trimming one CR covers both.  Memory is
    bounded: a complete line, or the partial tail still waiting for its LF,
    longer than ``max_line`` bytes (terminator excluded) raises
    :class:`RemoteProtocolError`.

    All the work happens in C (``bytes.replace``/``split``/``rfind``); no Python
    code runs per byte or per line.
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
        block = self.feed_block(data)
        if block is None:
            return []
        return block.split(b"\n")

    def feed_block(self, data: bytes) -> bytes | None:
        """Add ``data``; return the lines it completed joined by ``b"\\n"``.

        Equivalent to ``b"\\n".join(self.feed(data))`` but without building the
        list, for callers that decode or split the lines in bulk.  Returns None
        (not ``b""``, which is one empty line) when no line was completed.
        """
        raw = self.feed_raw(data)
        if raw is None:
            return None
        block = raw[:-1]
        # Replacing CRLF by LF drops exactly one CR before each LF ("a\r\r\n"
        # keeps one CR), i.e. one trailing CR per line.
        if b"\r" in block:
            block = block.replace(b"\r\n", b"\n")
            if block[-1:] == b"\r":
                block = block[:-1]
        return block

    def feed_raw(self, data: bytes) -> bytes | None:
        """Add ``data``; return the lines it completed as received, each ending in LF.

        Carriage returns are left in place, for callers that look at the lines in
        bulk and drop a line's CR only where they read it.  Returns None when no
        line was completed.
        """
        if not data:
            return None
        buf = self._tail + data if self._tail else bytes(data)
        end = buf.rfind(b"\n")
        if end < 0:
            self._check_tail(buf)
            self._tail = buf
            return None
        tail = buf[end + 1 :]
        self._check_tail(tail)
        block = buf[: end + 1]
        # A legal line takes at most max_line bytes, one CR and its LF.
        if len(block) > self._max_line + 1:
            self._check_lines(block)
        self._tail = tail
        return block

    def _check_lines(self, block: bytes) -> None:
        # From a line start, if no LF lies within the next max_line + 2 bytes
        # (a full line, its CR and its LF) and the block goes on, that line is too
        # long; so is one whose LF comes last in that window after no CR.  Jumping to
        # the LAST LF in the window keeps this at about len(block) / max_line steps.
        limit = self._max_line
        size = len(block)
        pos = 0
        while size - pos > limit + 1:
            newline = block.rfind(b"\n", pos, pos + limit + 2)
            if newline < 0 or (
                newline == pos + limit + 1
                and block[newline - 1] != _CR
                and block.find(b"\n", pos, newline) < 0
            ):
                raise RemoteProtocolError(f"line exceeds the {limit}-byte limit")
            pos = newline + 1

    def _check_tail(self, tail: bytes) -> None:
        # The tail may hold a full-size line plus the CR of its CRLF; anything
        # longer can never become a legal line, so fail now instead of buffering.
        size = len(tail)
        limit = self._max_line
        if size > limit and not (size == limit + 1 and tail[-1] == _CR):
            raise RemoteProtocolError(
                f"unterminated line of {size} bytes exceeds the {limit}-byte limit"
            )
