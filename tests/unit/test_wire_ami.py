"""Tests for the sans-IO AMI layer (fastagi_spy.wire.ami)."""

from __future__ import annotations

import copy
import hashlib
import pickle
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastagi_spy.wire.ami import (
    ActionCorrelator,
    ActionResult,
    AMIBanner,
    AMIEvent,
    AMIMessage,
    AMIParser,
    encode_action,
    md5_key,
)
from fastagi_spy.wire.errors import LocalProtocolError, RemoteProtocolError

BANNER = b"Asterisk Call Manager/11.0.0\r\n"


def crlf(text: str) -> bytes:
    """Write a transcript with "\\n" for readability; AMI sends CRLF."""
    return text.replace("\n", "\r\n").encode()


def msg(*headers: tuple[str, str]) -> AMIMessage:
    return AMIMessage(tuple(headers))


def feed_all(chunks: list[bytes], parser: AMIParser | None = None) -> list[AMIEvent]:
    parser = parser or AMIParser()
    out: list[AMIEvent] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    return out


def ready_parser() -> AMIParser:
    parser = AMIParser()
    assert parser.feed(BANNER) == [AMIBanner("Asterisk Call Manager/11.0.0", "11.0.0")]
    return parser


def messages(data: bytes) -> list[AMIMessage]:
    out = ready_parser().feed(data)
    assert all(isinstance(item, AMIMessage) for item in out)
    return [item for item in out if isinstance(item, AMIMessage)]


NEWCHANNEL = crlf(
    "Event: Newchannel\n"
    "Privilege: call,all\n"
    "Timestamp: 1723456789.123456\n"
    "Channel: PJSIP/1001-0000002a\n"
    "ChannelState: 0\n"
    "ChannelStateDesc: Down\n"
    "CallerIDNum: 1001\n"
    "CallerIDName: <unknown>\n"
    "ConnectedLineNum: <unknown>\n"
    "ConnectedLineName: <unknown>\n"
    "Language: en\n"
    "AccountCode: \n"
    "Context: from-internal\n"
    "Exten: 2001\n"
    "Priority: 1\n"
    "Uniqueid: 1723456789.42\n"
    "Linkedid: 1723456789.42\n"
    "ChanVariable: SPY_GROUP=sales\n"
    "ChanVariable: SPY_ROLE=agent\n"
    "\n"
)


# --- banner ------------------------------------------------------------------


def test_banner_parsed_with_version() -> None:
    """The first line is the banner; version is the part after "/"."""
    assert AMIParser().feed(BANNER) == [AMIBanner("Asterisk Call Manager/11.0.0", "11.0.0")]


def test_banner_without_version() -> None:
    """A banner with no "/" still parses, with an empty version."""
    assert AMIParser().feed(b"Asterisk Call Manager\r\n") == [
        AMIBanner("Asterisk Call Manager", "")
    ]


def test_banner_then_message_in_one_chunk() -> None:
    """The banner needs no blank line: a message may follow immediately."""
    out = AMIParser().feed(BANNER + crlf("Response: Success\nPing: Pong\n\n"))
    assert out == [
        AMIBanner("Asterisk Call Manager/11.0.0", "11.0.0"),
        msg(("Response", "Success"), ("Ping", "Pong")),
    ]


def test_banner_byte_by_byte() -> None:
    """Nothing is emitted until the banner line is complete."""
    out = feed_all([BANNER[i : i + 1] for i in range(len(BANNER))])
    assert out == [AMIBanner("Asterisk Call Manager/11.0.0", "11.0.0")]


@pytest.mark.parametrize("first", [b"Response: Success\r\n", b"\r\n", b"Event: FullyBooted\r\n"])
def test_non_banner_first_line_is_remote_error(first: bytes) -> None:
    """A header or blank line where the banner belongs is not an AMI session."""
    with pytest.raises(RemoteProtocolError):
        AMIParser().feed(first)


# --- messages ----------------------------------------------------------------


def test_event_headers_in_order_with_repeats() -> None:
    """Headers stay ordered; repeated ChanVariable lines are all kept."""
    [event] = messages(NEWCHANNEL)
    assert event.headers[0] == ("Event", "Newchannel")
    assert event.get_all("ChanVariable") == ("SPY_GROUP=sales", "SPY_ROLE=agent")
    assert event.get("ChanVariable") == "SPY_GROUP=sales"
    assert len(event.headers) == 19


