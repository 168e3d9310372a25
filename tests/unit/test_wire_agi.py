"""Tests for the sans-IO FastAGI layer (fastagi_spy.wire.agi)."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastagi_spy.wire.agi import (
    AGIEnvironment,
    AGIEvent,
    AGIParser,
    AGIReply,
    HangupNotice,
    encode_command,
    encode_env,
)
from fastagi_spy.wire.errors import LocalProtocolError, RemoteProtocolError
from fastagi_spy.wire.lines import LineBuffer

# An environment block the way Asterisk 22.10.1 writes it for
# AGI(agi://127.0.0.1:4573/spy/listen?x=1,1001,a:b:c,...) (res_agi.c
# launch_netscript + setup_env): LF only, "key: value", agi_network first.
ARGS = ("1001", "a:b:c", "q", "", "5", "6", "7", "8", "9", "ten", "eleven", "twelve")
ENV_PAIRS: tuple[tuple[str, str], ...] = (
    ("agi_network", "yes"),
    ("agi_network_script", "spy/listen?x=1"),
    ("agi_request", "agi://127.0.0.1:4573/spy/listen?x=1"),
    ("agi_channel", "PJSIP/2001-00000007"),
    ("agi_language", "en"),
    ("agi_type", "PJSIP"),
    ("agi_uniqueid", "1723456789.15"),
    ("agi_version", "22.10.1"),
    ("agi_callerid", "2001"),
    ("agi_calleridname", "Desk: Alice (sup)"),
    ("agi_callingpres", "0"),
    ("agi_callingani2", "0"),
    ("agi_callington", "0"),
    ("agi_callingtns", "0"),
    ("agi_dnid", "*2221001"),
    ("agi_rdnis", "unknown"),
    ("agi_context", "fastagi-spy"),
    ("agi_extension", "*2221001"),
    ("agi_priority", "2"),
    ("agi_enhanced", "0.0"),
    ("agi_accountcode", ""),
    ("agi_threadid", "140234567890176"),
    *((f"agi_arg_{n}", value) for n, value in enumerate(ARGS, 1)),
)
ENV_BYTES = (
    b"agi_network: yes\n"
    b"agi_network_script: spy/listen?x=1\n"
    b"agi_request: agi://127.0.0.1:4573/spy/listen?x=1\n"
    b"agi_channel: PJSIP/2001-00000007\n"
    b"agi_language: en\n"
    b"agi_type: PJSIP\n"
    b"agi_uniqueid: 1723456789.15\n"
    b"agi_version: 22.10.1\n"
    b"agi_callerid: 2001\n"
    b"agi_calleridname: Desk: Alice (sup)\n"
    b"agi_callingpres: 0\n"
    b"agi_callingani2: 0\n"
    b"agi_callington: 0\n"
    b"agi_callingtns: 0\n"
    b"agi_dnid: *2221001\n"
    b"agi_rdnis: unknown\n"
    b"agi_context: fastagi-spy\n"
    b"agi_extension: *2221001\n"
    b"agi_priority: 2\n"
    b"agi_enhanced: 0.0\n"
    b"agi_accountcode: \n"
    b"agi_threadid: 140234567890176\n"
    b"agi_arg_1: 1001\n"
    b"agi_arg_2: a:b:c\n"
    b"agi_arg_3: q\n"
    b"agi_arg_4: \n"
    b"agi_arg_5: 5\n"
    b"agi_arg_6: 6\n"
    b"agi_arg_7: 7\n"
    b"agi_arg_8: 8\n"
    b"agi_arg_9: 9\n"
    b"agi_arg_10: ten\n"
    b"agi_arg_11: eleven\n"
    b"agi_arg_12: twelve\n"
    b"\n"
)
ENV = AGIEnvironment(ENV_PAIRS)

USAGE_BLOCK = (
    b"520-Invalid command syntax.  Proper usage follows:\n"
    b" Usage: WAIT FOR DIGIT <timeout>\n"
    b"  Waits up to 'timeout' milliseconds for channel to receive a DTMF digit.\n"
    b"520 End of proper usage.\n"
)
USAGE_REPLY = AGIReply(
    520,
    None,
    None,
    None,
    "520-Invalid command syntax.  Proper usage follows:",
    (
        " Usage: WAIT FOR DIGIT <timeout>",
        "  Waits up to 'timeout' milliseconds for channel to receive a DTMF digit.",
    ),
)


def feed_all(chunks: list[bytes], parser: AGIParser | None = None) -> list[AGIEvent]:
    parser = parser or AGIParser()
    events: list[AGIEvent] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return events


def byte_by_byte(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def ready_parser() -> AGIParser:
    parser = AGIParser()
    assert parser.feed(ENV_BYTES) == [ENV]
    return parser


# --- environment -----------------------------------------------------------


def test_env_block_matches_encode_env() -> None:
    """The hand-written Asterisk block and encode_env() agree byte for byte."""
    assert encode_env(ENV_PAIRS) == ENV_BYTES


def test_env_fed_whole_gives_one_environment() -> None:
    """A whole env block yields exactly one AGIEnvironment with every pair in order."""
    assert AGIParser().feed(ENV_BYTES) == [ENV]


def test_env_fed_byte_by_byte() -> None:
    """Feeding the env block one byte at a time gives the same single event."""
    assert feed_all(byte_by_byte(ENV_BYTES)) == [ENV]


def test_env_with_trailing_reply_in_same_chunk() -> None:
    """Reply bytes glued to the env block come out after the environment."""
    events = AGIParser().feed(ENV_BYTES + b"200 result=0\n200 res")
    assert events == [ENV, AGIReply(200, "0", None, None, "200 result=0")]


def test_env_nothing_before_blank_line() -> None:
    """No event is produced until the terminating blank line arrives."""
    parser = AGIParser()
    assert parser.feed(ENV_BYTES[:-1]) == []
    assert parser.feed(b"\n") == [ENV]


def test_env_accessors() -> None:
    """Typed accessors read the usual agi_* keys."""
    assert ENV.channel == "PJSIP/2001-00000007"
    assert ENV.uniqueid == "1723456789.15"
    assert ENV.callerid == "2001"
    assert ENV.extension == "*2221001"
    assert ENV.context == "fastagi-spy"
    assert ENV.get("agi_type") == "PJSIP"
    assert ENV.get("agi_missing") == ""
    assert ENV.get("agi_missing", "dflt") == "dflt"


def test_env_value_with_colons_split_at_first_colon() -> None:
    """Values keep their own colons (the FreePBX first-colon bug must not recur)."""
    assert ENV.calleridname == "Desk: Alice (sup)"
    assert ENV.get("agi_request") == "agi://127.0.0.1:4573/spy/listen?x=1"
    assert ENV.args[1] == "a:b:c"


def test_env_empty_value_from_trailing_space() -> None:
    """ "agi_accountcode: " (trailing space) parses as an empty value."""
    assert ENV.get("agi_accountcode", "unset") == ""


def test_env_only_one_space_dropped_and_no_space_accepted() -> None:
    """Exactly one space after the colon is dropped; none at all is tolerated."""
    env = AGIParser().feed(b"agi_a:  two\nagi_b:none\nagi_c:\n\n")[0]
    assert isinstance(env, AGIEnvironment)
    assert env.variables == (("agi_a", " two"), ("agi_b", "none"), ("agi_c", ""))


def test_env_args_ordered_numerically() -> None:
    """agi_arg_1..agi_arg_12 come back in numeric order, not text order."""
    assert ENV.args == ARGS
    shuffled = AGIEnvironment((("agi_arg_10", "j"), ("agi_arg_2", "b"), ("agi_arg_1", "a")))
    assert shuffled.args == ("a", "b", "j")


def test_env_script_and_query() -> None:
    """network_script is raw; script is the path; query is URL-decoded, first value each."""
    assert ENV.network_script == "spy/listen?x=1"
    assert ENV.script == "spy/listen"
    assert ENV.query == {"x": "1"}
    env = AGIEnvironment((("agi_network_script", "spy?ext=1001&pin=&n=a%20b&ext=9"),))
    assert env.query == {"ext": "1001", "pin": "", "n": "a b"}


def test_env_without_network_script() -> None:
    """agi://host with no path omits agi_network_script: everything reads as empty."""
    env = AGIEnvironment((("agi_network", "yes"),))
    assert (env.network_script, env.script, env.query, env.args) == ("", "", {}, ())


