"""One HTTP/1.1 connection (RFC 9112): httptools parses, requests are answered in order.

Requests queue per connection (pipelining); only the head of the queue runs. A native
request runs once its whole body is in, through ``start_eager`` — when its handler never
suspends, the response is written inside ``data_received`` with no Task. Anything else runs
as an ASGI cycle (``asgi.Cycle``) that streams the body. Limit violations and malformed
input queue a canned error response after the requests before them, then close.

A request head must arrive within ``head_timeout`` and its body within ``body_timeout``
(408 and close, however slowly the bytes trickle in); an HTTP/1.1 request needs exactly one
``Host``; ``Expect: 100-continue`` is honoured for HTTP/1.1 only. A body is kept in one
bytearray, so tiny chunks cost their bytes, not an object each.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import httptools

from tureen.serving.context import peer_certificate
from tureen.transports.eager import start_eager
from tureen.transports.http1 import response
from tureen.transports.http1.asgi import Cycle
from tureen.transports.http1.native import NativeHandler, RendersErrors, Reply

if TYPE_CHECKING:
    from tureen.transports.http1.server import ServerState

log = logging.getLogger(__name__)

MAX_QUEUE = 32  # pipelined requests buffered before reading pauses
HIGH_WATER = 256 * 1024  # unconsumed ASGI body bytes before reading pauses
SMALL_BODY = 64 * 1024  # bodies up to this size are joined with the head into one write


class Request:
    __slots__ = (
        "body",
        "buffered",
        "canned",
        "complete",
        "continued",
        "cycle",
        "expect",
        "handler",
        "headers",
        "is_head",
        "keep_alive",
        "method",
        "path",
        "query",
        "raw_headers",
        "raw_path",
        "running",
        "size",
        "version",
    )

    def __init__(self) -> None:
        self.method = "GET"
        self.path = "/"
        self.raw_path = b"/"
        self.query = b""
        self.version = "1.1"
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.headers: dict[str, str] = {}
        self.keep_alive = True
        self.handler: NativeHandler | None = None
        self.body = bytearray()
        self.size = 0  # body bytes received
        self.buffered = 0  # body bytes not yet handed to the app
        self.complete = False
        self.running = False
        self.is_head = False
        self.expect = False
        self.continued = False
        self.canned: bytes | None = None
        self.cycle: Cycle | None = None


class Connection(asyncio.Protocol):
    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.loop = state.loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.queue: deque[Request] = deque()
        self.parsing: Request | None = None
        self.url = b""
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0  # raw bytes of an unfinished head (a head that never ends)
        self.head_size = 0  # request line and header bytes of the current head
        self.in_head = False
        self.began = False  # a message began during the current read
        self.closed = False
        self.stopped = False  # a fatal response is queued: parser output is ignored
        self.discarding = False  # fatal response sent; reading on until the client goes
        self.read_paused = False
        self.write_paused = False
        self.unsent = 0  # answer bytes in the transport's buffer at the last check
        self.stalled_since = 0.0  # since when they have not gone down (a client not reading)
        self.advancing = False
        self.idle_ticks = 0
        self.head_since = state.loop.time()  # when the head being read began
        self.body_since = 0.0  # when the body being read began
        self.waiters: list[asyncio.Future[None]] = []
        self.tasks: set[asyncio.Task[Any]] = set()
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int] | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if len(self.state.connections) >= self.state.max_connections:
            self.state.refusals.warning(
                "refusing an HTTP connection: %d are open (the limit)", len(self.state.connections)
            )
            self.closed = True
            self.transport.write(
                response.error_response(
                    503, "this server has its limit of connections open; retry shortly."
                )
            )
            transport.close()
            return
        self.state.connections.add(self)
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        self.server = (str(sock[0]), int(sock[1])) if isinstance(sock, tuple) else None
        #: the client's verified certificate on a TLS connection that asked for one
        self.peercert = transport.get_extra_info("peercert") or None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.state.connections.discard(self)
        for req in self.queue:
            if req.cycle is not None:
                req.cycle.disconnected()
        self._wake_writers()

    def data_received(self, data: bytes) -> None:
        self.idle_ticks = 0
        if self.discarding or self.stopped:
            return
        if not self.in_head and self.parsing is None:
            self.head_since = self.loop.time()  # the first bytes of a new head
        self.began = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # served as a plain request; the bytes after it are another protocol: stop there
            if self.queue:
                self.queue[-1].keep_alive = False
            self.stopped = True
        except httptools.HttpParserError as exc:
            self._fatal(
                400,
                f"malformed HTTP/1.1 request ({exc}); fix the client's request "
                "line, headers or chunked framing.",
            )
        else:
            # an unfinished head that began before this read: all of ``data`` belongs to it
            if self.in_head and not self.began:
                self.head_bytes += len(data)
                if self.head_bytes > self.state.max_header_bytes:
                    self._header_too_large()
        if (
            self.read_paused
            or self.write_paused
            or self.parsing is not None
            or len(self.queue) > MAX_QUEUE
        ):
            self.update_reading()  # else reading goes on as it is

    def pause_writing(self) -> None:
        self.write_paused = True
        self.unsent, self.stalled_since = 0, self.loop.time()
        self.update_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_writers()
        self.update_reading()
        self._advance()

    def eof_received(self) -> bool | None:
        return None  # the transport closes; connection_lost tells running cycles

    # parser callbacks

    def on_message_begin(self) -> None:
        self.url = b""
        self.raw_headers = []
        self.head_bytes = 0
        self.head_size = 0
        self.in_head = True
        self.began = True

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value) + 4
        if self.head_size > self.state.max_header_bytes:
            self._header_too_large()
            return
        self.raw_headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        if self.stopped:
            return
        req = Request()
        parser = self.parser
        req.method = method = parser.get_method().decode("ascii")
        req.version = parser.get_http_version()
        req.keep_alive = parser.should_keep_alive()
        req.is_head = method == "HEAD"
        req.raw_headers = self.raw_headers
        req.headers = headers = {
            k.decode("latin-1"): v.decode("latin-1") for k, v in self.raw_headers
        }
        url = self.url
        if url[:1] != b"/":  # absolute-form or asterisk-form (RFC 9112 §3.2)
            parsed = httptools.parse_url(url)
            url = (parsed.path or b"/") + (b"?" + parsed.query if parsed.query else b"")
        q = url.find(b"?")
        raw_path, req.query = (url, b"") if q < 0 else (url[:q], url[q + 1 :])
        req.raw_path = raw_path
        path = raw_path.decode("latin-1")
        req.path = path = unquote(path) if "%" in path else path
        resolver = self.state.resolver
        req.handler = resolver.resolve(method, path, req.query) if resolver is not None else None
        if req.handler is None and self.state.app is None:
            req.handler = self.state.not_found
        raw = self.raw_headers  # exactly one Host (counted only when some name repeats)
        if req.version == "1.1" and (
            "host" not in headers
            or (len(headers) != len(raw) and sum(k == b"host" for k, _ in raw) != 1)
        ):
            self._fatal(400, "an HTTP/1.1 request needs exactly one Host header; add it.")
            return
        req.expect = req.version == "1.1" and headers.get("expect", "").lower() == "100-continue"
        self.body_since = self.loop.time()
        cl = headers.get("content-length")
        if cl is not None and cl.isdigit() and int(cl) > self.state.max_body_bytes:
            req.canned = self._too_large(int(cl), headers)
            self.stopped = True
        self.parsing = req
        self.queue.append(req)
        if req.handler is None or req.canned is not None or req.expect or self.queue[0] is not req:
            self._advance()  # else nothing to do before the body is in

    def on_body(self, body: bytes) -> None:
        req = self.parsing
        if req is None or self.stopped:
            return
        req.size += len(body)
        if req.size > self.state.max_body_bytes:
            req.canned = self._too_large(req.size, req.headers)
            self.stopped = True
            req.body.clear()
            if req.cycle is not None:
                req.cycle.disconnected()  # the cycle sends the 413 when it ends
            else:
                self._advance()
            return
        req.body += body
        req.buffered += len(body)
        if req.cycle is not None:
            req.cycle.wake()

    def on_message_complete(self) -> None:
        req = self.parsing
        if req is None or self.stopped:
            return
        self.parsing = None
        req.complete = True
        if req.cycle is not None:
            req.cycle.wake()
        elif req is self.queue[0]:
            self._advance()

    # running requests in order

    def _advance(self) -> None:
        if self.advancing:
            return
        self.advancing = True
        try:
            while self.queue and not self.closed and not self.write_paused:
                req = self.queue[0]
                if req.running:
                    return
                if req.canned is not None:
                    self.send_fatal(req.canned)
                    return
                if req.expect and not req.continued and not req.complete:
                    req.continued = True
                    self.transport.write(response.CONTINUE)
                if req.handler is None:
                    req.running = True
                    req.cycle = Cycle(self, req)
                    task = self.loop.create_task(req.cycle.run())
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
                    return
                if not req.complete:
                    return
                req.running = True
                self._run_native(req, req.handler)
        finally:
            self.advancing = False

    def _run_native(self, req: Request, handler: NativeHandler) -> None:
        data = req.body
        req.body = bytearray()
        done = functools.partial(self._native_done, req)
        try:
            coro = handler(req.headers, data)
        except Exception as exc:
            done(None, exc)
            return
        if self.peercert is None:
            task = start_eager(coro, done, self.loop)  # type: ignore[arg-type]
        else:  # the handler (and a task it becomes) sees the certificate
            token = peer_certificate.set(self.peercert)
            try:
                task = start_eager(coro, done, self.loop)  # type: ignore[arg-type]
            finally:
                peer_certificate.reset(token)
        if task is not None:
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _native_done(self, req: Request, reply: Reply | None, exc: BaseException | None) -> None:
        if self.closed:
            return  # the client left: drop the result
        if exc is not None or reply is None:
            if isinstance(exc, asyncio.CancelledError):
                return
            log.error("native handler for %s %s failed", req.method, req.path, exc_info=exc)
            reply = (
                500,
                b'{"error":"internal server error; see the server log."}',
                b"application/json",
                [],
            )
        try:
            self._write_reply(req, reply)
        except ValueError as exc:  # an invalid header from the handler: never sent
            log.error("reply to %s %s not sent: %s", req.method, req.path, exc)
            self.transport.write(
                response.error_response(500, "internal server error; see the server log.")
            )
            self.finish(req, True)

    def _write_reply(self, req: Request, reply: Reply) -> None:
        status, body, ctype, extra = reply
        close = not req.keep_alive or self.state.draining
        write = self.transport.write
        if status in (204, 304):  # no body, and (204) no length (RFC 9110 §8.6, §15.3.5)
            write(response.head(status, None, -1 if status == 204 else len(body), extra, close))
            self.finish(req, close)
            return
        if isinstance(body, bytes):
            h = response.head(status, ctype, len(body), extra, close)
            if req.is_head or not body:
                write(h)
            elif len(body) <= SMALL_BODY:
                write(h + body)
            else:
                write(h)
                write(body)
        else:
            h = response.head(status, ctype, sum(len(p) for p in body), extra, close)
            if req.is_head:
                write(h)
            else:
                self.transport.writelines([h, *body])
        self.finish(req, close)

    def finish(self, req: Request, close: bool) -> None:
        """``req`` (the head of the queue) is answered; go on with the next or close."""
        if self.queue and self.queue[0] is req:
            self.queue.popleft()
        if close or self.closed:
            self.close()
            return
        if self.read_paused:
            self.update_reading()
        if self.queue:
            self._advance()

    # limits, errors, flow control

    def _too_large(self, size: int, headers: dict[str, str]) -> bytes:
        limit = self.state.max_body_bytes
        message = (
            f"request body of {size} bytes exceeds the server limit of {limit} bytes; "
            f"{self.state.body_limit_advice}."
        )
        renderer = self.state.resolver
        if isinstance(renderer, RendersErrors):
            return response.closing_response(*renderer.error_reply(headers, 413, message))
        return response.error_response(413, message)

    def _header_too_large(self) -> None:
        self._fatal(
            431,
            f"request line and headers exceed {self.state.max_header_bytes} "
            "bytes; send fewer or smaller headers (or a shorter URL).",
        )

    def _fatal(self, status: int, message: str) -> None:
        if self.stopped:
            return
        self.stopped = True
        canned = response.error_response(status, message)
        req = self.parsing
        if req is not None:  # the request whose body broke is answered with the error
            req.canned = canned
            req.body.clear()
            if req.cycle is not None:
                req.cycle.disconnected()
                return
        else:
            req = Request()
            req.canned = canned
            self.queue.append(req)
        self._advance()

    def send_fatal(self, data: bytes) -> None:
        """Answer with ``data`` and close; unread input is drained (not reset) first so the
        client sees the response instead of a connection reset."""
        self.queue.clear()
        self.transport.write(data)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.discarding = True
        self.idle_ticks = 0
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()

    def update_reading(self) -> None:
        if self.closed or self.discarding:
            return
        parsing = self.parsing
        pause = (
            self.write_paused
            or len(self.queue) > MAX_QUEUE
            or (parsing is not None and parsing.cycle is not None and parsing.buffered > HIGH_WATER)
        )
        if pause and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()
        elif not pause and self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()

    def _wake_writers(self) -> None:
        waiters, self.waiters = self.waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def drain(self) -> None:
        """Wait while the transport's write buffer is above its high-water mark."""
        if self.write_paused and not self.closed:
            fut = self.loop.create_future()
            self.waiters.append(fut)
            await fut

    # lifecycle (driven by the server)

    @property
    def idle(self) -> bool:
        """Nothing to answer (a partly received request head has nothing to lose)."""
        return not self.queue

    def sweep(self, timeout_ticks: int, now: float) -> None:
        """Once a second: close a connection idle for ``timeout_ticks`` sweeps, one that is
        only draining the input after a fatal response, and one whose request head or body
        is late (408)."""
        if self.write_paused:  # the client is not reading its answer: is it still moving?
            unsent = self.transport.get_write_buffer_size()
            if unsent < self.unsent or not self.unsent:
                self.unsent, self.stalled_since = unsent, now
            elif now - self.stalled_since > self.state.body_timeout:
                self.abort()  # close() would wait for the buffer to drain: forever
                return
        if self.discarding or not self.queue:
            self.idle_ticks += 1
            if self.idle_ticks >= (1 if self.discarding else timeout_ticks):
                self.close()
                return
        state = self.state
        if self.in_head and now - self.head_since > state.head_timeout:
            self._late(f"the request head did not arrive within {state.head_timeout:g} s")
        elif (
            self.parsing is not None
            and not self.parsing.complete
            and now - self.body_since > state.body_timeout
        ):
            self._late(f"the request body did not arrive within {state.body_timeout:g} s")

    def _late(self, what: str) -> None:
        req = self.parsing
        if self.stopped or (req is not None and (req.running or req.cycle is not None)):
            self.close()  # its answer may have started: all that is left is to hang up
            return
        self._fatal(408, f"{what}; send requests at once.")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()
            for req in self.queue:
                if req.cycle is not None:
                    req.cycle.disconnected()

    def abort(self) -> None:
        self.close()
        self.transport.abort()
        for task in list(self.tasks):
            task.cancel()