def test_lookup_is_case_insensitive_first_occurrence() -> None:
    """get/get_all/in ignore case; get returns the first occurrence."""
    [event] = messages(NEWCHANNEL)
    assert event.get("uniqueid") == "1723456789.42"
    assert event.get("UNIQUEID") == "1723456789.42"
    assert event.get_all("chanvariable") == ("SPY_GROUP=sales", "SPY_ROLE=agent")
    assert "linkedid" in event
    assert "Missing" not in event
    assert event.get("Missing") is None
    assert event.get("Missing", "x") == "x"


def test_empty_value_and_colons_in_value() -> None:
    """ "AccountCode: " is empty; values keep their own colons."""
    [event] = messages(
        crlf("Event: VarSet\nAccountCode: \nValue: a:b: c\nData: PJSIP/1001,30,tT\n\n")
    )
    assert event.get("AccountCode") == ""
    assert event.get("Value") == "a:b: c"


def test_one_space_dropped_and_missing_space_tolerated() -> None:
    """Exactly one space after the first colon is dropped; none is fine too."""
    [event] = messages(crlf("Event: X\nA:  two\nB:none\nC:\nD:x: y\n\n"))
    assert event.headers == (
        ("Event", "X"),
        ("A", " two"),
        ("B", "none"),
        ("C", ""),
        ("D", "x: y"),
    )


def test_response_versus_event() -> None:
    """A message with Response and no Event is a response; Event wins otherwise."""
    ping, booted = messages(
        crlf(
            "Response: Success\nActionID: a-1\nPing: Pong\nTimestamp: 1723456789.000000\n\n"
            "Event: FullyBooted\nPrivilege: system,all\nStatus: Fully Booted\n\n"
        )
    )
    assert ping.is_response and not ping.is_event
    assert (ping.response, ping.action_id, ping.event) == ("Success", "a-1", None)
    assert booted.is_event and not booted.is_response
    assert (booted.event, booted.response, booted.action_id) == ("FullyBooted", None, None)


def test_event_name_is_the_first_event_header_wherever_it_stands() -> None:
    """``event`` (taken by the parser from a leading "Event: " line) always equals
    ``get("Event")``: first line, a lone line, a later line, another case, or none."""
    found = messages(
        crlf(
            "Event: Newchannel\nUniqueid: 1\n\n"
            "Event: Solo\n\n"
            "Event:NoSpace\nX: 1\n\n"
            "Privilege: call,all\nevent: Late\nEvent: Later\n\n"
            "Response: Success\nActionID: 1\n\n"
        )
    )
    assert [m.event for m in found] == ["Newchannel", "Solo", "NoSpace", "Late", None]
    assert [m.event for m in found] == [m.get("Event") for m in found]
    built = AMIMessage((("Privilege", "x"), ("EVENT", "Built")))
    assert built.event == "Built"


def test_originate_response_is_an_event() -> None:
    """OriginateResponse carries "Response:" but is an event (Event is checked first)."""
    [event] = messages(
        crlf(
            "Event: OriginateResponse\nPrivilege: call,all\nActionID: o-7\n"
            "Response: Success\nChannel: PJSIP/2001-00000009\nReason: 4\n\n"
        )
    )
    assert event.is_event
    assert not event.is_response
    assert event.response == "Success"
    assert event.event == "OriginateResponse"


def test_command_response_output_lines() -> None:
    """Asterisk >= 14 sends one Output header per CLI line; all are kept in order."""
    [resp] = messages(
        crlf(
            "Response: Success\nActionID: c-1\nMessage: Command output follows\n"
            "Output: Channel              Location             State   Application(Data)\n"
            "Output: PJSIP/1001-0000002a  2001@from-internal   Up      Dial(PJSIP/2001)\n"
            "Output: 1 active channel\n"
            "Output: \n\n"
        )
    )
    assert resp.output == (
        "Channel              Location             State   Application(Data)",
        "PJSIP/1001-0000002a  2001@from-internal   Up      Dial(PJSIP/2001)",
        "1 active channel",
        "",
    )


def test_message_without_output_has_empty_output() -> None:
    """output is () when there are no Output headers."""
    assert msg(("Response", "Success")).output == ()


