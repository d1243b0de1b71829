"""Feast-compatible HTTP routes over a ``FeatureStore``.

Each route is a handler ``handler(body) -> (status, json-able)`` served two ways: natively
(``FeastRoutes.resolve``, for tureen's HTTP/1.1 server through the REST app) and as a small
ASGI endpoint (no per-request Request/Response objects) for any other server.
Client mistakes become 400/404 with the store's message (``{"error": ...}``, plus Feast's
``detail`` key so Feast clients print it); unexpected errors become a logged 500. Blocking
work (writes, materialization, the health probe) runs in a worker thread; online reads go
through ``get_online_features_async``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pandas as pd
from starlette.datastructures import URLPath
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from tureen.errors import TureenError
from tureen.feature_server.feast_json import (
    parse_materialize,
    parse_online_request,
    parse_push,
    parse_write,
    write_answer,
)
from tureen.feature_server.health import health_report
from tureen.store import FeatureStore
from tureen.transports.http1.native import Headers, NativeHandler, Reply
from tureen.transports.rest.errors import http_status

log = logging.getLogger(__name__)

Answer = tuple[int, Any]
Handler = Callable[[bytes], Awaitable[Answer]]
JSON = b"application/json"
_JSON = [(b"content-type", JSON)]


class _Endpoint:
    """One route: ``handler(body) -> (status, json-able)``, natively (``native``) or as an
    ASGI app."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    async def answer(self, path: str, body: bytes) -> tuple[int, bytes]:
        try:
            status, obj = await self.handler(body)
        except TureenError as exc:
            status, obj = http_status(exc), {"error": str(exc), "detail": str(exc)}
        except Exception:
            log.exception("internal error serving %s", path)
            status, obj = 500, {"error": "internal server error; see the server log."}
        data = obj if isinstance(obj, bytes) else orjson.dumps(
            obj, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
        return status, data

    async def native(self, path: str, headers: Headers, body: bytes) -> Reply:
        status, data = await self.answer(path, body)
        return status, data, JSON, []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks: list[bytes] = []
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        status, data = await self.answer(str(scope.get("path")), body)
        await send({"type": "http.response.start", "status": status,
                    "headers": [*_JSON, (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})


class FeatureHandlers:
    """The route logic, independent of ASGI so tests and other transports can call it."""

    def __init__(self, store: FeatureStore) -> None:
        self.store = store

    async def get_online_features(self, body: bytes) -> Answer:
        req = parse_online_request(body)
        resp = await self.store.get_online_features_async(
            req.features if not isinstance(req.features, str) else None,
            req.entities, req.full_feature_names,
            feature_service=req.features if isinstance(req.features, str) else None,
        )
        return 200, resp.feast_json_bytes()

    async def push(self, body: bytes) -> Answer:
        req = parse_push(body)
        n = await asyncio.to_thread(
            self.store.push, req.push_source_name, pd.DataFrame(req.df), req.to)
        return 200, write_answer(n)

    async def write_to_online_store(self, body: bytes) -> Answer:
        req = parse_write(body)
        n = await asyncio.to_thread(
            self.store.write_to_online_store, req.feature_view_name, pd.DataFrame(req.df))
        return 200, write_answer(n)

    async def materialize(self, body: bytes) -> Answer:
        req = parse_materialize(body, incremental=False)
        assert req.start is not None
        done = await asyncio.to_thread(self.store.materialize, req.start, req.end,
                                       req.feature_views)
        return 200, {"status": "ok", "materialized": _summaries(done)}

    async def materialize_incremental(self, body: bytes) -> Answer:
        req = parse_materialize(body, incremental=True)
        done = await asyncio.to_thread(self.store.materialize_incremental, req.end,
                                       req.feature_views)
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


def _wrong_method(path: str, want: str) -> bytes:
    msg = f"{path} accepts {want} only."
    return orjson.dumps({"error": msg, "detail": msg})


async def _method_not_allowed(path: str, want: str, headers: Headers, body: bytes) -> Reply:
    return 405, _wrong_method(path, want), JSON, [(b"allow", want.encode())]


class FeastRoutes(BaseRoute):
    """All feature routes as one Starlette route matched by an exact path lookup (the
    router tries it before regex routes, so the hot path pays one dict lookup); also a
    ``NativeResolver`` over the same table."""

    def __init__(self, table: dict[str, tuple[str, _Endpoint]]) -> None:
        self.table = table
        self._native = {path: functools.partial(ep.native, path)
                        for path, (_, ep) in table.items()}

    def resolve(self, method: str, path: str) -> NativeHandler | None:
        entry = self.table.get(path)
        if entry is None:
            return None
        want = entry[0]
        if method != want and not (want == "GET" and method == "HEAD"):
            return functools.partial(_method_not_allowed, path, want)
        return self._native[path]

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        entry = self.table.get(scope["path"])
        if entry is None:
            return Match.NONE, {}
        method = scope["method"]
        ok = method == entry[0] or (entry[0] == "GET" and method == "HEAD")
        return (Match.FULL if ok else Match.PARTIAL), {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        want, endpoint = self.table[scope["path"]]
        if scope["method"] != want and not (want == "GET" and scope["method"] == "HEAD"):
            body = _wrong_method(scope["path"], want)
            await send({"type": "http.response.start", "status": 405,
                        "headers": [*_JSON, (b"allow", want.encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await endpoint(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        raise NoMatchFound(name, path_params)


def feature_routes(store: FeatureStore) -> list[BaseRoute]:
    """The Feast feature-server routes over ``store`` (mount with ``extra_routes``)."""
    h = FeatureHandlers(store)
    table: dict[str, tuple[str, _Endpoint]] = {
        "/get-online-features": ("POST", _Endpoint(h.get_online_features)),
        "/push": ("POST", _Endpoint(h.push)),
        "/write-to-online-store": ("POST", _Endpoint(h.write_to_online_store)),
        "/materialize": ("POST", _Endpoint(h.materialize)),
        "/materialize-incremental": ("POST", _Endpoint(h.materialize_incremental)),
        "/health": ("GET", _Endpoint(h.health)),
    }
    return [FeastRoutes(table)]