def test_env_crlf_tolerated() -> None:
    """A CR before the LF is trimmed (defensive; Asterisk sends LF only)."""
    env = AGIParser().feed(b"agi_network: yes\r\n\r\n")[0]
    assert env == AGIEnvironment((("agi_network", "yes"),))


@pytest.mark.parametrize(
    "line",
    [b"agi_network yes\n", b"Agi_network: yes\n", b"network: yes\n", b": yes\n", b" agi_x: 1\n"],
)
def test_env_bad_line_is_remote_error(line: bytes) -> None:
    """A line with no colon or a key outside ^agi_[a-z0-9_]+$ is rejected."""
    with pytest.raises(RemoteProtocolError):
        AGIParser().feed(b"agi_network: yes\n" + line + b"\n")


def test_env_too_many_lines() -> None:
    """An environment longer than max_env_lines is rejected, bounding memory."""
    parser = AGIParser(max_env_lines=3)
    with pytest.raises(RemoteProtocolError):
        parser.feed(b"agi_a: 1\nagi_b: 2\nagi_c: 3\nagi_d: 4\n")


def test_hangup_inside_env_is_an_error() -> None:
    """HANGUP only exists after the env block; inside it, it is garbage."""
    with pytest.raises(RemoteProtocolError):
        AGIParser().feed(b"agi_network: yes\nHANGUP\n")


