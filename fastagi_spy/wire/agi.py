"""Sans-IO FastAGI: environment block and reply lines in, frozen events out.

Theory of operation (res_agi.c, Asterisk 20-22):

* On connect Asterisk writes the whole environment block at once
  (launch_netscript, then setup_env): ``agi_key: value\\n`` lines ended by one
  empty line.  :class:`AGIParser` turns it into a single :class:`AGIEnvironment`.
* After that, every command we send gets exactly one reply, in order
  (agi_handle_command): ``200 result=...``, ``510 ...``, ``511 ...``, a one-line
  ``520 ...`` or a multi-line ``520-`` ... ``520 End of proper usage.`` block.
  Each becomes one :class:`AGIReply`.
* ``HANGUP`` is out of band: run_agi writes it between commands once the channel
  hangs up, and once more when run_agi ends.  It becomes a :class:`HangupNotice`
  and must never be matched to a pending command.

:func:`encode_command` is the only way to build a command line; it quotes every
argument the way res_agi.c parse_args unquotes it and refuses anything that
could smuggle a second command.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeAlias
from urllib.parse import parse_qs

from fastagi_spy.wire.errors import LocalProtocolError, RemoteProtocolError
from fastagi_spy.wire.lines import LineBuffer

__all__ = [
    "AGIEnvironment",
    "AGIEvent",
    "AGIParser",
    "AGIReply",
    "HangupNotice",
    "check_say_digits",
    "dtmf_key",
    "encode_command",
    "encode_env",
]

_ENV_KEY = re.compile(r"agi_[a-z0-9_]+")
# One "agi_key: value" line; with re.M, findall over a block gives one pair per good line.
_ENV_LINE = re.compile(r"^(agi_[a-z0-9_]+): ?(.*)$", re.M)
# Bounded so int() never meets a 5000-digit number (ValueError past 4300 digits).
_ARG_KEY = re.compile(r"agi_arg_([0-9]{1,9})")
_COMMAND = re.compile(r"[A-Za-z]+(?: [A-Za-z]+)*")

# The usual shapes: "200 result=1", "200 result= (timeout)",
# "200 result=1 (value) endpos=123".  The data group is greedy so it runs to the
# LAST ")" that still lets the line end: GET VARIABLE prints the raw value
# (handle_getvariable "200 result=1 (%s)"), which may itself contain ")".
# The result token is \S* rather than -?\d*: GET DATA prints the collected
# digits verbatim ("200 result=%s"), and those may include "*" or A-D.
_REPLY_200 = re.compile(r"200 result=(\S*)(?: \((.*)\))?(?: endpos=(-?[0-9]{1,19}))?")
# Other 200 shapes carry extra text after the fields, e.g. handle_gosub's
# "200 result=0 Gosub complete" or SPEECH RECOGNIZE's
# "200 result=1 (speech) endpos=%ld results=%d ...".  They are still valid
# replies; take the result, a ")"-free data group and any endpos we can see.
_REPLY_200_LOOSE = re.compile(r"200 result=(\S*)(?: \(([^)]*)\))?(?: .*)?")
_ENDPOS = re.compile(r" endpos=(-?[0-9]{1,19})(?: |$)")

# Single-line failures.  510/511: agi_handle_command prints "%d %s" with a fixed
# text; 503: "503 result=-2 Memory allocation failure" when a command cannot be
# allocated; 520: a handler returned RESULT_SHOWUSAGE and has no usage text.
_SIMPLE_CODES = frozenset({"503", "510", "511", "520"})

_USAGE_START = "520-"
_USAGE_END = "520 "
# Before ASTERISK-25662 (fixed in 13.17/15.0) c->usage was printed without a
# trailing newline, so the terminator could be glued onto the last usage line.
_USAGE_END_GLUED = "520 End of proper usage."
# No usage text in res_agi.c comes near this; it only bounds memory.
_MAX_USAGE_LINES = 1024

_HANGUP = "HANGUP"
# handle_gosub sends "100 result=0 Trying..." before running the subroutine;
# the real reply follows, so the informational line is dropped.
_TRYING = "100"

# AGI_BUF_LEN is 8192 and run_agi reads with fgets: a longer line is handled as
# several separate commands.  Keep a safety margin below it.
MAX_COMMAND_BYTES = 8000

_FORBIDDEN = ("\r", "\n", "\x00")

# The keys of a phone keypad, as Asterisk reports DTMF.
DTMF_KEYS = frozenset("0123456789*#ABCD")
# SAY DIGITS reads its number with sscanf("%30d") (handle_saydigits): digits only, a few.
_SAY_DIGITS = re.compile(r"[0-9]{1,20}")


@dataclass(frozen=True, slots=True)
class AGIEnvironment:
    """The ``agi_*`` variables Asterisk sends before the first command."""

    variables: tuple[tuple[str, str], ...]
    # Key -> first value sent, built once: every call reads a few keys several times.
    _first: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        first: dict[str, str] = {}
        for name, value in self.variables:
            first.setdefault(name, value)
        object.__setattr__(self, "_first", first)

    def get(self, key: str, default: str = "") -> str:
        """Return the first value sent for ``key`` (e.g. ``"agi_channel"``)."""
        return self._first.get(key, default)

    @property
    def network_script(self) -> str:
        """Raw ``agi_network_script``: the URL after the host, query included."""
        return self.get("agi_network_script")

    @property
    def script(self) -> str:
        """The path part of the network script, before any ``?``."""
        return self.network_script.partition("?")[0]

    @property
    def query(self) -> dict[str, str]:
        """The query string of the network script, first value per key.

        Asterisk passes the part after the host verbatim and never URL-decodes it
        (launch_netscript), so decoding happens here.  Every value is still
        caller-influenced dialplan data: validate before use.
        """
        raw = self.network_script.partition("?")[2]
        parsed = parse_qs(raw, keep_blank_values=True)
        return {key: values[0] for key, values in parsed.items()}

    @property
    def args(self) -> tuple[str, ...]:
        """``agi_arg_1`` .. ``agi_arg_N`` ordered by N as a number, not as text."""
        numbered: list[tuple[int, str]] = []
        for name, value in self.variables:
            match = _ARG_KEY.fullmatch(name)
            if match is not None:
                numbered.append((int(match.group(1)), value))
        numbered.sort(key=lambda item: item[0])
        return tuple(value for _, value in numbered)

    @property
    def channel(self) -> str:
        """``agi_channel``: the channel name, e.g. ``PJSIP/1001-0000002a``."""
        return self.get("agi_channel")

    @property
    def uniqueid(self) -> str:
        """``agi_uniqueid`` of the channel running the AGI."""
        return self.get("agi_uniqueid")

    @property
    def callerid(self) -> str:
        """``agi_callerid``: the caller number, or ``unknown``."""
        return self.get("agi_callerid")

    @property
    def calleridname(self) -> str:
        """``agi_calleridname``: the caller name, or ``unknown``."""
        return self.get("agi_calleridname")

    @property
    def extension(self) -> str:
        """``agi_extension`` the dialplan was at when AGI() ran."""
        return self.get("agi_extension")

    @property
    def context(self) -> str:
        """``agi_context`` the dialplan was in when AGI() ran."""
        return self.get("agi_context")


@dataclass(frozen=True, slots=True)
class AGIReply:
    """One reply to one command, in the order the commands were sent."""

    code: int
    # Text after "result=" ("" for "200 result= (timeout)"); None unless code is 200.
    result: str | None
    # Text inside the parentheses, up to the last ")"; None when absent.
    data: str | None
    endpos: int | None
    # The whole first line as received.
    text: str
    # Body of a multi-line 520: the usage text between the 520- and 520 lines.
    usage: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True for a ``200`` reply (the command ran; check ``result`` too)."""
        return self.code == 200

    @property
    def result_int(self) -> int | None:
        """``result`` as an int, or None when absent, empty or not a number."""
        if self.result is None:
            return None
        try:
            return int(self.result)
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class HangupNotice:
    """The out-of-band ``HANGUP`` line: the channel hung up; not a reply."""