def test_extra_blank_lines_between_messages_ignored() -> None:
    """Blank lines between (and before) messages produce nothing."""
    out = messages(crlf("\n\nEvent: A\n\n\n\nEvent: B\n\n\n"))
    assert [m.event for m in out] == ["A", "B"]


def test_bare_lf_accepted() -> None:
    """Bare LF line ends work like CRLF (get_input accepts both; so do we)."""
    out = messages(b"Event: A\nX: 1\n\nEvent: B\r\nY: 2\r\n\n")
    assert out == [msg(("Event", "A"), ("X", "1")), msg(("Event", "B"), ("Y", "2"))]


def test_bare_lf_blank_lines_frame_messages_under_a_tight_header_limit() -> None:
    """Framing on CRLF blank lines first must not take two LF-framed messages for one
    message over the header limit: each here is within it."""
    parser = AMIParser(max_headers=3)
    parser.feed(BANNER)
    out = parser.feed(b"Event: A\nX: 1\n\nEvent: B\r\nY: 2\r\nZ: 3\r\n\r\n")
    assert out == [msg(("Event", "A"), ("X", "1")), msg(("Event", "B"), ("Y", "2"), ("Z", "3"))]
    assert [m.event for m in out] == ["A", "B"]


def test_only_one_trailing_cr_removed() -> None:
    """A value ending in CR before the CRLF keeps that extra CR."""
    [event] = messages(b"Event: A\r\nX: 1\r\r\n\r\n")
    assert event.get("X") == "1\r"


def test_utf8_split_across_chunks() -> None:
    """A multi-byte character cut by TCP decodes correctly (lines decoded whole)."""
    data = "Event: Newcallerid\r\nCallerIDName: Zoë Ünal\r\n\r\n".encode()
    cut = data.index(b"\xc3") + 1
    parser = ready_parser()
    assert parser.feed(data[:cut]) == []
    assert parser.feed(data[cut:]) == [msg(("Event", "Newcallerid"), ("CallerIDName", "Zoë Ünal"))]


def test_a_name_that_lengthens_when_lower_cased_keeps_every_lookup_right() -> None:
    """"İ" lower-cases to two characters, moving the offsets of a read's lower-cased text:
    every message of that read, not only the one holding it, must still be read right."""
    data = (
        "Event: Newchannel\r\nUniqueid: 1.1\r\n\r\n"
        "Event: NewCallerid\r\nCallerIDName: İSTANBUL İŞ\r\nUniqueid: 1.2\r\n\r\n"
        "Event: Hangup\r\nuniqueid: 1.3\r\nCause: 16\r\n\r\n"
    ).encode()
    first, second, third = messages(data)
    assert (first.event, first.get("UNIQUEID")) == ("Newchannel", "1.1")
    assert (second.get("callerIDname"), second.get("Uniqueid")) == ("İSTANBUL İŞ", "1.2")
    assert (third.event, third.get("Uniqueid"), third.get("cause")) == ("Hangup", "1.3", "16")
    assert third.headers == (("Event", "Hangup"), ("uniqueid", "1.3"), ("Cause", "16"))


def test_invalid_utf8_replaced() -> None:
    """Undecodable bytes become U+FFFD within their line instead of raising."""
    [event] = messages(b"Event: A\r\nName: \xff\xfeok\r\n\r\n")
    assert event.get("Name") == "\ufffd\ufffdok"


def test_message_fed_whole_byte_by_byte_and_with_trailing() -> None:
    """Whole, byte-by-byte and with trailing partial data all give the same message."""
    expected = messages(NEWCHANNEL)
    assert feed_all([NEWCHANNEL[i : i + 1] for i in range(len(NEWCHANNEL))], ready_parser()) == (
        expected
    )
    parser = ready_parser()
    assert parser.feed(NEWCHANNEL + b"Event: Hangup\r\nUniq") == expected
    assert parser.feed(b"ueid: 1.2\r\n\r\n") == [msg(("Event", "Hangup"), ("Uniqueid", "1.2"))]


def test_large_read_spanning_batches() -> None:
    """A read far larger than the internal batch still yields every message in order."""
    events = [crlf(f"Event: E\nN: {i}\nChanVariable: a\nChanVariable: b\n\n") for i in range(800)]
    out = messages(b"".join(events))
    assert [m.get("N") for m in out] == [str(i) for i in range(800)]
    assert all(m.get_all("ChanVariable") == ("a", "b") for m in out)