# --- replies ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        ("200 result=0", AGIReply(200, "0", None, None, "200 result=0")),
        ("200 result=-1", AGIReply(200, "-1", None, None, "200 result=-1")),
        ("200 result=", AGIReply(200, "", None, None, "200 result=")),
        ("200 result= (timeout)", AGIReply(200, "", "timeout", None, "200 result= (timeout)")),
        (
            "200 result=123 (timeout)",
            AGIReply(200, "123", "timeout", None, "200 result=123 (timeout)"),
        ),
        (
            "200 result=12*3 (timeout)",
            AGIReply(200, "12*3", "timeout", None, "200 result=12*3 (timeout)"),
        ),
        (
            "200 result=1 (PJSIP/1001-0000002a)",
            AGIReply(200, "1", "PJSIP/1001-0000002a", None, "200 result=1 (PJSIP/1001-0000002a)"),
        ),
        (
            "200 result=1 (f(x)) and (y))",
            AGIReply(200, "1", "f(x)) and (y)", None, "200 result=1 (f(x)) and (y))"),
        ),
        ("200 result=1 ()", AGIReply(200, "1", "", None, "200 result=1 ()")),
        (
            "200 result=0 endpos=24807",
            AGIReply(200, "0", None, 24807, "200 result=0 endpos=24807"),
        ),
        (
            "200 result=-1 endpos=0",
            AGIReply(200, "-1", None, 0, "200 result=-1 endpos=0"),
        ),
        (
            "200 result=49 (dtmf) endpos=8640",
            AGIReply(200, "49", "dtmf", 8640, "200 result=49 (dtmf) endpos=8640"),
        ),
        (
            "200 result=0 Gosub complete",
            AGIReply(200, "0", None, None, "200 result=0 Gosub complete"),
        ),
        (
            "200 result=1 (speech) endpos=1234 results=1 score0=900 text0=yes grammar0=g",
            AGIReply(
                200,
                "1",
                "speech",
                1234,
                "200 result=1 (speech) endpos=1234 results=1 score0=900 text0=yes grammar0=g",
            ),
        ),
        (
            "200 result=1 (digit) digit=5 endpos=960",
            AGIReply(200, "1", "digit", 960, "200 result=1 (digit) digit=5 endpos=960"),
        ),
        (
            "510 Invalid or unknown command",
            AGIReply(510, None, None, None, "510 Invalid or unknown command"),
        ),
        (
            "511 Command Not Permitted on a dead channel or intercept routine",
            AGIReply(
                511,
                None,
                None,
                None,
                "511 Command Not Permitted on a dead channel or intercept routine",
            ),
        ),
        (
            "520 Invalid command syntax.  Proper usage not available.",
            AGIReply(
                520, None, None, None, "520 Invalid command syntax.  Proper usage not available."
            ),
        ),
        (
            "503 result=-2 Memory allocation failure",
            AGIReply(503, None, None, None, "503 result=-2 Memory allocation failure"),
        ),
    ],
)
def test_reply_forms(line: str, reply: AGIReply) -> None:
    """Every single-line reply form Asterisk 20-22 sends parses to the expected AGIReply."""
    assert ready_parser().feed(line.encode() + b"\n") == [reply]


