"""Feast-compatible HTTP routes over a ``FeatureStore``.

``feature_routes(store)`` is a ``RouteTable`` the REST app serves like its own routes (on
either HTTP/1.1 server, through the guard chain). Each route is ``handler(body) ->
(status, json-able)``, except the hot ``/get-online-features``, whose handler answers the
``Reply`` itself (one coroutine per request); client mistakes raise ``TureenError``s that
the app maps to 400/404 with the store's message (``{"error": ...}``, plus Feast's
``detail`` key so Feast clients print it). Blocking work (writes, materialization, the
health probe) runs in a worker thread; online reads go through
``get_online_features_async``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
import pandas as pd

from tureen.feature_server import feast_compat
from tureen.feature_server.feast_json import (
    OnlineFeaturesRequest,
    parse_materialize,
    parse_online_request,
    parse_push,
    parse_write,
    write_answer,
)
from tureen.feature_server.health import health_report
from tureen.serving.context import current
from tureen.store import FeatureStore
from tureen.streaming.http_api import push_answer, query_wait
from tureen.transports.http1.native import Headers, Reply
from tureen.transports.rest.app import OFFLOAD_BYTES
from tureen.transports.rest.ingest import IngestRoutes

Answer = tuple[int, Any]
Handler = Callable[[bytes], Awaitable[Answer]]
ReplyHandler = Callable[[Headers, bytes], Awaitable[Reply]]
JSON = b"application/json"
T = TypeVar("T")


async def _prepared(fn: Callable[[], T], body: bytes) -> T:
    """``fn()`` (parsing ``body``) inline when the body is small, in a worker thread when it
    is over ``OFFLOAD_BYTES``: its cost is proportional to the client's input."""
    return fn() if len(body) <= OFFLOAD_BYTES else await asyncio.to_thread(fn)


async def _reply(handler: Handler, headers: Headers, body: bytes) -> Reply:
    status, obj = await handler(body)
    data = (
        obj
        if isinstance(obj, bytes)
        else orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
    )
    return status, data, JSON, []


class FeatureHandlers:
    """The route logic, independent of ASGI so tests and other transports can call it.
    ``feast_compat``: answer with Feast's statuses and values (see
    ``tureen.feature_server.feast_compat``)."""

    def __init__(self, store: FeatureStore, feast_compat: bool = False) -> None:
        self.store = store
        self.feast_compat = feast_compat

    async def online_features_reply(self, headers: Headers, body: bytes) -> Reply:
        """``POST /get-online-features`` as the route answers it (one coroutine: the hot
        path)."""
        if len(body) <= OFFLOAD_BYTES:
            req, entities = self._online_request(body)
        else:
            req, entities = await asyncio.to_thread(self._online_request, body)
        features, ttl = req.features, not self.feast_compat
        if isinstance(features, str):  # a feature service's name
            resp = await self.store.get_online_features_async(
                None, entities, req.full_feature_names, feature_service=features, enforce_ttl=ttl
            )
        else:
            resp = await self.store.get_online_features_async(
                features, entities, req.full_feature_names, enforce_ttl=ttl
            )
        return 200, resp.feast_json_bytes(feast_statuses=self.feast_compat), JSON, []

    def _online_request(self, body: bytes) -> tuple[OnlineFeaturesRequest, dict[str, list[Any]]]:
        req = parse_online_request(body)
        return req, feast_compat.coerce_entities(self.store.snapshot(), req.entities)

    async def push(self, body: bytes) -> Answer:
        """Feast's push; ``wait`` (``?wait=`` or in the body) for sources feeding stream
        views; the answer adds the receipt (ingestion id, visible/durable, lag)."""

        def prepare() -> tuple[Any, pd.DataFrame]:
            req = parse_push(body)
            snapshot = self.store.snapshot()
            views = feast_compat.views_fed_by(snapshot, req.push_source_name)
            df = feast_compat.epoch_timestamps(views, req.df)
            df = feast_compat.coerce_entities(snapshot, df)
            return req, pd.DataFrame(df)

        req, df = await _prepared(prepare, body)
        ctx = current()
        wait = (query_wait(ctx.query) if ctx is not None else None) or req.wait
        n = await asyncio.to_thread(
            functools.partial(self.store.push, req.push_source_name, df, req.to, wait=wait)
        )
        return push_answer(write_answer(n), n.receipt)

    async def write_to_online_store(self, body: bytes) -> Answer:
        def prepare() -> tuple[str, pd.DataFrame]:
            req = parse_write(body)
            snapshot = self.store.snapshot()
            view = snapshot.feature_view(req.feature_view_name)
            df = feast_compat.epoch_timestamps([view], req.df)
            df = feast_compat.coerce_entities(snapshot, df)
            return req.feature_view_name, pd.DataFrame(df)

        name, df = await _prepared(prepare, body)
        n = await asyncio.to_thread(self.store.write_to_online_store, name, df)
        return 200, write_answer(n)

    async def materialize(self, body: bytes) -> Answer:
        req = parse_materialize(body, incremental=False)
        assert req.start is not None
        done = await asyncio.to_thread(
            self.store.materialize, req.start, req.end, req.feature_views
        )
        return 200, {"status": "ok", "materialized": _summaries(done)}

    async def materialize_incremental(self, body: bytes) -> Answer:
        req = parse_materialize(body, incremental=True)
        done = await asyncio.to_thread(
            self.store.materialize_incremental, req.end, req.feature_views
        )
        return 200, {"status": "ok", "materialized": _summaries(done)}

    async def health(self, body: bytes) -> Answer:
        report = await asyncio.to_thread(health_report, self.store)
        return (200 if report["status"] == "ok" else 503), report


