"""The JSON of POST /ingest/{source} and /push?wait=: every shape a client may send, and the
clear refusals."""

from __future__ import annotations

import pytest

from tureen.errors import InvalidRequestError
from tureen.streaming.http_api import parse_events, query_wait, resolve_wait


def test_shapes() -> None:
    assert parse_events(b'[{"a": 1}]', "/ingest/x", 10) == ([{"a": 1}], None)
    assert parse_events(b'{"events": [{"a": 1}], "wait": "durable"}', "r", 10) == (
        [{"a": 1}], "durable")
    assert parse_events(b'{"df": {"a": [1, 2], "b": ["x", "y"]}}', "r", 10)[0] == [
        {"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    assert query_wait(b"wait=none&x=1") == "none" and query_wait("") is None
    assert resolve_wait("durable", None) == "durable"
    assert resolve_wait("durable", "none") == "none"
    assert resolve_wait(None, None) == "online"


@pytest.mark.parametrize(("body", "match"), [
    (b"{", "not JSON"), (b'"x"', "JSON array"), (b'{"df": {"a": [1], "b": []}}', "lengths"),
    (b'{"df": [1]}', "map each column"), (b"[" + b"{}," * 10 + b"{}]", "limit is 10"),
    (b'{"events": [], "wait": 5}', "wait"),
])
def test_refusals(body: bytes, match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        parse_events(body, "/ingest/x", 10)
    with pytest.raises(InvalidRequestError, match="wait"):
        resolve_wait("soon", None)