AGIEvent: TypeAlias = AGIEnvironment | AGIReply | HangupNotice


class AGIParser:
    """Incremental FastAGI parser for the Asterisk -> server direction.

    Feed it bytes as they arrive; it returns the events they completed.  After a
    :class:`RemoteProtocolError` the parser stays broken and every later
    :meth:`feed` raises again: the caller should abort the connection.
    """

    __slots__ = (
        "_broken",
        "_env",
        "_env_done",
        "_lines",
        "_max_env_lines",
        "_usage",
        "_usage_head",
    )

    def __init__(self, max_line: int = 16384, max_env_lines: int = 512) -> None:
        self._lines = LineBuffer(max_line)
        self._max_env_lines = max_env_lines
        self._env: list[tuple[str, str]] = []
        self._env_done = False
        # Set while inside a multi-line 520 block: its first line and the body so far.
        self._usage_head: str | None = None
        self._usage: list[str] = []
        self._broken: RemoteProtocolError | None = None

    def feed(self, data: bytes) -> list[AGIEvent]:
        """Consume ``data``; return the environment, replies and hangups it completed."""
        if self._broken is not None:
            raise RemoteProtocolError("parser already failed") from self._broken
        events: list[AGIEvent] = []
        try:
            block = self._lines.feed_block(data)
            if block is None:
                return events
            # LF never occurs inside a multi-byte UTF-8 sequence, so decoding the complete
            # lines together equals decoding each; the undecoded partial tail stays buffered.
            lines = block.decode("utf-8", "replace").split("\n")
            if not self._env_done:
                lines = self._env_lines(lines, events)
            for line in lines:
                self._reply_line(line, events)
        except RemoteProtocolError as exc:
            self._broken = exc
            raise
        return events

    def _env_lines(self, lines: list[str], events: list[AGIEvent]) -> list[str]:
        """Take environment lines up to the blank line that ends them; return the rest."""
        try:
            end = lines.index("")
        except ValueError:
            end = len(lines)
        body = lines[:end]
        if len(self._env) + len(body) > self._max_env_lines:
            raise RemoteProtocolError(f"environment has more than {self._max_env_lines} lines")
        # setup_env prints "%s: %s" with the raw value: the key ends at the first ":" (values
        # such as agi_request contain colons) and exactly one space is dropped, so an empty
        # value ("agi_accountcode: ") stays "".  One regex pass over the whole block.
        pairs = _ENV_LINE.findall("\n".join(body))
        if len(pairs) != len(body):
            bad = next(line for line in body if _ENV_LINE.fullmatch(line) is None)
            raise RemoteProtocolError(f"bad environment line {bad[:80]!r}")
        self._env.extend(pairs)
        if end == len(lines):
            return []
        # setup_env ends the block with a lone "\n".
        self._env_done = True
        events.append(AGIEnvironment(tuple(self._env)))
        self._env = []
        return lines[end + 1 :]

    def _reply_line(self, line: str, events: list[AGIEvent]) -> None:
        if line == _HANGUP:
            # run_agi sends HANGUP between commands (and again on exit), even
            # while a usage block is being collected; it is never a reply.
            events.append(HangupNotice())
            return
        if self._usage_head is not None:
            self._usage_line(line, events)
            return
        code = line[:3]
        sep = line[3:4]
        if code == "200" and sep == " ":
            events.append(_parse_200(line))
        elif code in _SIMPLE_CODES and sep in (" ", ""):
            events.append(AGIReply(int(code), None, None, None, line))
        elif line.startswith(_USAGE_START):
            self._usage_head = line
        elif code == _TRYING and sep in (" ", ""):
            return
        else:
            raise RemoteProtocolError(f"unexpected reply line {line[:80]!r}")

    def _usage_line(self, line: str, events: list[AGIEvent]) -> None:
        head = self._usage_head
        assert head is not None
        if line.startswith(_USAGE_END) or line.endswith(_USAGE_END_GLUED):
            if not line.startswith(_USAGE_END):
                # Old glued form: the text before the terminator is usage.
                self._usage.append(line[: -len(_USAGE_END_GLUED)])
            events.append(AGIReply(520, None, None, None, head, tuple(self._usage)))
            self._usage_head = None
            self._usage = []
            return
        if len(self._usage) >= _MAX_USAGE_LINES:
            raise RemoteProtocolError(f"usage text longer than {_MAX_USAGE_LINES} lines")
        self._usage.append(line)


