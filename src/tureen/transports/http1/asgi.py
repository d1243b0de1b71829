"""The ASGI side (spec 3.0, HTTP 2.4 and lifespan): one ``Cycle`` per request not claimed
by the native resolver, and ``Lifespan`` for the app's startup/shutdown hooks.

What the app sends is checked before it reaches the wire: header names and values must be
valid HTTP fields (no CR/LF: a 500 instead), a body must match the app's Content-Length
(more is refused; less ends the connection), 1xx/204/304 responses and HEAD answers carry
no body, and an HTTP/1.0 client never gets chunked framing (the body ends with the
connection instead)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from tureen.transports.http1 import response

if TYPE_CHECKING:
    from tureen.transports.http1.protocol import Connection, Request

log = logging.getLogger(__name__)

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

_ASGI = {"version": "3.0", "spec_version": "2.4"}
_DISCONNECT: Message = {"type": "http.disconnect"}


class Cycle:
    """One request/response exchange with the ASGI app."""

    def __init__(self, conn: Connection, req: Request) -> None:
        self.conn = conn
        self.req = req
        self.gone = False
        self.started = False
        self.done = False
        self.chunked = False
        self.no_body = False
        self.length: int | None = None  # the app's Content-Length
        self.sent = 0  # body bytes written
        self.close = not req.keep_alive
        self.status = 200
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_sent = False
        self.body_handed = False  # the last http.request message went to the app
        self.waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def disconnected(self) -> None:
        self.gone = True
        self.wake()

    async def run(self) -> None:
        conn, req = self.conn, self.req
        state = conn.state
        assert state.app is not None
        scope: dict[str, Any] = {
            "type": "http", "asgi": _ASGI, "http_version": req.version, "scheme": "http",
            "method": req.method, "path": req.path, "raw_path": req.raw_path,
            "query_string": req.query, "root_path": "", "headers": req.raw_headers,
            "client": conn.client, "server": conn.server, "state": dict(state.lifespan_state),
        }
        try:
            await state.app(scope, self.receive, self.send)
        except Exception:
            log.exception("ASGI app failed on %s %s", req.method, req.path)
            if not self.head_sent and not conn.closed:  # nothing on the wire yet: a 500
                self.started = self.head_sent = True
                conn.transport.write(response.error_response(
                    500, "internal server error; see the server log."))
                self.done = True
                self.close = True
        finally:
            self._end()

    def _end(self) -> None:
        conn, req = self.conn, self.req
        if conn.closed:
            return
        if req.canned is not None:  # the body outgrew the limit (or broke) while streaming
            if self.head_sent:
                conn.close()
            else:
                conn.send_fatal(req.canned)
            return
        if not self.done:  # the app returned without a (complete) response
            if self.started:
                conn.close()
                return
            log.error("ASGI app returned without a response for %s %s", req.method, req.path)
            conn.transport.write(response.error_response(
                500, "internal server error: the application sent no response."))
            self.close = True
        conn.finish(req, self.close or not req.complete or conn.state.draining)

    async def receive(self) -> Message:
        req = self.req
        while True:
            if self.gone or self.done or self.conn.closed:
                return _DISCONNECT
            if req.body or req.complete:
                body = bytes(req.body)
                req.body = bytearray()
                req.buffered = 0
                if self.conn.read_paused:
                    self.conn.update_reading()
                more = not req.complete
                if not more and not body and self.body_handed:
                    # the whole body was handed over: wait for the end or a disconnect
                    self.waiter = self.conn.loop.create_future()
                    await self.waiter
                    continue
                self.body_handed = not more
                return {"type": "http.request", "body": body, "more_body": more}
            self.waiter = self.conn.loop.create_future()
            await self.waiter
            self.waiter = None

    async def send(self, message: Message) -> None:
        conn = self.conn
        kind = message["type"]
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            self.started = True
            self.status = int(message["status"])
            self.headers = list(message.get("headers", ()))
            return
        if kind != "http.response.body":
            raise RuntimeError(f"unexpected ASGI message {kind!r}")
        if not self.started or self.done:
            raise RuntimeError("http.response.body sent before start or after the end")
        if self.gone or conn.closed:
            return
        body: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        write = conn.transport.write
        if not self.head_sent:
            head = self._head(len(body), more)
            self.head_sent = True
            write(head)
        self.sent += len(body)
        if self.length is not None and self.sent > self.length:
            self.done = True
            self.close = True
            raise RuntimeError(f"the app sent {self.sent} body bytes after declaring "
                               f"Content-Length {self.length}")
        if self.req.is_head or self.no_body:
            pass
        elif self.chunked:
            if body:
                write(b"%x\r\n" % len(body) + body + b"\r\n")
            if not more:
                write(b"0\r\n\r\n")
        elif body:
            write(body)
        if not more:
            self.done = True
            if self.length is not None and self.sent < self.length and not self.no_body \
                    and not self.req.is_head:
                log.error("the app sent %d of the %d body bytes it declared for %s %s",
                          self.sent, self.length, self.req.method, self.req.path)
                conn.close()  # the client would wait for the rest: end it here
        else:
            await conn.drain()

    def _head(self, first_len: int, more: bool) -> bytes:
        length: int | None = None
        ctype: bytes | None = None
        extra: list[tuple[bytes, bytes]] = []
        for name, value in self.headers:
            n = name.lower()
            if not response.valid_field(n, value):
                raise RuntimeError(f"the app sent an invalid header {n[:40]!r} (control "
                                   "characters or not a token)")
            if n == b"content-length":
                length = int(value)
                self.length = length
            elif n == b"content-type":
                ctype = value
            elif n == b"connection":
                if value.lower() == b"close":
                    self.close = True
            elif n == b"transfer-encoding":
                continue
            else:
                extra.append((n, value))
        if length is None:
            if not more:
                length = first_len
            elif self.req.version == "1.1":
                self.chunked = True
            else:  # HTTP/1.0 has no chunked framing: the body ends with the connection
                length = -1
                self.close = True
        if self.status in (204, 304) or self.status < 200:
            length = -1  # no framing header: these responses have no body (RFC 9110 §8.6)
            self.chunked = False
            self.no_body = True
            self.length = None
        close = self.close or self.conn.state.draining
        return response.head(self.status, ctype, length, extra, close)


class Lifespan:
    """Runs the app's lifespan protocol: ``startup()`` before serving, ``shutdown()`` after.
    An app that raises before answering ``lifespan.startup`` does not speak it (skipped)."""

    def __init__(self, app: ASGIApp, state: dict[str, Any]) -> None:
        self.app = app
        self.state = state
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.answers: asyncio.Queue[Message] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.supported = True

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": _ASGI, "state": self.state}
        try:
            await self.app(scope, self.inbox.get, self._send)
        except Exception:
            if self.supported:
                log.debug("the ASGI app does not support lifespan", exc_info=True)
        finally:
            self.supported = False
            await self.answers.put({"type": "lifespan.unsupported"})

    async def _send(self, message: Message) -> None:
        await self.answers.put(message)

    async def startup(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())
        await self.inbox.put({"type": "lifespan.startup"})
        answer = await self.answers.get()
        if answer["type"] == "lifespan.startup.failed":
            raise RuntimeError(f"application startup failed: {answer.get('message', '')}")

    async def shutdown(self) -> None:
        if self.task is None:
            return
        if self.supported:
            await self.inbox.put({"type": "lifespan.shutdown"})
            answer = await self.answers.get()
            if answer["type"] == "lifespan.shutdown.failed":
                log.error("application shutdown failed: %s", answer.get("message", ""))
        if not self.task.done():
            self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
