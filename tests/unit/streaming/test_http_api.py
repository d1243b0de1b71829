"""The JSON of POST /ingest/{source} and /push?wait=: every shape a client may send, and the
clear refusals."""

from __future__ import annotations

import pytest

from tureen.errors import InvalidRequestError, PayloadTooLargeError
from tureen.streaming.http_api import (
    check_body,
    parse_events,
    push_answer,
    query_wait,
    receipt_answer,
    resolve_wait,
)
from tureen.streaming.http_ingest import Receipt


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


def test_bodies_are_bounded_before_parsing() -> None:
    check_body(b"[]", {}, "/ingest/x", 1024)
    with pytest.raises(PayloadTooLargeError, match="2000 bytes; the limit is 1024"):
        check_body(b" " * 2000, {}, "/ingest/x", 1024)
    with pytest.raises(InvalidRequestError, match="send plain JSON"):
        check_body(b"[]", {"content-encoding": "br"}, "/ingest/x", 1024)


def test_answers() -> None:
    queued = Receipt(ingestion_id="i", source="s", wait="none", accepted=1)
    assert receipt_answer(queued)[0] == 202
    done = queued.model_copy(update={"wait": "online", "visible": True})
    assert receipt_answer(done) == (200, done.model_dump(mode="json"))
    status, body = push_answer({"status": "ok", "rows": 1, "ignored_older": {}}, done)
    assert status == 200 and body["rows"] == 1 and body["ingestion_id"] == "i"
    assert "source" not in body
    assert push_answer({"status": "ok"}, None) == (200, {"status": "ok"})