def _parse_200(line: str) -> AGIReply:
    match = _REPLY_200.fullmatch(line)
    if match is not None:
        result, data, endpos = match.groups()
        return AGIReply(200, result, data, None if endpos is None else int(endpos), line)
    loose = _REPLY_200_LOOSE.fullmatch(line)
    if loose is None:
        raise RemoteProtocolError(f"malformed 200 reply {line[:80]!r}")
    result, data = loose.groups()
    found = _ENDPOS.search(line)
    return AGIReply(200, result, data, None if found is None else int(found.group(1)), line)


def _check_text(value: str, what: str) -> None:
    for bad in _FORBIDDEN:
        if bad in value:
            # run_agi reads one command per fgets() line: a LF would end the
            # command and start an attacker-chosen one; a CR would become part
            # of the last word; a NUL would truncate it in C.
            raise LocalProtocolError(f"{what} contains {bad!r}")


def _quote(arg: str) -> str:
    # res_agi.c parse_args: a '"' toggles quoting (spaces and tabs inside are
    # kept, "" is an empty word) and a backslash escapes the next character.
    # Quoting every argument keeps words and numbers intact ("5" parses as 5).
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode_command(command: str, *args: str) -> bytes:
    """Build one AGI command line, e.g. ``encode_command("GET DATA", "beep", "3000")``.

    ``command`` is the bare verb, one or more words of letters.  Every argument
    is double-quoted and escaped.  Raises :class:`LocalProtocolError` for CR, LF
    or NUL anywhere, a malformed verb, or a line longer than
    ``MAX_COMMAND_BYTES`` (newline included).
    """
    _check_text(command, "command")
    if _COMMAND.fullmatch(command) is None:
        raise LocalProtocolError(f"bad AGI command verb {command[:40]!r}")
    parts = [command]
    for index, arg in enumerate(args, 1):
        _check_text(arg, f"argument {index}")
        parts.append(_quote(arg))
    # LF only: run_agi strips a trailing "\n" but not "\r".
    line = " ".join(parts) + "\n"
    try:
        encoded = line.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LocalProtocolError(f"command is not encodable as UTF-8: {exc}") from exc
    if len(encoded) > MAX_COMMAND_BYTES:
        raise LocalProtocolError(
            f"command of {len(encoded)} bytes exceeds {MAX_COMMAND_BYTES} "
            "(Asterisk would split it into several commands)"
        )
    return encoded


