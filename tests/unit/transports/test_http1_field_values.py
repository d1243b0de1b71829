"""Response header values are checked against RFC 9110's field-value syntax; the quick check
for printable ASCII answers exactly as the pattern does, for any bytes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tureen.transports.http1.response import _VALUE, valid_field

EDGES = [
    b"",
    b" ",
    b"a",
    b" a",
    b"a ",
    b"a b",
    b"a\tb",
    b"\ta",
    b"a\t",
    b"a\r\nb",
    b"a\nb",
    b"\x00",
    b"a\x7fb",
    b"\x80",
    b"a\xffb",
    b"~",
    b"!",
    b"abc-123:/+=@.",
]


def test_edge_values() -> None:
    for value in EDGES:
        assert valid_field(b"x-request-id", value) is (_VALUE.fullmatch(value) is not None)
    assert valid_field(b"x-request-id", b"ec67ced1-40004")
    assert not valid_field(b"x-request-id", b"id\r\nset-cookie: a=b")
    assert not valid_field(b"bad name", b"v")


@given(st.binary(max_size=40))
def test_any_bytes_answer_as_the_pattern(value: bytes) -> None:
    assert valid_field(b"x-thing", value) is (_VALUE.fullmatch(value) is not None)


@given(st.text(st.characters(min_codepoint=0, max_codepoint=0x7F), max_size=40))
def test_any_ascii_answers_as_the_pattern(text: str) -> None:
    value = text.encode("ascii")
    assert valid_field(b"x-thing", value) is (_VALUE.fullmatch(value) is not None)