def test_reply_properties() -> None:
    """ok is code == 200; result_int parses result or gives None."""
    assert AGIReply(200, "-1", None, None, "").ok
    assert AGIReply(200, "-1", None, None, "").result_int == -1
    assert AGIReply(200, "", "timeout", None, "").result_int is None
    assert AGIReply(200, "12*3", None, None, "").result_int is None
    assert AGIReply(510, None, None, None, "").result_int is None
    assert not AGIReply(511, None, None, None, "").ok


def test_multiline_520_is_one_reply() -> None:
    """A 520- ... 520 usage block becomes ONE reply carrying the usage lines."""
    assert ready_parser().feed(USAGE_BLOCK) == [USAGE_REPLY]


def test_multiline_520_byte_by_byte_then_next_reply() -> None:
    """The usage block split into single bytes still yields one reply, then the next."""
    events = feed_all(byte_by_byte(USAGE_BLOCK + b"200 result=1\n"), ready_parser())
    assert events == [USAGE_REPLY, AGIReply(200, "1", None, None, "200 result=1")]


def test_multiline_520_with_glued_terminator() -> None:
    """Pre-ASTERISK-25662 usage text ran into "520 End of proper usage." on one line."""
    data = (
        b"520-Invalid command syntax.  Proper usage follows:\n"
        b"Usage: GET DATA <file>520 End of proper usage.\n"
    )
    [reply] = ready_parser().feed(data)
    assert isinstance(reply, AGIReply)
    assert (reply.code, reply.usage) == (520, ("Usage: GET DATA <file>",))


def test_trying_line_is_skipped() -> None:
    """ "100 result=0 Trying..." (GOSUB) is informational: only the real reply counts."""
    events = ready_parser().feed(b"100 result=0 Trying...\n200 result=0 Gosub complete\n")
    assert events == [AGIReply(200, "0", None, None, "200 result=0 Gosub complete")]


def test_hangup_before_between_and_after_replies() -> None:
    """HANGUP is an out-of-band notice wherever it appears, never a reply."""
    data = (
        b"HANGUP\n"
        b"200 result=-1 endpos=1200\n"
        b"HANGUP\n"
        b"511 Command Not Permitted on a dead channel or intercept routine\n"
        b"HANGUP\n"
    )
    events = ready_parser().feed(data)
    assert events == [
        HangupNotice(),
        AGIReply(200, "-1", None, 1200, "200 result=-1 endpos=1200"),
        HangupNotice(),
        AGIReply(
            511,
            None,
            None,
            None,
            "511 Command Not Permitted on a dead channel or intercept routine",
        ),
        HangupNotice(),
    ]


def test_hangup_right_after_env_in_same_chunk() -> None:
    """A HANGUP glued to the env block (caller gone before any command) is reported."""
    assert AGIParser().feed(ENV_BYTES + b"HANGUP\n") == [ENV, HangupNotice()]


def test_hangup_inside_multiline_520() -> None:
    """A HANGUP inside a usage block is a notice; collection of the block continues."""
    lines = USAGE_BLOCK.split(b"\n")
    data = b"\n".join([lines[0], lines[1], b"HANGUP", *lines[2:]])
    assert ready_parser().feed(data) == [HangupNotice(), USAGE_REPLY]


def test_reply_utf8_split_across_chunks() -> None:
    """Lines are decoded whole, so a UTF-8 character split by TCP survives."""
    data = "200 result=1 (Zoë)\n".encode()
    cut = data.index(b"\xc3") + 1
    parser = ready_parser()
    assert parser.feed(data[:cut]) == []
    assert parser.feed(data[cut:]) == [AGIReply(200, "1", "Zoë", None, "200 result=1 (Zoë)")]


def test_reply_invalid_utf8_is_replaced() -> None:
    """Undecodable bytes become U+FFFD instead of raising."""
    [reply] = ready_parser().feed(b"200 result=1 (\xff\xfe)\n")
    assert isinstance(reply, AGIReply)
    assert reply.data == "\ufffd\ufffd"


@pytest.mark.parametrize(
    "garbage",
    [
        b"2222222\n",
        b"-1 result=4\n",
        b"780 result=0\n",
        b"200\n",
        b"200 foo\n",
        b"200result=1\n",
        b"2000 result=1\n",
        b"1000 x\n",
        b"hangup\n",
        b"HANGUP now\n",
        b"\n",
        b"<html><body>hi</body></html>\n",
        b"agi_network: yes\n",
    ],
)
def test_garbage_reply_is_remote_error(garbage: bytes) -> None:
    """Unknown codes and malformed lines after the env raise RemoteProtocolError."""
    with pytest.raises(RemoteProtocolError):
        ready_parser().feed(garbage)


