"""``POST /ingest/{source}[?wait=none|online|durable]``: events of a push source through its
stream views (validation, watermark, windows, offline log, dead letters), answered with a
receipt (``tureen.streaming.http_ingest.Receipt``).

A ``RouteTable`` the REST app serves beside the Feast routes, through the same guard chain.
The body is bounded before it is parsed (``streaming.max_request_bytes``; the server's
``serving.limits.max_request_bytes`` bounds it before it is read) and parsed in a worker
thread with the write. ``FeatureStore.ingest`` authorizes ``write_features`` on
``<project>/<source>``. When the server stops, ``close`` writes what HTTP ingestion still
buffers (queued ``wait=none`` events, the offline log).
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from tureen.errors import NotFoundError
from tureen.serving.context import current
from tureen.store import FeatureStore
from tureen.streaming.http_api import (
    check_body,
    parse_events,
    query_wait,
    receipt_answer,
    resolve_wait,
)
from tureen.transports.http1.native import Headers, Reply

PREFIX = "/ingest/"
_SOURCE = re.compile(r"[A-Za-z0-9_-]{1,200}")
JSON = b"application/json"


class IngestRoutes:
    """The ingestion route as a ``RouteTable`` (``match`` by prefix, the source as argument)."""

    error_detail = True

    def __init__(self, store: FeatureStore) -> None:
        self.store = store

    def match(self, path: str) -> tuple[str, Callable[..., Awaitable[Reply]]] | None:
        if not path.startswith(PREFIX):
            return None
        return "POST", functools.partial(self.ingest, path[len(PREFIX):])

    def operations(self) -> list[str]:
        return [f"POST {PREFIX}{{source}}"]

    async def ingest(self, source: str, headers: Headers, body: bytes | bytearray) -> Reply:
        if not _SOURCE.fullmatch(source):
            raise NotFoundError("POST /ingest/{source}: a source name is letters, digits, '_' "
                                "or '-'; name a push source of this repository.")
        route = f"{PREFIX}{source}"
        check_body(body, headers, route, self.store.config.streaming.max_request_bytes)
        ctx = current()
        wait = query_wait(ctx.query) if ctx is not None else None
        status, answer = await asyncio.to_thread(self._ingest, source, route, body, wait)
        return status, orjson.dumps(answer), JSON, []

    def _ingest(self, source: str, route: str, body: bytes | bytearray,
                query_wait: str | None) -> tuple[int, dict[str, Any]]:
        events, body_wait = parse_events(body, route,
                                         self.store.config.streaming.max_request_rows)
        receipt = self.store.ingest(source, events, resolve_wait(body_wait, query_wait))
        return receipt_answer(receipt)

    def close(self) -> None:
        self.store.stop_ingestion()