def encode_env(pairs: Iterable[tuple[str, str]]) -> bytes:
    """Build an environment block as Asterisk sends it (for tests and fakes)."""
    out: list[str] = []
    for key, value in pairs:
        _check_text(key, "environment key")
        _check_text(value, f"value of {key}")
        if _ENV_KEY.fullmatch(key) is None:
            raise LocalProtocolError(f"bad environment key {key[:40]!r}")
        # setup_env always prints "key: value", so an empty value leaves a trailing space.
        out.append(f"{key}: {value}\n")
    out.append("\n")
    try:
        return "".join(out).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LocalProtocolError(f"environment is not encodable as UTF-8: {exc}") from exc


def check_say_digits(digits: str, escape: str) -> None:
    """Refuse SAY DIGITS arguments Asterisk would not say as one digit string.

    ``digits`` must be ASCII digits (1 to 20), ``escape`` keypad keys only: anything else
    would be read as usage (520) or spoken as a different number.
    """
    if _SAY_DIGITS.fullmatch(digits) is None:
        raise LocalProtocolError(f"SAY DIGITS needs 1-20 digits, got {digits[:40]!r}")
    if not set(escape) <= DTMF_KEYS:
        raise LocalProtocolError(f"SAY DIGITS escape keys must be keypad keys, got {escape[:40]!r}")


def dtmf_key(reply: AGIReply) -> str | None:
    """The key a ``SAY DIGITS`` or ``WAIT FOR DIGIT`` reply reports, None when none came.

    Both print the key as its character code (``200 result=35`` is "#") and 0 for no key
    (handle_saydigits, handle_waitfordigit).  Check ``-1`` (hangup or error) first: it and
    anything that is not a keypad key raise :class:`RemoteProtocolError`.
    """
    code = reply.result_int if reply.ok else None
    if code == 0:
        return None
    key = chr(code) if code is not None and 0 < code < 128 else ""
    if key not in DTMF_KEYS:
        raise RemoteProtocolError(f"not a DTMF key reply {reply.text[:80]!r}")
    return key