def test_parser_stays_broken_after_error() -> None:
    """After a protocol error every later feed raises too (the caller aborts)."""
    parser = ready_parser()
    with pytest.raises(RemoteProtocolError):
        parser.feed(b"780 result=0\n")
    with pytest.raises(RemoteProtocolError):
        parser.feed(b"200 result=0\n")


def test_oversize_complete_line() -> None:
    """A complete line longer than max_line is rejected."""
    parser = AGIParser(max_line=64)
    parser.feed(b"agi_network: yes\n\n")
    with pytest.raises(RemoteProtocolError):
        parser.feed(b"200 result=1 (" + b"x" * 100 + b")\n")


def test_oversize_partial_line_fails_before_newline() -> None:
    """An unterminated line is refused as soon as it outgrows max_line (bounded memory)."""
    parser = AGIParser(max_line=64)
    parser.feed(b"agi_network: yes\n\n")
    parser.feed(b"200 result=1 (")
    with pytest.raises(RemoteProtocolError):
        parser.feed(b"y" * 100)


def test_line_exactly_max_line_is_fine() -> None:
    """A line of exactly max_line bytes (terminator excluded) is accepted."""
    line = b"200 result=1 (" + b"z" * 49 + b")"
    assert len(line) == 64
    parser = AGIParser(max_line=64)
    parser.feed(b"agi_network: yes\n\n")
    assert parser.feed(line + b"\n") == [AGIReply(200, "1", "z" * 49, None, line.decode())]


# --- encode_command ----------------------------------------------------------


def parse_args(line: str) -> list[str]:
    """Test oracle modelling res_agi.c parse_args (quote toggles, backslash escapes)."""
    argv: list[str] = []
    quoted = escaped = False
    whitespace = True
    for char in line:
        if char == '"' and not escaped:
            quoted = not quoted
            if quoted and whitespace:
                argv.append("")
                whitespace = False
            continue
        if char in " \t" and not quoted and not escaped:
            whitespace = True
            continue
        if char == "\\" and not escaped:
            escaped = True
            continue
        if whitespace:
            argv.append("")
            whitespace = False
        argv[-1] += char
        escaped = False
    return argv


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("ANSWER",), b"ANSWER\n"),
        (("GET DATA", "beep", "3000", "4"), b'GET DATA "beep" "3000" "4"\n'),
        (("STREAM FILE", "demo-congrats", ""), b'STREAM FILE "demo-congrats" ""\n'),
        (
            ("EXEC", "ChanSpy", "PJSIP/1001-0000002a,quE"),
            b'EXEC "ChanSpy" "PJSIP/1001-0000002a,quE"\n',
        ),
        (("VERBOSE", 'say "hi" \\ bye', "1"), b'VERBOSE "say \\"hi\\" \\\\ bye" "1"\n'),
        (("SET VARIABLE", "X", "a b\tc"), b'SET VARIABLE "X" "a b\tc"\n'),
        (("VERBOSE", "Zoë", "1"), 'VERBOSE "Zoë" "1"\n'.encode()),
    ],
)
def test_encode_command_quotes_and_escapes(args: tuple[str, ...], expected: bytes) -> None:
    """Every argument is double-quoted with \\ and " escaped; the line ends in LF only."""
    assert encode_command(*args) == expected


def test_encode_command_round_trips_through_parse_args() -> None:
    """Asterisk's tokeniser gets back the verb words and each argument intact."""
    line = encode_command("EXEC", "ChanSpy", 'a "b" \\c\\', "", "  ").decode()
    assert parse_args(line.rstrip("\n")) == ["EXEC", "ChanSpy", 'a "b" \\c\\', "", "  "]


@given(
    st.lists(
        st.text(
            alphabet=st.characters(codec="utf-8", exclude_characters="\r\n\x00"),
            max_size=30,
        ),
        max_size=8,
    )
)
def test_encode_command_parse_args_property(args: list[str]) -> None:
    """For any legal arguments, parse_args(encode_command(...)) returns them unchanged."""
    line = encode_command("SET VARIABLE", *args).decode("utf-8")
    assert line.endswith("\n") and "\r" not in line
    assert parse_args(line[:-1]) == ["SET", "VARIABLE", *args]


