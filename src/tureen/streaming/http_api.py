"""The JSON of the stream ingestion routes, transport-free (the REST routes call these).

``POST /ingest/{source}[?wait=none|online|durable]`` takes the events as a JSON array of
objects, ``{"events": [...]}`` (with an optional ``"wait"``) or Feast's columnar
``{"df": {"col": [...]}}``; it answers 200 with the receipt (202 for ``wait=none``).
``POST /push`` takes Feast's body plus an optional ``"wait"`` (or ``?wait=``): a push
source feeding stream views goes through the stream path and answers with a receipt; other
push sources answer Feast's ``{"status": "ok", "rows": n}`` plus the ingestion id and lag.
"""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import parse_qs

import orjson

from tureen.errors import InvalidRequestError
from tureen.streaming.http_ingest import Receipt, check_wait

MAX_BODY_EVENTS_HINT = "split the request, or raise streaming.max_request_rows"


def query_wait(query: str | bytes) -> str | None:
    raw = query.decode("latin-1") if isinstance(query, bytes) else query
    values = parse_qs(raw).get("wait")
    return values[-1] if values else None


def parse_events(body: bytes, route: str, limit: int) -> tuple[list[Any], str | None]:
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


def receipt_answer(receipt: Receipt) -> tuple[int, dict[str, Any]]:
    return (202 if receipt.wait == "none" else 200), receipt.model_dump(mode="json")


def push_receipt(rows: int, started: float) -> dict[str, Any]:
    """Feast's push answer plus a receipt for a plain (non-stream) push: its writes are done
    when it returns, so visible and durable for what ``to`` named."""
    return {"status": "ok", "rows": rows, "ingestion_id": uuid.uuid4().hex,
            "received_to_visible_ms": round((time.time() - started) * 1000, 3)}


def resolve_wait(body_wait: str | None, query: str | None, default: str = "online") -> str:
    return check_wait(query or body_wait or default)
