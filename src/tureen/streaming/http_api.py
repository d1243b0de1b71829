"""The JSON of the stream ingestion routes, transport-free (the REST routes call these).

``POST /ingest/{source}[?wait=none|online|durable]`` takes the events as a JSON array of
objects, ``{"events": [...]}`` (with an optional ``"wait"``) or Feast's columnar
``{"df": {"col": [...]}}``; it answers 200 with the receipt (202 for ``wait=none``: queued,
not yet visible). ``POST /push`` takes Feast's body plus an optional ``"wait"`` (or
``?wait=``) and answers Feast's ``{"status": "ok", "rows": n, "ignored_older": {...}}``
plus the receipt's fields. The query's ``wait`` wins over the body's.

Bodies are bounded twice: the server's ``serving.limits.max_request_bytes`` before the body
is read, and ``streaming.max_request_bytes`` here before it is parsed (a JSON event costs
several times its size once parsed); the row count is bounded by
``streaming.max_request_rows``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import orjson

from tureen.errors import InvalidRequestError, PayloadTooLargeError
from tureen.streaming.http_ingest import Receipt, check_wait

MAX_BODY_EVENTS_HINT = "split the request, or raise streaming.max_request_rows"


def query_wait(query: str | bytes) -> str | None:
    raw = query.decode("latin-1") if isinstance(query, bytes) else query
    values = parse_qs(raw, max_num_fields=20).get("wait") if raw else None
    return values[-1] if values else None


def check_body(body: bytes | bytearray, headers: dict[str, str], route: str,
               max_bytes: int) -> None:
    """Refuse, before parsing, a body over ``max_bytes`` or one we cannot read as JSON."""
    if len(body) > max_bytes:
        raise PayloadTooLargeError(
            f"{route}: the body has {len(body)} bytes; the limit is {max_bytes} "
            "(streaming.max_request_bytes): send fewer events per request.")
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":
        raise InvalidRequestError(
            f"{route}: Content-Encoding {encoding!r} is not accepted here; send plain JSON.")


def parse_events(body: bytes | bytearray, route: str, limit: int
                 ) -> tuple[list[Any], str | None]:
    """The events of a request body and the ``wait`` it names (None: not given)."""
    try:
        obj = orjson.loads(body) if body else None
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"{route}: the body is not JSON ({exc}).") from None
    wait: str | None = None
    if isinstance(obj, dict):
        wait = obj.get("wait")
        if "events" in obj:
            obj = obj["events"]
        elif "df" in obj:
            obj = _rows_of_columns(obj["df"], route)
    if not isinstance(obj, list):
        raise InvalidRequestError(
            f'{route}: send a JSON array of events, {{"events": [...]}} or {{"df": {{column: '
            "[values]}}; each event is an object with the join keys, values and event time.")
    if len(obj) > limit:
        raise InvalidRequestError(f"{route}: {len(obj)} events; the limit is {limit} "
                                  f"({MAX_BODY_EVENTS_HINT}).")
    if wait is not None and not isinstance(wait, str):
        raise InvalidRequestError(f'{route}: "wait" must be "none", "online" or "durable".')
    return obj, wait


def _rows_of_columns(df: Any, route: str) -> list[dict[str, Any]]:
    if not isinstance(df, dict) or not all(isinstance(v, list) for v in df.values()):
        raise InvalidRequestError(f'{route}: "df" must map each column to a list of values.')
    lengths = {len(v) for v in df.values()}
    if len(lengths) > 1:
        raise InvalidRequestError(f'{route}: the columns of "df" have different lengths.')
    n = lengths.pop() if lengths else 0
    return [{k: v[i] for k, v in df.items()} for i in range(n)]


def receipt_status(receipt: Receipt) -> int:
    """202 while the events are only queued (``wait=none``), else 200."""
    return 202 if not (receipt.visible or receipt.durable) else 200


def receipt_answer(receipt: Receipt) -> tuple[int, dict[str, Any]]:
    return receipt_status(receipt), receipt.model_dump(mode="json")


def push_answer(feast: dict[str, Any], receipt: Receipt | None) -> tuple[int, dict[str, Any]]:
    """Feast's push answer (``status``, ``rows``, ``ignored_older``) plus the receipt."""
    if receipt is None:
        return 200, feast
    fields = receipt.model_dump(mode="json", exclude={"source"})
    return receipt_status(receipt), {**feast, **fields}


def resolve_wait(body_wait: str | None, query: str | None, default: str = "online") -> str:
    return check_wait(query or body_wait or default)