@pytest.mark.parametrize(
    "args",
    [
        ("EXEC", "ChanSpy", "1001\nHANGUP"),
        ("SET VARIABLE", "X", "a\rb"),
        ("SET VARIABLE", "X", "a\x00b"),
        ("SET VARIABLE", "X\n", "1"),
        ("ANSWER\n",),
        ("ANSWER\r",),
        ("ANSWER\x00",),
    ],
)
def test_encode_command_rejects_injection(args: tuple[str, ...]) -> None:
    """CR, LF or NUL anywhere would end or corrupt the command: LocalProtocolError."""
    with pytest.raises(LocalProtocolError):
        encode_command(*args)


@pytest.mark.parametrize(
    "verb", ["", "GET  DATA", " ANSWER", "ANSWER ", "EXEC;", "GET_DATA", "EXEC 1", 'EXEC "x"']
)
def test_encode_command_rejects_bad_verb(verb: str) -> None:
    """The verb must be words of letters separated by single spaces."""
    with pytest.raises(LocalProtocolError):
        encode_command(verb)


def test_encode_command_length_limit() -> None:
    """Lines over 8000 bytes (LF included) are refused: Asterisk would split them."""
    head = len(b'VERBOSE ""\n')
    assert len(encode_command("VERBOSE", "x" * (8000 - head))) == 8000
    with pytest.raises(LocalProtocolError):
        encode_command("VERBOSE", "x" * (8001 - head))


def test_encode_command_escaping_counts_toward_limit() -> None:
    """The limit applies to the escaped, UTF-8 encoded line, not the raw text."""
    with pytest.raises(LocalProtocolError):
        encode_command("VERBOSE", '"' * 4000)
    with pytest.raises(LocalProtocolError):
        encode_command("VERBOSE", "é" * 4000)


def test_encode_command_rejects_unencodable() -> None:
    """A lone surrogate cannot be sent as UTF-8: LocalProtocolError, not UnicodeError."""
    with pytest.raises(LocalProtocolError):
        encode_command("VERBOSE", "\ud800")


# --- encode_env ------------------------------------------------------------------


def test_encode_env_round_trip() -> None:
    """The parser reads back exactly what encode_env wrote."""
    pairs = (("agi_network", "yes"), ("agi_accountcode", ""), ("agi_arg_1", "x: y"))
    assert AGIParser().feed(encode_env(pairs)) == [AGIEnvironment(pairs)]


@pytest.mark.parametrize(
    "pair",
    [("agi_x", "a\nb"), ("agi_x", "a\rb"), ("agi_x", "\x00"), ("agi_x\n", "1"), ("bad", "1")],
)
def test_encode_env_rejects_bad_input(pair: tuple[str, str]) -> None:
    """CR, LF, NUL or a non agi_* key cannot be encoded."""
    with pytest.raises(LocalProtocolError):
        encode_env([pair])


# --- properties --------------------------------------------------------------

VALID_STREAM = (
    ENV_BYTES
    + b"200 result=0\n"
    + b"100 result=0 Trying...\n"
    + b"200 result=0 Gosub complete\n"
    + b"200 result= (timeout)\n"
    + "200 result=1 (Zoë (x))\n".encode()
    + b"HANGUP\n"
    + USAGE_BLOCK
    + b"510 Invalid or unknown command\n"
    + b"200 result=-1 endpos=1234\n"
    + b"HANGUP\n"
)
VALID_EVENTS = AGIParser().feed(VALID_STREAM)


def test_valid_stream_event_count() -> None:
    """The reference stream yields env, 6 replies, a usage reply and two hangups."""
    assert len(VALID_EVENTS) == 10
    assert VALID_EVENTS[0] == ENV


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in pairwise(bounds)]


@settings(max_examples=300)
@given(st.lists(st.integers(min_value=0, max_value=10**6), max_size=40))
def test_any_split_gives_same_events(cuts: list[int]) -> None:
    """However TCP chunks the stream, the parser emits the same events."""
    assert feed_all(split_at(VALID_STREAM, cuts)) == VALID_EVENTS


@settings(max_examples=300)
@given(st.binary(max_size=400), st.lists(st.integers(min_value=0, max_value=10**6), max_size=8))
def test_arbitrary_bytes_only_remote_error_in_env(data: bytes, cuts: list[int]) -> None:
    """Random bytes as the env block never raise anything but RemoteProtocolError."""
    parser = AGIParser(max_line=128, max_env_lines=8)
    try:
        for chunk in split_at(data, cuts):
            parser.feed(chunk)
    except RemoteProtocolError:
        pass