def test_message_equality_ignores_lookup_cache() -> None:
    """Equality, hashing, copy and pickle depend on headers only, not the lazy index."""
    a = msg(("Event", "A"), ("X", "1"))
    b = msg(("Event", "A"), ("X", "1"))
    assert a.get("x") == "1"
    assert a == b
    assert hash(a) == hash(b)
    assert copy.deepcopy(a) == a
    assert pickle.loads(pickle.dumps(b)) == b
    assert pickle.loads(pickle.dumps(a)).get("X") == "1"


# --- errors and bounds -------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [
        b"Event: A\r\nno colon here\r\n\r\n",
        b"Event: A\r\n: empty name\r\n\r\n",
        b"   \r\n",
        b"--END COMMAND--\r\n\r\n",
        b"<html>\r\n",
    ],
)
def test_non_header_line_is_remote_error(garbage: bytes) -> None:
    """A line without ":" (or with an empty name) inside a message is rejected."""
    with pytest.raises(RemoteProtocolError):
        ready_parser().feed(garbage)


def test_parser_stays_broken() -> None:
    """After an error every later feed raises too (the caller drops the connection)."""
    parser = ready_parser()
    with pytest.raises(RemoteProtocolError):
        parser.feed(b"garbage\r\n")
    with pytest.raises(RemoteProtocolError):
        parser.feed(crlf("Event: A\n\n"))


def test_too_many_headers_in_complete_message() -> None:
    """A message with more than max_headers lines is rejected."""
    parser = AMIParser(max_headers=4)
    parser.feed(BANNER)
    with pytest.raises(RemoteProtocolError):
        parser.feed(crlf("Event: A\nB: 1\nC: 2\nD: 3\nE: 4\n\n"))


def test_too_many_headers_without_terminator() -> None:
    """A message that never ends is refused once it passes max_headers (bounded memory)."""
    parser = AMIParser(max_headers=4)
    parser.feed(BANNER)
    parser.feed(crlf("Event: A\nB: 1\n"))
    with pytest.raises(RemoteProtocolError):
        for i in range(5):
            parser.feed(crlf(f"H{i}: x\n"))


def test_max_headers_exactly_is_fine() -> None:
    """A message of exactly max_headers lines is accepted, even when fed line by line."""
    parser = AMIParser(max_headers=3)
    parser.feed(BANNER)
    assert parser.feed(crlf("Event: A\n")) == []
    assert parser.feed(crlf("B: 1\n")) == []
    assert parser.feed(crlf("C: 2\n")) == []
    assert parser.feed(b"\r\n") == [msg(("Event", "A"), ("B", "1"), ("C", "2"))]


def test_over_long_line() -> None:
    """A complete line over max_line is rejected."""
    parser = AMIParser(max_line=100)
    parser.feed(BANNER)
    with pytest.raises(RemoteProtocolError):
        parser.feed(b"Event: A\r\nOutput: " + b"x" * 200 + b"\r\n\r\n")


def test_over_long_partial_line() -> None:
    """An unterminated line is refused as soon as it outgrows max_line."""
    parser = AMIParser(max_line=100)
    parser.feed(BANNER)
    parser.feed(b"Event: A\r\nOutput: ")
    with pytest.raises(RemoteProtocolError):
        parser.feed(b"x" * 200)


def test_line_of_exactly_max_line_split_before_lf() -> None:
    """A max_line-byte line whose CR and LF arrive in different reads is accepted."""
    line = b"Output: " + b"y" * 92
    assert len(line) == 100
    parser = AMIParser(max_line=100)
    parser.feed(BANNER)
    assert parser.feed(b"Event: A\r\n" + line + b"\r") == []
    assert parser.feed(b"\n\r\n") == [msg(("Event", "A"), ("Output", "y" * 92))]


# --- properties --------------------------------------------------------------

header_names = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,15}", fullmatch=True)
header_values = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"),
    max_size=24,
)
message_headers = st.lists(st.tuples(header_names, header_values), min_size=1, max_size=6)


def encode_message(headers: list[tuple[str, str]], eol: bytes) -> bytes:
    return b"".join(f"{n}: {v}".encode() + eol for n, v in headers) + eol


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    return [data[a:b] for a, b in pairwise([0, *points, len(data)])]


