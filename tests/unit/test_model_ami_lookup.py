"""The header lookups the model relies on: AMIParser's lazy text search equals pair lookup."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fastagi_spy.wire.ami import AMIMessage, AMIParser

BANNER = b"Asterisk Call Manager/11.0.0\r\n"

# Names as Asterisk writes them, plus case variants, digits, dashes and a Kelvin sign.
names = st.sampled_from(
    [
        "Event",
        "Uniqueid",
        "UNIQUEID",
        "uniqueid",
        "DestUniqueid",
        "ChanVariable",
        "Linkedid",
        "Cause-txt",
        "X1",
        "K",
        "\u212a",
    ]
)
values = st.text(
    alphabet=st.sampled_from(["a", "Z", "0", ":", " ", "=", "\u00e9", "\t", ";", "/"]),
    max_size=12,
)
spacing = st.sampled_from([": ", ":", ":  "])


def expected_value(raw: str) -> str:
    # manager.c: the value starts after the first colon and exactly one space.
    return raw[1:] if raw[:1] == " " else raw


@settings(max_examples=400)
@given(
    st.lists(st.tuples(names, spacing, values), min_size=1, max_size=8),
    st.lists(names, min_size=1, max_size=6),
    st.sampled_from([b"\r\n", b"\n"]),
)
def test_parsed_lookups_equal_pair_lookups(
    headers: list[tuple[str, str, str]], queries: list[str], eol: bytes
) -> None:
    """get, get_all and "in" on a parsed message agree with the same headers given as pairs."""
    lines = [f"{name}{sep}{value}" for name, sep, value in headers]
    data = BANNER + b"".join(line.encode() + eol for line in lines) + eol
    (_, parsed) = AMIParser().feed(data)
    assert isinstance(parsed, AMIMessage)
    pairs = tuple((name, expected_value(sep[1:] + value)) for name, sep, value in headers)
    reference = AMIMessage(pairs)
    assert parsed == reference
    for query in queries:
        wanted = query.lower()
        matches = [value for name, value in pairs if name.lower() == wanted]
        assert parsed.get(query) == (matches[0] if matches else None), query
        assert parsed.get(query, "dflt") == (matches[0] if matches else "dflt")
        assert parsed.get_all(query) == tuple(matches)
        assert (query in parsed) == bool(matches)
        assert reference.get(query) == parsed.get(query)


def test_names_a_line_search_cannot_express_fall_back() -> None:
    """A name with a colon or newline, or an empty one, is looked up like the pairs are."""
    (_, parsed) = AMIParser().feed(BANNER + b"Event: A\r\nB: x:y\r\n\r\n")
    assert isinstance(parsed, AMIMessage)
    assert parsed.get("B") == "x:y"
    assert parsed.get("B:x") is None
    assert parsed.get("") is None
    assert parsed.get("Event\nB") is None
    assert parsed.get_all("B:x") == ()