@settings(max_examples=300)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=60),
            st.sampled_from(
                [b"HANGUP\n", b"200 result=", b"520-", b"520 ", b"\n", b"(", b")", b" endpos=9"]
            ),
        ),
        max_size=12,
    )
)
def test_arbitrary_bytes_only_remote_error_after_env(chunks: list[bytes]) -> None:
    """Random reply bytes, salted with near-valid fragments, raise only RemoteProtocolError."""
    parser = AGIParser(max_line=128)
    parser.feed(b"agi_network: yes\n\n")
    try:
        for chunk in chunks:
            parser.feed(chunk)
    except RemoteProtocolError:
        pass


# --- LineBuffer (shared by both parsers) -------------------------------------


def reference_lines(data: bytes) -> list[bytes]:
    """Naive model: split on LF, drop one trailing CR, keep the unterminated tail out."""
    return [line[:-1] if line.endswith(b"\r") else line for line in data.split(b"\n")[:-1]]


@settings(max_examples=300)
@given(
    st.lists(st.sampled_from([b"a", b"\r", b"\n", b"\r\n", b"xyz", b"\xc3\xa9"]), max_size=60),
    st.lists(st.integers(min_value=0, max_value=10**6), max_size=20),
)
def test_line_buffer_matches_reference_under_any_split(
    pieces: list[bytes], cuts: list[int]
) -> None:
    """LineBuffer yields exactly the naive LF split with one CR trimmed, however it is fed."""
    data = b"".join(pieces)
    buffer = LineBuffer(max_line=10_000)
    lines: list[bytes] = []
    for chunk in split_at(data, cuts):
        lines.extend(buffer.feed(chunk))
    assert lines == reference_lines(data)
    assert buffer.pending == len(data) - (data.rfind(b"\n") + 1)


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        # feed_block: the lines joined by LF, one CR each dropped; b"" is one empty line.
        ("feed_block", [None, None, b"abc", b"", b"x\ny\n"]),
        # feed_raw: the lines as sent, each ending in its LF.
        ("feed_raw", [None, None, b"abc\r\n", b"\n", b"x\r\ny\n\n"]),
    ],
)
def test_line_buffer_blocks_tell_no_line_from_an_empty_one(
    method: str, expected: list[bytes | None]
) -> None:
    """Both block methods return None when no line was completed."""
    buffer = LineBuffer(max_line=10)
    feed = getattr(buffer, method)
    assert [feed(piece) for piece in (b"abc", b"", b"\r\n", b"\n", b"x\r\ny\n\nz")] == expected
    assert buffer.pending == 1


@settings(max_examples=300)
@given(
    st.lists(st.sampled_from([b"a", b"abcd", b"\r", b"\n", b"\r\n"]), max_size=40),
    st.lists(st.integers(min_value=0, max_value=10**6), max_size=20),
)
def test_line_buffer_raw_limit_matches_reference(pieces: list[bytes], cuts: list[int]) -> None:
    """feed_raw refuses exactly the data holding a line over max_line (one CR not counted)."""
    data = b"".join(pieces)
    too_long = any(len(line) > 4 for line in reference_lines(data + b"\n"))
    buffer = LineBuffer(max_line=4)
    got = b""
    try:
        for chunk in split_at(data, cuts):
            got += buffer.feed_raw(chunk) or b""
    except RemoteProtocolError:
        assert too_long
    else:
        assert not too_long or buffer.pending > 4
        assert got == data[: data.rfind(b"\n") + 1]


def test_line_buffer_limits() -> None:
    """Lines up to max_line pass (CR not counted); longer ones or tails raise."""
    buffer = LineBuffer(max_line=4)
    assert buffer.feed(b"abcd\r\nabcd\n") == [b"abcd", b"abcd"]
    assert buffer.feed(b"abcd\r") == []
    assert buffer.feed(b"\n") == [b"abcd"]
    with pytest.raises(RemoteProtocolError):
        LineBuffer(max_line=4).feed(b"abcde\n")
    with pytest.raises(RemoteProtocolError):
        LineBuffer(max_line=4).feed(b"abcde")
    with pytest.raises(RemoteProtocolError):
        LineBuffer(max_line=4).feed(b"ab\n" * 100 + b"abcdefgh\n" + b"ab\n" * 100)
    with pytest.raises(ValueError, match="positive"):
        LineBuffer(max_line=0)