@settings(max_examples=300)
@given(
    st.lists(message_headers, min_size=1, max_size=6),
    st.lists(st.integers(min_value=0, max_value=10**6), max_size=30),
    st.sampled_from([b"\r\n", b"\n"]),
)
def test_any_split_gives_same_messages(
    bodies: list[list[tuple[str, str]]], cuts: list[int], eol: bytes
) -> None:
    """However TCP chunks the stream, the same banner and messages come out, headers intact."""
    stream = BANNER + b"".join(encode_message(h, eol) for h in bodies)
    expected = [
        AMIBanner("Asterisk Call Manager/11.0.0", "11.0.0"),
        *(AMIMessage(tuple(h)) for h in bodies),
    ]
    assert AMIParser().feed(stream) == expected
    assert feed_all(split_at(stream, cuts)) == expected


@settings(max_examples=300)
@given(st.binary(max_size=400), st.lists(st.integers(min_value=0, max_value=10**6), max_size=8))
def test_arbitrary_bytes_only_remote_error(data: bytes, cuts: list[int]) -> None:
    """Random bytes (with or without a banner) never raise anything but RemoteProtocolError."""
    for prefix in (b"", BANNER):
        parser = AMIParser(max_line=64, max_headers=8)
        try:
            for chunk in split_at(prefix + data, cuts):
                parser.feed(chunk)
        except RemoteProtocolError:
            pass


@settings(max_examples=200)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=40),
            st.sampled_from([b"\r\n", b"\r\n\r\n", b": ", b":", b"Event: X", b"\r", b"\n"]),
        ),
        max_size=16,
    )
)
def test_near_valid_fragments_only_remote_error(chunks: list[bytes]) -> None:
    """Streams salted with separators and header fragments raise only RemoteProtocolError."""
    parser = AMIParser(max_line=64, max_headers=8)
    parser.feed(BANNER)
    try:
        for chunk in chunks:
            parser.feed(chunk)
    except RemoteProtocolError:
        pass


# --- encode_action -----------------------------------------------------------


def test_encode_action_layout() -> None:
    """Action first, then ActionID, then headers in order, CRLF lines, blank line last."""
    data = encode_action(
        "Originate",
        [("Channel", "PJSIP/2001"), ("Variable", "A=1"), ("Variable", "B=2"), ("Async", "true")],
        action_id="fs-12",
    )
    assert data == (
        b"Action: Originate\r\nActionID: fs-12\r\nChannel: PJSIP/2001\r\n"
        b"Variable: A=1\r\nVariable: B=2\r\nAsync: true\r\n\r\n"
    )


def test_encode_action_minimal() -> None:
    """With no headers and no ActionID only the Action line and terminator remain."""
    assert encode_action("Ping") == b"Action: Ping\r\n\r\n"


def test_encode_action_round_trips_through_parser() -> None:
    """What we send is framed the same way by an AMI-style parser."""
    data = encode_action("Command", [("Command", "core show channels")], action_id="c-1")
    assert messages(data) == [
        msg(("Action", "Command"), ("ActionID", "c-1"), ("Command", "core show channels"))
    ]


@pytest.mark.parametrize(
    ("headers", "action_id"),
    [
        ([("Channel", "PJSIP/2001\r\nAction: Originate")], None),
        ([("Channel", "a\nb")], None),
        ([("Channel", "a\rb")], None),
        ([("Channel", "a\x00b")], None),
        ([], "id\r\nVariable: X=1"),
        ([], "id\x00"),
    ],
)
def test_encode_action_rejects_injection(
    headers: list[tuple[str, str]], action_id: str | None
) -> None:
    """CR, LF or NUL in any value (ActionID included) is a LocalProtocolError."""
    with pytest.raises(LocalProtocolError):
        encode_action("Originate", headers, action_id=action_id)


@pytest.mark.parametrize("name", ["", "Chan nel", "Channel:", "Ch\r\nX", "Kanäl", "A.B"])
def test_encode_action_rejects_bad_header_name(name: str) -> None:
    """Header names must match ^[A-Za-z0-9_-]+$."""
    with pytest.raises(LocalProtocolError):
        encode_action("Originate", [(name, "x")])


@pytest.mark.parametrize("action", ["", "Core Show", "Ping\r\n", "Ping:"])
def test_encode_action_rejects_bad_action_name(action: str) -> None:
    """The action name follows the same rule as header names."""
    with pytest.raises(LocalProtocolError):
        encode_action(action)


