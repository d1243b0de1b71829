"""``ConsoleApp``: the console as one ASGI app, mountable anywhere (``/console/`` in
``tureen serve``, ``/`` in ``tureen console``).

Every page is a view function that returns a ``Page``: a template name and the view model
(a JSON-ready dict). The same ``Page`` is rendered as HTML, or sent as JSON when the path
ends in ``.json`` or the caller sends ``Accept: application/json`` — so the JSON twin of a
screen is, by construction, what the screen shows. Views that touch files or stores run in
a worker thread, so a console open in a browser never stalls the serving event loop. Write
actions are form posts: CSRF-checked, then handed to the same services the CLI calls.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.types import Receive, Scope, Send

from tureen.console import csrf as csrf_mod
from tureen.console import session
from tureen.console.http import (
    MAX_FORM_BYTES,
    MAX_QUERY_BYTES,
    ConsoleRequest,
    Response,
    Stream,
    parse_cookies,
    parse_fields,
    seg,
    wants_json,
)
from tureen.console.page import Page, Redirect, Route, View, to_json
from tureen.console.services import ConsoleServices
from tureen.console.static import StaticFiles
from tureen.error_codes import http_status
from tureen.errors import (
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    TureenError,
    UnauthenticatedError,
)
from tureen.serving.context import request_id, resolve_request_id

log = logging.getLogger(__name__)

SECURITY_HEADERS = [
    ("content-security-policy",
     "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
    ("x-frame-options", "DENY"),
    ("cache-control", "no-store"),
]


class MethodNotAllowedError(InvalidRequestError):
    """A console path asked with the wrong method (HTTP 405)."""


def status_of(exc: TureenError) -> int:
    if isinstance(exc, UnauthenticatedError):
        return 401
    if isinstance(exc, MethodNotAllowedError):
        return 405
    if isinstance(exc, (PermissionDeniedError, csrf_mod.CsrfError)):
        return 403
    return http_status(exc)


class ConsoleApp:
    def __init__(self, services: ConsoleServices, routes: list[Route] | None = None) -> None:
        from tureen.console.views import all_routes
        from tureen.console.views.format import FILTERS

        self.services = services
        self.routes = routes if routes is not None else all_routes()
        self.static = StaticFiles()
        self.csrf = csrf_mod.Csrf(csrf_mod.load_key(services.repo_path))
        self.env = Environment(loader=PackageLoader("tureen.console", "templates"),
                               autoescape=True, undefined=StrictUndefined,
                               trim_blocks=True, lstrip_blocks=True)
        self.env.filters.update(FILTERS)
        self.env.globals.update(seg=seg, static=self.static.url)

    # ---- ASGI -------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return
        if scope["type"] != "http":
            return
        root = scope.get("root_path", "") or ""
        path: str = scope["path"]
        raw = scope.get("raw_path") or path.encode()
        raw_path = raw.decode("latin-1").split("?", 1)[0]
        if root and path.startswith(root):
            path = path[len(root):]
            if raw_path.startswith(root):
                raw_path = raw_path[len(root):]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope["headers"]}
        rid = resolve_request_id(headers.get("x-request-id"), headers.get("traceparent"))
        token = request_id.set(rid)
        try:
            await self._handle(scope, receive, send, root, path or "/", raw_path or "/",
                               headers, rid)
        finally:
            request_id.reset(token)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, root: str,
                      path: str, raw_path: str, headers: dict[str, str], rid: str) -> None:
        method: str = scope["method"]
        if path.startswith("/static/"):
            resp = self.static.get(path[len("/static/"):], headers)
            await _send(send, resp, rid)
            return
        as_json = wants_json(raw_path, headers.get("accept", ""))
        if as_json and raw_path.endswith(".json"):
            path = path[: -len(".json")] or "/"
            if path == "/index":  # the overview's twin (its page is "/")
                path = "/"
        query_string: bytes = scope.get("query_string", b"")
        req = ConsoleRequest(method=method, path=path, base=root, query={}, headers=headers,
                             cookies=parse_cookies(headers.get("cookie", "")),
                             wants_json=as_json, scheme=str(scope.get("scheme", "http")))
        new_cookie = None
        if not req.cookies.get(csrf_mod.COOKIE):
            new_cookie = csrf_mod.Csrf.new_cookie()
            req.cookies[csrf_mod.COOKIE] = new_cookie
        guard = self.services.guard
        bound: Any = None
        error: BaseException | None = None
        status = 500
        try:
            try:
                req.query = parse_fields(query_string, "query string", MAX_QUERY_BYTES)
                if guard is not None and not session.is_public(path):
                    bound = await session.begin(guard, req)
                sent = await self._respond(send, receive, req, new_cookie, rid)
                if sent is None:  # a stream, already sent
                    status = 200
                    return
                resp = sent
            except UnauthenticatedError as exc:
                error = exc
                resp = self._unauthenticated(req, exc, new_cookie)
            except TureenError as exc:
                error = exc
                resp = self._finish(req, self._error_page(req, exc, status_of(exc)),
                                    new_cookie)
            status = resp.status
            await _send(send, resp, rid)
        finally:
            if guard is not None:
                guard.finish(bound, request_id=rid, route=f"{method} {path}", status=status,
                             error=error)

    async def _respond(self, send: Send, receive: Receive, req: ConsoleRequest,
                       new_cookie: str | None, rid: str) -> Response | None:
        method, path, headers = req.method, req.path, req.headers
        match = self._match(method, path)
        if match is None:
            raise NotFoundError(f"no console page {path}; start from the overview.")
        rt, params = match
        req.params = params
        if method == "POST":
            body = await _read_body(receive, MAX_FORM_BYTES)
            ctype = headers.get("content-type", "")
            is_form = ctype.startswith("application/x-www-form-urlencoded")
            req.form = parse_fields(body, "form", MAX_FORM_BYTES) if is_form else {}
            self.csrf.check(req.cookies.get(csrf_mod.COOKIE),
                            req.form.get(csrf_mod.FIELD), headers, self._who(req))
            if not is_form:
                raise InvalidRequestError(
                    "console actions take HTML form posts "
                    "(application/x-www-form-urlencoded).")
        if rt.stream is not None:
            stream = await rt.stream(req, self.services)
            await _send_stream(send, receive, stream, rid)
            return None
        assert rt.view is not None
        return await asyncio.to_thread(self._run, rt.view, req, new_cookie, rid)

    def _unauthenticated(self, req: ConsoleRequest, exc: TureenError,
                         new_cookie: str | None) -> Response:
        """A browser is sent to the sign-in page; a script gets 401."""
        if req.method == "GET" and not req.wants_json:
            target = req.path + (f"?{urlencode(req.query)}" if req.query else "")
            return self._finish(req, Redirect(f"/login?{urlencode({'next': target})}"),
                                new_cookie)
        return self._finish(req, self._error_page(req, exc, 401), new_cookie)

    def _run(self, view: View, req: ConsoleRequest, new_cookie: str | None,
             rid: str) -> Response:
        """The view and its rendering, in a worker thread; errors become error pages."""
        token = request_id.set(rid)
        try:
            try:
                result = view(req, self.services)
            except TureenError as exc:
                result = self._error_page(req, exc, status_of(exc))
            return self._finish(req, result, new_cookie)
        except Exception:
            log.exception("console: internal error on %s %s (request id %s)", req.method,
                          req.path, rid)
            return self._finish(req, self._error_page(req, None, 500, rid), new_cookie)
        finally:
            request_id.reset(token)

    def _match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        allowed = None
        for rt in self.routes:
            m = rt.pattern.match(path)
            if m is None:
                continue
            if rt.method != method and not (rt.method == "GET" and method == "HEAD"):
                allowed = rt.method
                continue
            return rt, m.groupdict()
        if allowed is not None:
            raise MethodNotAllowedError(f"{path} accepts {allowed} only; resend as {allowed}.")
        return None

    def _who(self, req: ConsoleRequest) -> str:
        ident = req.identity
        return "" if ident is None else str(getattr(ident, "subject", ident))

    def _error_page(self, req: ConsoleRequest, exc: Exception | None, status: int,
                    rid: str | None = None) -> Page:
        if isinstance(exc, csrf_mod.CsrfError):
            status = 403
        message = str(exc) if exc is not None else (
            f"internal error; the server log has the details under request id {rid}.")
        return Page("error.html", {"error": message, "status": status}, "Error", status)

    # ---- rendering --------------------------------------------------------------------------
    def _finish(self, req: ConsoleRequest, result: Page | Redirect | Response,
                new_cookie: str | None) -> Response:
        if isinstance(result, Response):
            return result
        if isinstance(result, Redirect):
            if req.wants_json:
                return Response(200, to_json({"location": req.url(result.location)}),
                                "application/json")
            return Response(303, b"", "text/plain", [("location", req.url(result.location))])
        if req.wants_json:
            return Response(result.status, to_json(result.data), "application/json")
        html = self.render(req, result)
        resp = Response(result.status, html.encode(), "text/html; charset=utf-8")
        if new_cookie is not None:
            secure = "; Secure" if req.scheme == "https" else ""
            resp.headers.append(("set-cookie", f"{csrf_mod.COOKIE}={new_cookie}; Path="
                                 f"{req.base or '/'}; HttpOnly; SameSite=Strict{secure}"))
        return resp

    def render(self, req: ConsoleRequest, page: Page) -> str:
        template = self.env.get_template(page.template)
        cookie = req.cookies.get(csrf_mod.COOKIE, "")
        return template.render(
            page=page.data, title=page.title, crumbs=page.crumbs, req=req, base=req.base,
            csrf_field=csrf_mod.FIELD, csrf_token=self.csrf.token_for(cookie, self._who(req)),
            project=self.services.project, status=page.status,
            who=self._who(req), auth_on=self.services.guard is not None,
        )


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise InvalidRequestError("the client went away while sending the form.")
        chunk: bytes = msg.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise InvalidRequestError(f"the form is longer than {limit} bytes; send less.")
        chunks.append(chunk)
        if not msg.get("more_body", False):
            return b"".join(chunks)


async def _send(send: Send, resp: Response, rid: str) -> None:
    headers = [(b"content-type", resp.content_type.encode()),
               (b"content-length", str(len(resp.body)).encode()),
               (b"x-request-id", rid.encode("latin-1"))]
    headers += [(k.encode(), v.encode("latin-1")) for k, v in SECURITY_HEADERS
                if not any(h[0] == k for h in resp.headers)]
    headers += [(k.encode(), v.encode("latin-1")) for k, v in resp.headers]
    await send({"type": "http.response.start", "status": resp.status, "headers": headers})
    await send({"type": "http.response.body", "body": resp.body})


async def _send_stream(send: Send, receive: Receive, stream: Stream, rid: str) -> None:
    """Send ``stream`` until it ends or the client goes away (watched on ``receive``)."""
    headers = [(b"content-type", stream.content_type.encode()),
               (b"cache-control", b"no-store"), (b"x-accel-buffering", b"no"),
               (b"x-request-id", rid.encode("latin-1"))]
    headers += [(k.encode(), v.encode("latin-1")) for k, v in stream.headers]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    gone = asyncio.Event()

    async def watch() -> None:
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                gone.set()
                return

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        async for chunk in stream.body:
            if gone.is_set():
                break
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if not gone.is_set():
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        watcher.cancel()
        aclose = getattr(stream.body, "aclose", None)
        if aclose is not None:
            await aclose()
