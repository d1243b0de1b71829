"""The REST app: KServe v1 and OIP v2 routes as native handlers, also served over ASGI.

``build_app(dataplane, extra_routes=[...], chain=...)`` returns one app. Its own routes are
matched by string operations; each is a handler ``(headers, body bytes, *path args) ->
Reply``. The app is a ``NativeResolver`` for tureen's HTTP/1.1 server (``resolve(method,
path)`` hands out the handler; no ASGI messages at all) and an ASGI app for any other server
(the body is read from ``receive``). Other paths go to ``extra_routes``: ``RouteTable``s
(e.g. the Feast routes) are matched like the app's own routes, anything else (Starlette
routes) through a ``Router``, so other areas mount into the same app and port.

Every request on every route — own, ``RouteTable`` or Starlette — runs through the one
``GuardChain`` (``tureen.serving.guard``): request id, limits, authentication, audit, and the
one error table; the reply carries ``x-request-id`` (and a valid ``traceparent`` back).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import orjson
from starlette.routing import BaseRoute, Router
from starlette.types import Message, Receive, Scope, Send

from tureen.codecs.oip_json import (
    HEADER_LENGTH,
    decode_request,
    encode_response_parts,
    loads,
)
from tureen.errors import InvalidRequestError, PayloadTooLargeError
from tureen.serving.context import RequestContext, peer_certificate
from tureen.serving.dataplane import DataPlane
from tureen.serving.guard import GuardChain, RequestFailedError
from tureen.serving.model_config import check_unload_parameters
from tureen.transports.http1.native import Headers, NativeHandler, Reply
from tureen.transports.rest.asgi_io import (
    DisconnectedError,
    inflate,
    read_body,
    send_reply,
    too_large,
)
from tureen.transports.rest.triton import TritonRoutes

log = logging.getLogger(__name__)

#: request bodies larger than this are decoded in a thread, not on the event loop
OFFLOAD_BYTES = 1024 * 1024

JSON = b"application/json"
Raw = bytes | bytearray  # a big body arrives as one bytearray (tensors view into it)
# (headers, raw body, *path args) -> Reply
Handler = Callable[..., Awaitable[Reply]]
Hook = Callable[[], Awaitable[None]]

DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024
#: resolved handlers kept (per method and path; the cache starts afresh past it)
RESOLVED_ROUTES = 256


@runtime_checkable
class RouteTable(Protocol):
    """Routes another area mounts with ``extra_routes`` and the app serves like its own:
    ``match(path)`` → (the method it accepts, ``handler(headers, body) -> Reply``) or None.
    Handlers raise ``TureenError``s; the app maps them (``error_detail``: the error body also
    carries the message as ``detail``, as Feast's clients read it). A table with
    ``fixed_paths = True`` says its answer depends on the path alone (the app then keeps it
    per path instead of asking again). A table with a
    ``close()`` method has it called (in a thread) once the server stopped taking requests
    (``RestApp.aclose``)."""

    error_detail: bool

    def match(self, path: str) -> tuple[str, Handler] | None: ...


@runtime_checkable
class ListsOperations(Protocol):
    """A route table that can say which routes it serves ("METHOD /path")."""

    def operations(self) -> list[str]: ...


@runtime_checkable
class OwnErrorBodies(Protocol):
    """A route table whose error bodies follow another protocol (Feast's typed errors)."""

    def render_error(self, status: int, message: str, cause: BaseException | None) -> Reply: ...


ErrorRenderer = Callable[[int, str, "BaseException | None"], Reply]
# (accepted method, handler, path args, how its errors are rendered)
_Match = tuple[str, Handler, tuple[str, ...], ErrorRenderer]


def _json(status: int, obj: Any) -> Reply:
    return status, orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY), JSON, []


class RestApp:
    def __init__(
        self,
        dataplane: DataPlane,
        extra_routes: Sequence[BaseRoute | RouteTable] = (),
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        on_startup: Sequence[Hook] = (),
        on_shutdown: Sequence[Hook] = (),
        chain: GuardChain | None = None,
    ) -> None:
        self.dataplane = dataplane
        self.max_request_bytes = max_request_bytes
        self.on_startup = list(on_startup)
        self.on_shutdown = list(on_shutdown)
        self.chain = chain or GuardChain()
        self._triton = TritonRoutes(dataplane)
        self._tables = [r for r in extra_routes if isinstance(r, RouteTable)]
        # how each table's errors are rendered, chosen once (a runtime Protocol check per
        # request cost the feature server ~4% of its throughput)
        self._renders: list[tuple[RouteTable, ErrorRenderer, bool]] = [
            (
                t,
                t.render_error
                if isinstance(t, OwnErrorBodies)
                else _detail_error
                if t.error_detail
                else _plain_error,
                getattr(t, "fixed_paths", False) is True,
            )
            for t in self._tables
        ]
        #: (method, path) -> its handler, for routes whose match depends on the path alone
        #: (the app's own, Triton's, tables with ``fixed_paths``), requests without a query
        self._resolved: dict[tuple[str, str], NativeHandler] = {}
        starlette = [r for r in extra_routes if not isinstance(r, RouteTable)]
        self._router = Router(starlette, default=self._not_found) if starlette else None
        self._fixed: dict[str, tuple[str, Handler]] = {
            "/": ("GET", self._root),
            "/v1/models": ("GET", self._v1_list),
            "/v2": ("GET", self._v2_meta),
            "/v2/": ("GET", self._v2_meta),
            "/v2/health/live": ("GET", self._live),
            "/v2/health/ready": ("GET", self._ready),
            "/metrics": ("GET", self._metrics),
            "/v2/repository/index": ("POST", self._repo_index),
        }

    #: the parametrised routes ``_match_own`` serves, as "METHOD template" (for route tables,
    #: docs and the auth matrix test; a route added to ``_match_own`` is added here)
    PATTERNS = (
        "GET /v1/models/{name}",
        "POST /v1/models/{name}:predict",
        "POST /v1/models/{name}:explain",
        "GET /v2/models/{name}",
        "GET /v2/models/{name}/versions/{version}",
        "GET /v2/models/{name}/ready",
        "GET /v2/models/{name}/versions/{version}/ready",
        "POST /v2/models/{name}/infer",
        "POST /v2/models/{name}/versions/{version}/infer",
        "POST /v2/repository/models/{name}/load",
        "POST /v2/repository/models/{name}/unload",
    )

    def operations(self) -> list[str]:
        """Every route this app serves, "METHOD /path/{param}", mounted tables included."""
        own = [f"{method} {path}" for path, (method, _) in self._fixed.items()]
        mounted = [
            op for t in self._tables if isinstance(t, ListsOperations) for op in t.operations()
        ]
        return [*own, *self.PATTERNS, *self._triton.operations(), *mounted]

    async def aclose(self) -> None:
        """Close the mounted tables that hold resources (after the server drained)."""
        for table in self._tables:
            close = getattr(table, "close", None)
            if close is None:
                continue
            try:
                await asyncio.to_thread(close)
            except Exception:
                log.exception("closing the routes %s failed", type(table).__name__)

    # ASGI entry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif self._router is not None:
            await self._router(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    for hook in self.on_startup:
                        await hook()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                for hook in self.on_shutdown:
                    await hook()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _match(self, path: str) -> _Match | None:
        found = self._match_fixed(path)
        return None if found is None else found[0]

    def _match_fixed(self, path: str) -> tuple[_Match, bool] | None:
        """The route of ``path`` and whether it depends on the path alone."""
        ext = self._triton.match(path)  # before own: /v2/models/stats is not a model
        if ext is not None:
            return (ext[0], ext[1], (), _plain_error), True
        own = self._match_own(path)
        if own is not None:
            return (own[0], own[1], own[2], _plain_error), True
        for table, render, fixed in self._renders:
            found = table.match(path)
            if found is not None:
                return (found[0], found[1], (), render), fixed
        return None

    def _match_own(self, path: str) -> tuple[str, Handler, tuple[str, ...]] | None:
        fixed = self._fixed.get(path)
        if fixed is not None:
            return fixed[0], fixed[1], ()
        if path.startswith("/v2/models/"):
            parts = path[11:].split("/")
            n = len(parts)
            if n >= 3 and parts[1] == "versions":
                name, version, tail = parts[0], parts[2], parts[3:]
            else:
                name, version, tail = parts[0], "", parts[1:]
            if not name or (n >= 2 and parts[1] == "versions" and not version):
                return None
            if not tail:
                return "GET", self._v2_model, (name, version)
            if len(tail) == 1 and tail[0] == "infer":
                return "POST", self._v2_infer, (name, version)
            if len(tail) == 1 and tail[0] == "ready":
                return "GET", self._v2_model_ready, (name, version)
            return None
        if path.startswith("/v1/models/"):
            rest = path[11:]
            name, colon, verb = rest.rpartition(":")
            if colon and verb == "predict":
                return "POST", self._v1_predict, (name,)
            if colon and verb == "explain":
                return "POST", self._v1_explain, (name,)
            if "/" not in rest and ":" not in rest and rest:
                return "GET", self._v1_model, (rest,)
            return None
        if path.startswith("/v2/repository/models/"):
            parts = path[22:].split("/")
            if len(parts) == 2 and parts[0] and parts[1] in ("load", "unload"):
                handler = self._repo_load if parts[1] == "load" else self._repo_unload
                return "POST", handler, (parts[0],)
        return None

    # native entry (tureen's HTTP/1.1 server)

    def resolve(self, method: str, path: str, query: bytes = b"") -> NativeHandler | None:
        if not query:
            known = self._resolved.get((method, path))
            if known is not None:
                return known
        found = self._match_fixed(path)
        if found is None:
            if self._router is None:
                return functools.partial(self._unrouted, method, path)
            return None  # the server hands it to the Router over ASGI
        match, fixed = found
        handler = functools.partial(
            self._call, method, path, f"{method} {path}", match, None, query.decode("latin-1")
        )
        if fixed and not query:
            if len(self._resolved) >= RESOLVED_ROUTES:
                self._resolved.clear()
            self._resolved[method, path] = handler
        return handler

    def error_reply(self, headers: Headers, status: int, message: str) -> Reply:
        """The server's own rejection (413 before the body is read), stamped like ours."""
        ctx = self.chain.context("http", "", headers)
        return self._stamp(_json(status, {"error": message}), ctx)

    @staticmethod
    def _stamp(reply: Reply, ctx: RequestContext) -> Reply:
        status, out, ctype, extra = reply
        extra = [*extra, (b"x-request-id", ctx.request_id.encode("latin-1"))]
        if ctx.traceparent:
            extra.append((b"traceparent", ctx.traceparent.encode("latin-1")))
        for name, value in ctx.response_headers:
            extra.append((name.encode("latin-1"), value.encode("latin-1")))
        return status, out, ctype, extra

    async def _call(
        self,
        method: str,
        path: str,
        operation: str,
        match: _Match,
        peer: str | None,
        query: str,
        headers: Headers,
        body: bytes | bytearray,
    ) -> Reply:
        """Run the route's handler through the guard chain; stamp the request id."""
        want, handler, args, render = match
        ctx = self.chain.context(
            "http", operation, headers, peer, peer_certificate.get(), query=query
        )
        if method != want and not (want == "GET" and method == "HEAD"):
            reply = render(405, f"{path} accepts {want} only; resend as {want}.", None)
            reply[3].append((b"allow", want.encode()))
            return self._stamp(reply, ctx)
        try:
            reply = await self.chain.run(ctx, handler, headers, body, *args)
        except RequestFailedError as f:
            reply = render(f.http, f.message, f.cause)
        return self._stamp(reply, ctx)

    async def _unrouted(
        self, method: str, path: str, headers: Headers, body: bytes | bytearray
    ) -> Reply:
        ctx = self.chain.context("http", f"{method} {path}", headers)
        return self._stamp(await _not_found_reply(path, headers, body), ctx)

    # ASGI entry (uvicorn, httpx.ASGITransport)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        headers: Headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if (
            scope.get("http_version") == "1.1"
            and sum(k == b"host" for k, _ in scope["headers"]) != 1
        ):
            await send_reply(
                send,
                _json(400, {"error": "an HTTP/1.1 request needs exactly one Host header; add it."}),
                [(b"connection", b"close")],
            )
            return
        client = scope.get("client")
        peer = f"{client[0]}:{client[1]}" if client else None
        match = self._match(path)
        if match is None:
            if self._router is not None:
                await self._guarded_router(method, path, headers, peer, scope, receive, send)
            else:
                await self._not_found(scope, receive, send)
            return
        body: bytes | bytearray = b""
        if method == match[0]:
            try:
                body = await read_body(headers, receive, self.max_request_bytes)
            except DisconnectedError:
                return
            except PayloadTooLargeError as exc:
                match = (method, functools.partial(_raise, exc), (), match[3])
        query = bytes(scope.get("query_string", b"")).decode("latin-1")
        reply = await self._call(
            method, path, f"{method} {path}", match, peer, query, headers, body
        )
        await send_reply(send, reply)

    async def _guarded_router(
        self,
        method: str,
        path: str,
        headers: Headers,
        peer: str | None,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """A Starlette route through the same chain; a refusal before the route answered
        becomes the usual JSON error."""
        ctx = self.chain.context("http", f"{method} {path}", headers, peer)
        started = False
        rid = (b"x-request-id", ctx.request_id.encode("latin-1"))

        async def stamped(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", ()), rid]}
            await send(message)

        assert self._router is not None
        try:
            await self.chain.run(ctx, self._router, scope, receive, stamped)
        except RequestFailedError as f:
            if started:
                return  # the route already answered part of it; nothing sane to add
            await send_reply(send, self._stamp(_error(f.http, f.message, False), ctx))

    async def _not_found(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_reply(send, await _not_found_reply(str(scope.get("path")), {}, b""))

    def _body(self, headers: Headers, body: bytes | bytearray) -> bytes | bytearray:
        """The request body, inflated when sent with Content-Encoding gzip or deflate."""
        if len(body) > self.max_request_bytes:
            raise PayloadTooLargeError(too_large(len(body), self.max_request_bytes))
        encoding = headers.get("content-encoding")
        if encoding and encoding != "identity":
            return inflate(body, encoding.strip().lower(), self.max_request_bytes)
        return body

    # v1

    async def _root(self, headers: Headers, body: Raw) -> Reply:
        return _json(200, {"status": "alive"})

    async def _v1_list(self, headers: Headers, body: Raw) -> Reply:
        return _json(200, {"models": self.dataplane.list_models()})

    async def _v1_model(self, headers: Headers, body: Raw, name: str) -> Reply:
        ready = self.dataplane.model_ready(name)
        return _json(200 if ready else 503, {"name": name, "ready": ready})

    async def _v1_predict(self, headers: Headers, body: Raw, name: str) -> Reply:
        raw = self._body(headers, body)
        payload = loads(raw) if len(raw) <= OFFLOAD_BYTES else await asyncio.to_thread(loads, raw)
        result = await self.dataplane.predict_v1(name, payload, headers)
        return _json(200, result)

    async def _v1_explain(self, headers: Headers, body: Raw, name: str) -> Reply:
        payload = loads(self._body(headers, body))
        return _json(200, await self.dataplane.explain_v1(name, payload, headers))

    # v2

    async def _v2_meta(self, headers: Headers, body: Raw) -> Reply:
        return _json(200, self.dataplane.server_metadata())

    async def _live(self, headers: Headers, body: Raw) -> Reply:
        return _json(200, {"live": True})

    async def _ready(self, headers: Headers, body: Raw) -> Reply:
        ready = self.dataplane.ready()
        return _json(200 if ready else 503, {"ready": ready})

    async def _v2_model(self, headers: Headers, body: Raw, name: str, v: str) -> Reply:
        return _json(200, self.dataplane.model_metadata(name, v or None))

    async def _v2_model_ready(self, headers: Headers, body: Raw, name: str, v: str) -> Reply:
        ready = self.dataplane.model_ready(name, v or None)
        return _json(200 if ready else 503, {"name": name, "ready": ready})

    async def _v2_infer(self, headers: Headers, body: Raw, name: str, v: str) -> Reply:
        self.dataplane.repository.get(name, v or None)  # unknown model/version: 404 first
        raw = self._body(headers, body)
        args = (raw, headers.get(HEADER_LENGTH), name, v or None, headers)
        request = (
            decode_request(*args)
            if len(raw) <= OFFLOAD_BYTES
            else await asyncio.to_thread(decode_request, *args)
        )
        response = await self.dataplane.infer(request, "v2")
        parts, head_len = encode_response_parts(response, request)
        if head_len is None:
            return 200, bytes(parts[0]), JSON, []
        return (
            200,
            parts,
            b"application/octet-stream",
            [(b"inference-header-content-length", str(head_len).encode())],
        )

    # repository extension

    async def _repo_index(self, headers: Headers, body: Raw) -> Reply:
        raw = self._body(headers, body)
        opts = loads(raw) if raw.strip() else {}
        index = self.dataplane.repository_index()
        if isinstance(opts, dict) and opts.get("ready"):
            index = [m for m in index if m["state"] == "READY"]
        return _json(200, index)

    async def _repo_load(self, headers: Headers, body: Raw, name: str) -> Reply:
        params = _repository_parameters(self._body(headers, body))
        await self.dataplane.load(name, params)
        return _json(200, {})

    async def _repo_unload(self, headers: Headers, body: Raw, name: str) -> Reply:
        params = _repository_parameters(self._body(headers, body))
        check_unload_parameters(name, params)
        await self.dataplane.unload(name)
        return _json(200, {})

    async def _metrics(self, headers: Headers, body: Raw) -> Reply:
        text = self.dataplane.metrics.render().encode()
        return 200, text, b"text/plain; version=0.0.4; charset=utf-8", []


def _repository_parameters(raw: bytes | bytearray) -> dict[str, Any]:
    """The ``parameters`` of a repository load/unload body (empty body: none)."""
    if not raw.strip():
        return {}
    obj = loads(raw)
    params = obj.get("parameters", {}) if isinstance(obj, dict) else None
    if not isinstance(params, dict) or (isinstance(obj, dict) and set(obj) - {"parameters"}):
        raise InvalidRequestError(
            'a repository load/unload body is {"parameters": {...}} (or empty).'
        )
    return params


def _error(status: int, message: str, detail: bool) -> Reply:
    body = {"error": message, "detail": message} if detail else {"error": message}
    return _json(status, body)


def _plain_error(status: int, message: str, cause: BaseException | None) -> Reply:
    return _error(status, message, False)


def _detail_error(status: int, message: str, cause: BaseException | None) -> Reply:
    return _error(status, message, True)


async def _not_found_reply(path: str, headers: Headers, body: Raw) -> Reply:
    return _json(
        404,
        {"error": f"no route {path}; see GET /v2 and GET /v1/models for what this server offers."},
    )


async def _raise(exc: Exception, *args: Any) -> Reply:
    raise exc


def build_app(
    dataplane: DataPlane,
    extra_routes: Sequence[BaseRoute | RouteTable] = (),
    *,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    on_startup: Sequence[Hook] = (),
    on_shutdown: Sequence[Hook] = (),
    chain: GuardChain | None = None,
) -> RestApp:
    """The ASGI app serving ``dataplane`` over KServe v1 and OIP REST, plus ``extra_routes``
    (``RouteTable``s and Starlette routes), every request through ``chain``."""
    return RestApp(dataplane, extra_routes, max_request_bytes, on_startup, on_shutdown, chain)