def _summaries(done: list[Any]) -> list[dict[str, Any]]:
    out = []
    for r in done:
        item: dict[str, Any] = {"feature_view": getattr(r, "view", str(r))}
        for attr in ("start", "end"):
            v = getattr(r, attr, None)
            if v is not None:
                item[attr] = v.isoformat()
        rows = getattr(r, "rows", None)
        if rows is not None:
            item["rows"] = rows
        if getattr(r, "note", None):
            item["note"] = r.note
        out.append(item)
    return out


class FeastRoutes:
    """The feature routes as a ``RouteTable``: one exact-path lookup per request. Errors
    have Feast's body, so the Feast SDK raises its typed exceptions."""

    error_detail = True
    fixed_paths = True

    def render_error(self, status: int, message: str, cause: BaseException | None) -> Reply:
        return status, feast_compat.error_body(message, cause), JSON, []

    def __init__(
        self,
        table: dict[str, tuple[str, Handler]],
        replies: dict[str, tuple[str, ReplyHandler]] | None = None,
    ) -> None:
        """``table``: routes whose handlers answer (status, JSON-able); ``replies``: routes
        whose handlers take the headers and answer a ``Reply`` themselves."""
        self.table: dict[str, tuple[str, ReplyHandler]] = dict(replies or {})
        self.table.update(
            {
                path: (method, functools.partial(_reply, handler))
                for path, (method, handler) in table.items()
            }
        )

    def match(self, path: str) -> tuple[str, ReplyHandler] | None:
        return self.table.get(path)

    def operations(self) -> list[str]:
        return [f"{method} {path}" for path, (method, _) in self.table.items()]


def feature_routes(
    store: FeatureStore, feast_compat: bool | None = None
) -> list[FeastRoutes | IngestRoutes]:
    """The Feast feature-server routes over ``store`` and ``POST /ingest/{source}`` (mount
    with ``extra_routes``); ``feast_compat`` defaults to ``serving.feast_compat`` of the
    repo's tureen.yaml."""
    compat = store.config.serving.feast_compat if feast_compat is None else feast_compat
    h = FeatureHandlers(store, compat)
    return [
        FeastRoutes(
            {
                "/push": ("POST", h.push),
                "/write-to-online-store": ("POST", h.write_to_online_store),
                "/materialize": ("POST", h.materialize),
                "/materialize-incremental": ("POST", h.materialize_incremental),
                "/health": ("GET", h.health),
            },
            {"/get-online-features": ("POST", h.online_features_reply)},
        ),
        IngestRoutes(store),
    ]