def test_encode_action_rejects_duplicate_action_headers() -> None:
    """A second Action header, or ActionID both ways, would be ignored by Asterisk: refused."""
    with pytest.raises(LocalProtocolError):
        encode_action("Ping", [("action", "Logoff")])
    with pytest.raises(LocalProtocolError):
        encode_action("Ping", [("ActionID", "x")], action_id="y")
    assert encode_action("Ping", [("ActionID", "x")]) == b"Action: Ping\r\nActionID: x\r\n\r\n"


def test_encode_action_line_length_limit() -> None:
    """A line may use at most 1024 bytes with its CRLF (manager.c inbuf[1025])."""
    room = 1024 - len(b"Command: \r\n")
    assert encode_action("Command", [("Command", "x" * room)])
    with pytest.raises(LocalProtocolError):
        encode_action("Command", [("Command", "x" * (room + 1))])


def test_encode_action_header_count_limit() -> None:
    """At most 128 lines including Action and ActionID (AST_MAX_MANHEADERS)."""
    assert encode_action("Originate", [("Variable", "a=1")] * 126, action_id="x")
    with pytest.raises(LocalProtocolError):
        encode_action("Originate", [("Variable", "a=1")] * 127, action_id="x")


def test_encode_action_rejects_unencodable() -> None:
    """A lone surrogate raises LocalProtocolError, not UnicodeEncodeError."""
    with pytest.raises(LocalProtocolError):
        encode_action("Ping", [("X", "\udc80")])


def test_md5_key_known_vector() -> None:
    """md5_key is lowercase hex md5(challenge + secret), as manager.c authenticate expects."""
    assert md5_key("1234567890", "sup3r-secret") == "b8206d6d228a211ad7a840c49726f9b9"
    assert hashlib.md5(b"1234567890sup3r-secret").hexdigest() == md5_key(
        "1234567890", "sup3r-secret"
    )


# --- ActionCorrelator --------------------------------------------------------


def test_core_show_channels_list_with_interleaved_events() -> None:
    """List items are collected; unrelated events in between come back unconsumed."""
    stream = messages(
        crlf(
            "Response: Success\nActionID: fs-1\nEventList: start\n"
            "Message: Channels will follow\n\n"
            "Event: CoreShowChannel\nActionID: fs-1\nChannel: PJSIP/1001-0000002a\n"
            "Uniqueid: 1.1\nApplication: Dial\nDuration: 00:01:02\n\n"
            "Event: Newstate\nPrivilege: call,all\nChannel: PJSIP/2001-0000002b\n"
            "ChannelState: 6\n\n"
            "Event: CoreShowChannel\nActionID: fs-1\nChannel: PJSIP/2001-0000002b\n"
            "Uniqueid: 1.2\n\n"
            "Event: Hangup\nPrivilege: call,all\nActionID: other\nUniqueid: 9.9\n\n"
            "Event: CoreShowChannelsComplete\nActionID: fs-1\nEventList: Complete\n"
            "ListItems: 2\n\n"
        )
    )
    correlator = ActionCorrelator()
    correlator.expect("fs-1")
    results = [correlator.feed(m) for m in stream]
    assert [consumed for consumed, _ in results] == [True, True, False, True, False, True]
    assert all(finished is None for _, finished in results[:-1])
    finished = results[-1][1]
    assert finished is not None
    assert finished.action_id == "fs-1"
    assert finished.success
    assert finished.response == stream[0]
    assert finished.events == (stream[1], stream[3])
    assert finished.complete == stream[5]
    assert correlator.pending() == frozenset()


def test_error_response_ends_list_immediately() -> None:
    """An error instead of "EventList: start" finishes the action with no items."""
    correlator = ActionCorrelator()
    correlator.expect("q-1")
    err = msg(("Response", "Error"), ("ActionID", "q-1"), ("Message", "Permission denied"))
    consumed, finished = correlator.feed(err)
    assert consumed
    assert finished == ActionResult("q-1", err, (), None)
    assert not finished.success
    assert correlator.pending() == frozenset()


