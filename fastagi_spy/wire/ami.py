"""Sans-IO AMI: banner and header blocks in, frozen messages out; actions back.

Theory of operation (main/manager.c, Asterisk 20-22):

* On connect Asterisk writes one banner line, ``Asterisk Call Manager/<AMI
  version>\\r\\n`` (session_do), with no colon and no blank line after it.
* Everything after that is a message: ``Name: value`` lines ended by an empty
  line.  Responses (``Response:``) and events (``Event:``) share the framing and
  may interleave, so :class:`AMIParser` only frames; :class:`ActionCorrelator`
  pairs responses and event-list items with the action that asked for them.
* Headers repeat (``Output``, ``ChanVariable``, ``Variable``), so a message keeps
  its headers as an ordered tuple of pairs with a case-insensitive lookup on top.

:func:`encode_action` is the only way to build an action; it refuses CR, LF and
NUL so a value can never add headers or a whole second action.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeAlias

from fastagi_spy.wire.errors import LocalProtocolError, RemoteProtocolError
from fastagi_spy.wire.lines import LineBuffer

__all__ = [
    "AMIBanner",
    "AMIEvent",
    "AMIMessage",
    "AMIParser",
    "ActionCorrelator",
    "ActionResult",
    "encode_action",
    "md5_key",
]

_NAME = re.compile(r"[A-Za-z0-9_-]+")

# manager.c keeps input lines in inbuf[1025]: get_input answers
# "Failed to parse message: line too long" once 1024 bytes hold no line end.
MAX_ACTION_LINE = 1024
# do_message stores at most AST_MAX_MANHEADERS (128) header lines per action,
# Action and ActionID included, and silently drops the rest.
MAX_ACTION_HEADERS = 128

_FORBIDDEN = ("\r", "\n", "\x00")


@dataclass(frozen=True, slots=True)
class AMIBanner:
    """The greeting line, e.g. ``Asterisk Call Manager/11.0.0``."""

    text: str
    # AMI_VERSION from manager.h: 9.0.0 on Asterisk 20, 10.0.0 on 21, 11.0.0 on 22.
    version: str


class AMIMessage:
    """One response or event: ordered headers, repeats kept, names as sent.

    Immutable: every public attribute is a read-only property.  Built either
    from ``headers`` (pairs) or, by the parser, as a window on the text of the
    read it arrived in; then nothing is split into headers until asked: a busy
    Asterisk sends thousands of events a second and most readers look at two
    or three headers of each (``get`` finds a header in the text).  Equality,
    hashing, copying and pickling depend on the headers only.
    """

    __slots__ = ("_end", "_event", "_headers", "_index", "_lower", "_start", "_text")

    _headers: tuple[tuple[str, str], ...] | None
    # Lower-cased name -> first value, for messages built from pairs (or from
    # text that lower-casing would lengthen), built on first lookup.
    _index: dict[str, str] | None
    # Parsed messages share one read's text, "\n" + complete lines each ended by
    # LF; this message's lines lie between the LF at ``_start`` and the LF at
    # ``_end``.  ``_lower`` is that text lower-cased, offsets unchanged, or None
    # when lower-casing would move them (lookups then go through the index).
    _text: str | None
    _lower: str | None
    _start: int
    _end: int
    # The Event header's value (None: none), once known: every layer reads it.
    _event: str | None

    def __init__(self, headers: tuple[tuple[str, str], ...] = ()) -> None:
        self._headers = tuple(headers)
        self._index = None
        self._lower = None
        self._text = None

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        """Every header as (name, value), in order, repeats kept."""
        headers = getattr(self, "_headers", None)
        if headers is None:
            assert self._text is not None
            lines = self._text[self._start + 1 : self._end].split("\n")
            headers = tuple(_header(line[:-1] if line[-1:] == "\r" else line) for line in lines)
            self._headers = headers
        return headers

    def _lookup(self) -> dict[str, str]:
        index = getattr(self, "_index", None)
        if index is None:
            # Reversed so the first occurrence wins: astman_get_header returns
            # the first match, and so do we.
            index = {name.lower(): value for name, value in reversed(self.headers)}
            self._index = index
        return index

    def get(self, name: str, default: str | None = None) -> str | None:
        """First value of header ``name`` (case-insensitive), else ``default``."""
        lower = self._lower
        if lower is None:
            return self._lookup().get(name.lower(), default)
        needle = _NEEDLES.get(name) or _needle(name)
        if needle is None:
            return self._lookup().get(name.lower(), default)
        # A line starting "<name>:" is a header of that name (a name ends at the
        # first colon): its LF, name and colon lie within this message's window.
        at = lower.find(needle, self._start, self._end)
        if at < 0:
            return default
        text: str = self._text  # type: ignore[assignment]
        start = at + len(needle)
        # The value starts after the colon and one space; the window's last line
        # is followed by an LF, so text[start] and the LF after it always exist.
        if text[start] == " ":
            start += 1
        end = text.find("\n", start)
        # One CR before the LF belongs to the line end (text[start - 1] is the
        # colon or its space, so this never reaches back into the name).
        if text[end - 1] == "\r":
            end -= 1
        return text[start:end]

    def get_all(self, name: str) -> tuple[str, ...]:
        """Every value of header ``name`` (case-insensitive), in order."""
        lower = self._lower
        needle = _NEEDLES.get(name) or _needle(name)
        if lower is None or needle is None:
            wanted = name.lower()
            return tuple(value for key, value in self.headers if key.lower() == wanted)
        text: str = self._text  # type: ignore[assignment]
        values: list[str] = []
        end = self._end
        at = lower.find(needle, self._start, end)
        while at >= 0:
            start = at + len(needle)
            if text[start] == " ":
                start += 1
            value_end = text.find("\n", start)
            at = lower.find(needle, value_end, end)
            if text[value_end - 1] == "\r":
                value_end -= 1
            values.append(text[start:value_end])
        return tuple(values)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    @property
    def event(self) -> str | None:
        """The ``Event`` header, or None for a response."""
        try:
            return self._event
        except AttributeError:  # not set by the parser: look it up once
            name = self.get("Event")
            self._event = name
            return name

    @property
    def response(self) -> str | None:
        """The ``Response`` header: Success, Error or Goodbye."""
        return self.get("Response")

    @property
    def action_id(self) -> str | None:
        """The ``ActionID`` header echoed back from the action, if any."""
        return self.get("ActionID")

    @property
    def is_event(self) -> bool:
        """True when an ``Event`` header is present.

        Checked before ``Response``: OriginateResponse is an event that also
        carries a ``Response:`` header (manager.c originate, "Success"/"Failure").
        """
        return self.event is not None

    @property
    def is_response(self) -> bool:
        """True for a reply to an action: ``Response`` and no ``Event``."""
        return self.event is None and self.get("Response") is not None

    @property
    def output(self) -> tuple[str, ...]:
        """Every ``Output`` line of a Command response.

        Since Asterisk 14 action_command sends one ``Output:`` header per CLI
        line instead of the old ``Response: Follows`` body.
        """
        return self.get_all("Output")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AMIMessage):
            return NotImplemented
        return self.headers == other.headers

    def __hash__(self) -> int:
        return hash(self.headers)

    def __repr__(self) -> str:
        return f"AMIMessage(headers={self.headers!r})"

    def __reduce__(self) -> tuple[type[AMIMessage], tuple[tuple[tuple[str, str], ...]]]:
        return (AMIMessage, (self.headers,))


_new = object.__new__


def _header(line: str) -> tuple[str, str]:
    # manager.c splits "Name: value" at the FIRST ":" (values such as
    # "Data: PJSIP/1001,30" may contain colons) and the value starts after
    # exactly one space, so "AccountCode: " gives "".
    name, _, value = line.partition(":")
    return name, value[1:] if value[:1] == " " else value


# Header name -> the text "\n<lower-case name>:" that starts its line.  Names
# come from code, so the cache stays small; it is capped all the same.
_NEEDLES: dict[str, str] = {}
_MAX_NEEDLES = 4096


def _needle(name: str) -> str | None:
    """The search text for ``name``, or None for a name a line search cannot find."""
    if not name or ":" in name or "\n" in name:
        return None
    needle = "\n" + name.lower() + ":"
    if len(_NEEDLES) < _MAX_NEEDLES:
        _NEEDLES[name] = needle
    return needle


AMIEvent: TypeAlias = AMIBanner | AMIMessage


class AMIParser:
    """Incremental AMI parser for the Asterisk -> client direction.

    Feed it bytes as they arrive; it returns the banner and the messages they
    completed.  After a :class:`RemoteProtocolError` the parser stays broken and
    every later :meth:`feed` raises again: the caller should drop the connection.
    """

    __slots__ = (
        "_banner_seen",
        "_broken",
        "_lines",
        "_max_headers",
        "_pending",
    )

    def __init__(self, max_line: int = 65536, max_headers: int = 4096) -> None:
        self._lines = LineBuffer(max_line)
        self._max_headers = max_headers
        self._banner_seen = False
        # "\n" + the lines (each ended by LF) of the message still waiting for its
        # blank line.
        self._pending = "\n"
        self._broken: RemoteProtocolError | None = None

    def feed(self, data: bytes) -> list[AMIEvent]:
        """Consume ``data``; return the banner and messages it completed."""
        if self._broken is not None:
            raise RemoteProtocolError("parser already failed") from self._broken
        try:
            return self._feed(data)
        except RemoteProtocolError as exc:
            self._broken = exc
            raise

    def _feed(self, data: bytes) -> list[AMIEvent]:
        raw = self._lines.feed_raw(data)
        if raw is None:
            return []
        out: list[AMIEvent] = []
        if not self._banner_seen:
            first, _, raw = raw.partition(b"\n")
            out.append(_parse_banner(first[:-1] if first[-1:] == b"\r" else first))
            self._banner_seen = True
            if not raw:
                return out
        # LF never occurs inside a multi-byte UTF-8 sequence, so decoding all
        # complete lines in one go gives exactly the per-line decoding (bad bytes
        # become U+FFFD within their own line).  The partial tail stays
        # undecoded in the LineBuffer, so no character is split across chunks.
        # One text for the whole read: "\n", the unfinished lines carried over, then
        # the new ones, each ended by LF, CRs kept (a reader drops one CR before the
        # LF ending the line it reads).  Messages are windows on it, not copies.
        text = self._pending + raw.decode("utf-8", "replace")
        lines, headers = _count_lines(raw)
        # Asterisk ends every line with CRLF, so blank lines are "\r" lines: frame on
        # those alone.  A blank line that is a bare LF would be counted a non-blank
        # line without a colon; only then frame again, looking for both kinds.
        # Lookups search the lower-cased text at the same offsets: true for ASCII
        # (the usual) and whenever no character changes length when lower-cased.
        lower: str | None = text.lower()
        if not text.isascii() and len(lower) != len(text):  # type: ignore[arg-type]
            lower = None
        try:
            messages, rest, blank_lines = self._frame(text, lower, bare_blank_lines=False)
            framed = headers == lines - blank_lines
        except RemoteProtocolError:  # maybe two messages taken for one: frame again
            framed = False
        if not framed:
            messages, rest, blank_lines = self._frame(text, lower, bare_blank_lines=True)
            if headers != lines - blank_lines:
                raise _not_a_header(raw)
        if raw[:1] == b":" or b"\n:" in raw:  # a header needs a name
            raise _not_a_header(raw)
        if rest.count("\n") > self._max_headers + 1:
            raise RemoteProtocolError(f"message has more than {self._max_headers} headers")
        self._pending = rest
        out.extend(messages)
        return out

    def _frame(
        self, text: str, lower: str | None, bare_blank_lines: bool
    ) -> tuple[list[AMIMessage], str, int]:
        """The messages ``text`` completes, its unfinished rest, and its blank lines."""
        max_headers = self._max_headers
        find = text.find
        size = len(text)
        new = _new
        cls = AMIMessage
        out: list[AMIMessage] = []
        append = out.append
        blank_lines = 0
        # ``pos`` starts a line; text[pos - 1] is the LF before it.
        pos = 1
        while pos < size:
            # Blank lines between messages (or before the first), beyond the one
            # ending each message.
            first = text[pos]
            if first == "\n":
                pos += 1
                blank_lines += 1
                continue
            if first == "\r" and text[pos + 1] == "\n":  # text ends with LF: pos + 1 exists
                pos += 2
                blank_lines += 1
                continue
            # A message ends at its first blank line: ``end`` is the LF ending its last
            # line, ``after`` the start of the line after the blank one.
            end = find("\n\r\n", pos)
            after = end + 3
            if bare_blank_lines:
                bare = find("\n\n", pos, end + 1 if end >= 0 else size)
                if bare >= 0:
                    end, after = bare, bare + 2
            if end < 0:
                break
            blank_lines += 1
            # A message of max_headers lines is at least that many characters long: only
            # one that long needs its lines counted.
            if end - pos >= max_headers and text.count("\n", pos, end) >= max_headers:
                raise RemoteProtocolError(f"message has more than {max_headers} headers")
            message = new(cls)
            message._text = text
            message._lower = lower
            message._start = pos - 1
            message._end = end
            # Asterisk writes "Event: <name>" first (astman_append_event_header): take the
            # name now, as the first line it is what get("Event") would find.
            if text[pos : pos + 7] == "Event: ":
                name_end = find("\n", pos)
                if text[name_end - 1] == "\r":
                    name_end -= 1
                message._event = text[pos + 7 : name_end]
            if lower is None:
                # Lower-casing moved offsets: this message gets its own text.
                own = text[pos - 1 : end + 1]
                message._text = own
                message._start = 0
                message._end = end - pos + 1
                if own.isascii():
                    message._lower = own.lower()
            append(message)
            pos = after
        return out, text[pos - 1 :] if pos < size else "\n", blank_lines


# bytes.translate table: every byte but LF and ":" goes.
_NOT_COLON_OR_LF = bytes(byte for byte in range(256) if byte not in (10, 58))


def _count_lines(raw: bytes) -> tuple[int, int]:
    """How many lines ``raw`` holds, and how many of them hold a colon.

    In C over a whole read: with all but ":" and LF dropped, a line holding a
    colon starts with one, and the string left is a fraction of the read.
    Every line but the blank ones must hold a colon: manager.c only ever
    writes "Name: value" lines (the value may hold more colons, the name none).
    """
    colons = raw.translate(None, _NOT_COLON_OR_LF)
    return colons.count(b"\n"), colons.count(b"\n:") + (colons[:1] == b":")


def _not_a_header(raw: bytes) -> RemoteProtocolError:
    """The error naming the first line of ``raw`` that is neither blank nor a header."""
    for received in raw.split(b"\n"):
        line = received[:-1] if received[-1:] == b"\r" else received
        if line and (line[:1] == b":" or b":" not in line):
            text = line.decode("utf-8", "replace")
            return RemoteProtocolError(f"not a header line: {text[:80]!r}")
    # Unreachable: callers found such a line by counting.
    return RemoteProtocolError("AMI lines and blank lines do not add up")


def _parse_banner(raw: bytes) -> AMIBanner:
    text = raw.decode("utf-8", "replace")
    # session_do writes "Asterisk Call Manager/%s\r\n" before anything else; a
    # header or blank line here means we are not talking to a fresh AMI session.
    if not text or ": " in text:
        raise RemoteProtocolError(f"expected the AMI banner, got {text[:80]!r}")
    _, slash, version = text.rpartition("/")
    return AMIBanner(text, version if slash else "")


def _check_value(value: str, what: str) -> None:
    for bad in _FORBIDDEN:
        if bad in value:
            # get_input ends a header at LF (CRLF or bare LF): a newline in a
            # value would add headers or a whole second action.  NUL would
            # truncate the C string.
            raise LocalProtocolError(f"{what} contains {bad!r}")


def _check_name(name: str, what: str) -> None:
    if _NAME.fullmatch(name) is None:
        raise LocalProtocolError(f"bad {what} {name[:40]!r}")


def encode_action(
    action: str,
    headers: Iterable[tuple[str, str]] = (),
    action_id: str | None = None,
) -> bytes:
    """Build one action: ``Action``, optional ``ActionID``, headers, blank line.

    Raises :class:`LocalProtocolError` for a bad action or header name, CR, LF or
    NUL in a value, a line over ``MAX_ACTION_LINE`` bytes (CRLF included), more
    than ``MAX_ACTION_HEADERS`` lines, a second ``Action`` header, or an
    ``ActionID`` header together with ``action_id``.
    """
    _check_name(action, "action name")
    lines = [f"Action: {action}"]
    if action_id is not None:
        _check_value(action_id, "ActionID")
        lines.append(f"ActionID: {action_id}")
    for name, value in headers:
        _check_name(name, "header name")
        lowered = name.lower()
        # astman_get_header returns the first match, so a duplicate would be
        # silently ignored by Asterisk: refuse it instead.
        if lowered == "action" or (lowered == "actionid" and action_id is not None):
            raise LocalProtocolError(f"duplicate {name} header")
        _check_value(value, f"value of {name}")
        lines.append(f"{name}: {value}")
    if len(lines) > MAX_ACTION_HEADERS:
        raise LocalProtocolError(
            f"{len(lines)} header lines exceed AST_MAX_MANHEADERS ({MAX_ACTION_HEADERS})"
        )
    encoded: list[bytes] = []
    for line in lines:
        try:
            raw = line.encode("utf-8") + b"\r\n"
        except UnicodeEncodeError as exc:
            raise LocalProtocolError(f"header is not encodable as UTF-8: {exc}") from exc
        if len(raw) > MAX_ACTION_LINE:
            raise LocalProtocolError(
                f"header line of {len(raw)} bytes exceeds {MAX_ACTION_LINE} (manager.c inbuf)"
            )
        encoded.append(raw)
    encoded.append(b"\r\n")
    return b"".join(encoded)


def md5_key(challenge: str, secret: str) -> str:
    """The ``Key`` for an MD5 login: lowercase hex md5(challenge + secret).

    manager.c authenticate runs MD5 over the session challenge then the secret
    and compares the ``%02hhx`` hex digest with ``Key``.
    The digest is protocol-mandated, not our choice of password hashing.
    """
    digest = hashlib.md5((challenge + secret).encode("utf-8"), usedforsecurity=False)
    return digest.hexdigest()


# --- Event-list correlation --------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActionResult:
    """Everything Asterisk sent back for one action."""

    action_id: str
    # The Response message (for a list, the "EventList: start" one; or the
    # response that cut the list short).
    response: AMIMessage
    # The list items, in arrival order, without the completion event.
    events: tuple[AMIMessage, ...]
    # The "...Complete" event carrying "EventList: Complete", if it was a list.
    complete: AMIMessage | None

    @property
    def success(self) -> bool:
        """True for ``Success``, and for ``Goodbye`` (the answer to Logoff)."""
        answer = self.response.response
        return answer is not None and answer.lower() in ("success", "goodbye")


class _Pending:
    __slots__ = ("events", "response")

    def __init__(self) -> None:
        self.response: AMIMessage | None = None
        self.events: list[AMIMessage] = []


class ActionCorrelator:
    """Pair responses and event-list items with the pending action by ActionID.

    Sans-IO: the caller registers each ActionID it sends with :meth:`expect`,
    passes every received :class:`AMIMessage` to :meth:`feed`, and dispatches
    the messages that come back as not consumed.
    """

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending: dict[str, _Pending] = {}

    def expect(self, action_id: str) -> None:
        """Register an action we are about to send."""
        if action_id in self._pending:
            # Two actions sharing an ID would steal each other's replies.
            raise LocalProtocolError(f"ActionID {action_id!r} is already pending")
        self._pending[action_id] = _Pending()

    def forget(self, action_id: str) -> None:
        """Stop waiting for ``action_id`` (e.g. it timed out); late replies pass through."""
        self._pending.pop(action_id, None)

    def pending(self) -> frozenset[str]:
        """The ActionIDs still waiting for a response or list completion."""
        return frozenset(self._pending)

    def clear(self) -> list[str]:
        """Drop every pending action and return their IDs (on disconnect; never replay)."""
        ids = list(self._pending)
        self._pending.clear()
        return ids

    def feed(self, message: AMIMessage) -> tuple[bool, ActionResult | None]:
        """Offer one message; return ``(consumed, finished_result_or_None)``."""
        if not self._pending:
            return False, None  # the usual case: a plain event with nothing waiting
        action_id = message.action_id
        if action_id is None:
            return False, None
        state = self._pending.get(action_id)
        if state is None:
            return False, None
        if message.is_event:
            if state.response is None:
                # Not a list item: no "EventList: start" response yet.  Such an
                # event (e.g. an early OriginateResponse) goes to normal dispatch.
                return False, None
            marker = message.get("EventList")
            if marker is not None and marker.lower() == "complete":
                # astman_send_list_complete_start: the closing "...Complete"
                # event carries "EventList: Complete" and "ListItems: N".
                del self._pending[action_id]
                return True, ActionResult(action_id, state.response, tuple(state.events), message)
            state.events.append(message)
            return True, None
        if not message.is_response:
            return False, None
        answer = (message.response or "").lower()
        marker = message.get("EventList")
        if (
            state.response is None
            and answer == "success"
            and marker is not None
            and marker.lower() == "start"
        ):
            # astman_send_listack: "Response: Success" + "EventList: start";
            # the items follow as events with the same ActionID.
            state.response = message
            return True, None
        # A plain response, or an error (which ends a list immediately).
        del self._pending[action_id]
        return True, ActionResult(action_id, message, tuple(state.events), None)
