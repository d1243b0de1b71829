"""REST as a ``Transport``: the REST app on tureen's HTTP/1.1 server or on uvicorn.

Both get the same limits from ``serving.limits``: body size, head and body deadlines
(uvicorn through ``DeadlineProtocol``, its httptools protocol with the two timers added) and
a connection cap (uvicorn: ``limit_concurrency``, 503 beyond it, on connecting).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Generator
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tureen.serving.transport import ServerParts
from tureen.transports.http1 import HTTPServer
from tureen.transports.http1.response import error_response
from tureen.transports.rest.app import RestApp, build_app

log = logging.getLogger(__name__)


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: ModelServer owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class DeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for the request head (from the first
    byte, or the connection, to the end of the headers) and one for the body: a client that
    trickles bytes gets 408 and is closed instead of holding the connection forever."""

    head_timeout = 10.0
    body_timeout = 60.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._write_check: asyncio.TimerHandle | None = None
        self._unsent, self._stalled_since = -1, 0.0
        cap = self.limit_concurrency
        if cap is not None and len(self.connections) > cap:
            # refused at once, as tureen's server does: an idle connection over the cap
            # would hold a file descriptor until its first request. Not counted from now on.
            self.connections.discard(self)
            transport.write(error_response(
                503, "this server has its limit of connections open; retry shortly."))
            transport.close()
            return
        # The cap is enforced here alone. uvicorn's own check at each request counts the
        # connection asking and refused ones not yet closed: it served cap - 1 connections
        # and could refuse every request of a burst. (Requests in flight have their own
        # limit in the guard chain, max_inflight_requests.)
        self.limit_concurrency = None
        self._arm_head()

    def _arm_head(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._late,
                                                    "request head")

    def _cancel(self) -> None:
        for timer in (self._head_timer, self._body_timer, self._write_check):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = self._write_check = None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_head()

    def on_headers_complete(self) -> None:
        if self.parser.get_http_version() == "1.0":
            self.expect_100_continue = False  # RFC 9110 §10.1.1: ignored for HTTP/1.0
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._body_timer = self.loop.call_later(self.body_timeout, self._late, "request body")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)

    # a client that does not read its answer: reset once it stops moving for body_timeout
    # (close() would wait for the buffered answer to drain, holding it for good)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_check is not None:
            self._write_check.cancel()
        self._unsent, self._stalled_since = -1, self.loop.time()
        self._write_check = self.loop.call_later(1.0, self._check_writing)

    def resume_writing(self) -> None:
        if self._write_check is not None:
            self._write_check.cancel()
            self._write_check = None
        super().resume_writing()

    def _check_writing(self) -> None:
        now, unsent = self.loop.time(), self.transport.get_write_buffer_size()
        if self._unsent < 0 or unsent < self._unsent:
            self._unsent, self._stalled_since = unsent, now
        elif now - self._stalled_since > self.body_timeout:
            self._cancel()
            self.transport.abort()
            return
        self._write_check = self.loop.call_later(1.0, self._check_writing)

    def _late(self, what: str) -> None:
        self._cancel()
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or not cycle.response_started:
            limit = self.head_timeout if what == "request head" else self.body_timeout
            body = (b'{"error":"the ' + what.encode() + b" did not arrive within " +
                    f"{limit:g}".encode() + b' s; send requests at once."}')
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: "
                                 b"application/json\r\nconnection: close\r\n"
                                 b"content-length: " + str(len(body)).encode() +
                                 b"\r\n\r\n" + body)
        if cycle is not None:
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()


def deadline_protocol(head_timeout: float, body_timeout: float) -> type[DeadlineProtocol]:
    return type("DeadlineProtocol", (DeadlineProtocol,),
                {"head_timeout": head_timeout, "body_timeout": body_timeout})


class HttpTransport:
    kind = "http"

    def __init__(self, parts: ServerParts) -> None:
        s = parts.settings
        self.parts = parts
        self.implementation = s.http_server
        self.sock = parts.sockets["http"]
        self.port = int(self.sock.getsockname()[1])
        self.app: RestApp = build_app(parts.dataplane, parts.extra_routes,
                                      max_request_bytes=int(s.limits.max_request_bytes),
                                      chain=parts.chain)
        self._native: HTTPServer | None = None
        self._uvicorn: _Uvicorn | None = None
        self._task: asyncio.Task[None] | None = None

    def describe(self) -> str:
        tls = " TLS" if "http" in self.parts.ssl else ""
        return f"http :{self.port} ({self.implementation}{tls})"

    async def start(self) -> None:
        s = self.parts.settings
        if self.implementation == "tureen":
            lim = s.limits
            self._native = HTTPServer(
                self.app, max_body_bytes=int(lim.max_request_bytes),
                max_header_bytes=int(lim.max_header_bytes),
                keep_alive_timeout=lim.keep_alive_seconds,
                body_limit_advice="send smaller batches or raise --max_request_mb",
                head_timeout=lim.head_timeout_seconds, body_timeout=lim.body_timeout_seconds,
                max_connections=lim.max_connections,
            )
            await self._native.start(self.sock, ssl=self.parts.ssl.get("http"))
            return
        lim = s.limits
        config = uvicorn.Config(
            self.app, http=deadline_protocol(lim.head_timeout_seconds, lim.body_timeout_seconds),
            loop="none", lifespan="on", access_log=False, log_level=s.log_level,
            timeout_graceful_shutdown=int(s.grace_seconds), log_config=None,
            timeout_keep_alive=int(lim.keep_alive_seconds),
            limit_concurrency=lim.max_connections,
        )
        config.load()
        config.ssl = self.parts.ssl.get("http")
        server = self._uvicorn = _Uvicorn(config)
        task = self._task = asyncio.get_running_loop().create_task(server.serve([self.sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if task.done():
            task.result()  # raises what stopped it
            raise RuntimeError("uvicorn stopped while starting")
        task.add_done_callback(self._exited)

    def _exited(self, task: asyncio.Task[None]) -> None:
        if self._uvicorn is not None and not self._uvicorn.should_exit:
            log.error("the HTTP server stopped on its own; stopping the server")
            self.parts.stop()

    async def stop(self, drain: float) -> None:
        if self._native is not None:
            await self._native.shutdown(drain)
        if self._uvicorn is not None and self._task is not None:
            self._uvicorn.should_exit = True
            await asyncio.gather(self._task, return_exceptions=True)
        await self.app.aclose()


def http_transport(parts: ServerParts) -> Any:
    return HttpTransport(parts)