def test_error_response_mid_list_ends_it() -> None:
    """A response arriving while a list is collected ends it with the items so far."""
    correlator = ActionCorrelator()
    correlator.expect("q-2")
    start = msg(("Response", "Success"), ("ActionID", "q-2"), ("EventList", "start"))
    item = msg(("Event", "QueueParams"), ("ActionID", "q-2"), ("Queue", "sales"))
    err = msg(("Response", "Error"), ("ActionID", "q-2"), ("Message", "Asterisk is shutting down"))
    assert correlator.feed(start) == (True, None)
    assert correlator.feed(item) == (True, None)
    consumed, finished = correlator.feed(err)
    assert consumed
    assert finished == ActionResult("q-2", err, (item,), None)


def test_ping_response_finishes_at_once() -> None:
    """A plain Success response (Ping) completes the action immediately."""
    correlator = ActionCorrelator()
    correlator.expect("p-1")
    pong = msg(
        ("Response", "Success"),
        ("ActionID", "p-1"),
        ("Ping", "Pong"),
        ("Timestamp", "1723456789.123456"),
    )
    assert correlator.feed(pong) == (True, ActionResult("p-1", pong, (), None))


def test_logoff_goodbye_counts_as_success() -> None:
    """Logoff's "Response: Goodbye" is a success."""
    correlator = ActionCorrelator()
    correlator.expect("l-1")
    bye = msg(("Response", "Goodbye"), ("ActionID", "l-1"), ("Message", "Thanks for all the fish."))
    _, finished = correlator.feed(bye)
    assert finished is not None and finished.success


def test_success_is_case_insensitive() -> None:
    """ "success" in any case counts as success, and a list start is recognised too."""
    correlator = ActionCorrelator()
    correlator.expect("s-1")
    start = msg(("Response", "success"), ("ActionID", "s-1"), ("EventList", "Start"))
    assert correlator.feed(start) == (True, None)
    done = msg(("Event", "StatusComplete"), ("ActionID", "s-1"), ("EventList", "complete"))
    _, finished = correlator.feed(done)
    assert finished is not None and finished.success and finished.complete == done


def test_late_originate_response_not_consumed() -> None:
    """An OriginateResponse after its action finished goes to normal dispatch."""
    correlator = ActionCorrelator()
    correlator.expect("o-1")
    queued = msg(("Response", "Success"), ("ActionID", "o-1"), ("Message", "Originate queued"))
    assert correlator.feed(queued)[0]
    late = msg(("Event", "OriginateResponse"), ("ActionID", "o-1"), ("Response", "Success"))
    assert correlator.feed(late) == (False, None)


def test_event_for_pending_action_before_response_not_consumed() -> None:
    """An event with a pending ActionID but no list started is not a list item."""
    correlator = ActionCorrelator()
    correlator.expect("o-2")
    early = msg(("Event", "OriginateResponse"), ("ActionID", "o-2"), ("Response", "Failure"))
    assert correlator.feed(early) == (False, None)
    assert correlator.pending() == frozenset({"o-2"})


def test_unknown_or_missing_action_id_not_consumed() -> None:
    """Responses and events for no pending ActionID pass through untouched."""
    correlator = ActionCorrelator()
    correlator.expect("a-1")
    assert correlator.feed(msg(("Response", "Success"), ("ActionID", "zzz"))) == (False, None)
    assert correlator.feed(msg(("Response", "Success"))) == (False, None)
    assert correlator.feed(msg(("Event", "Newchannel"))) == (False, None)
    assert correlator.feed(msg(("Message", "neither"), ("ActionID", "a-1"))) == (False, None)
    assert correlator.pending() == frozenset({"a-1"})


def test_forget_pending_clear() -> None:
    """forget drops one id; clear drops all and returns them in order; nothing is replayed."""
    correlator = ActionCorrelator()
    for action_id in ("a", "b", "c"):
        correlator.expect(action_id)
    correlator.forget("b")
    correlator.forget("never")
    assert correlator.pending() == frozenset({"a", "c"})
    assert correlator.clear() == ["a", "c"]
    assert correlator.pending() == frozenset()
    assert correlator.feed(msg(("Response", "Success"), ("ActionID", "a"))) == (False, None)


def test_expect_twice_is_local_error() -> None:
    """Reusing a pending ActionID would mix up replies: LocalProtocolError."""
    correlator = ActionCorrelator()
    correlator.expect("dup")
    with pytest.raises(LocalProtocolError):
        correlator.expect("dup")
