"""A lean pooled HTTP/1.1 client for the transformer's hot hops (predictor, feature server).

Why not httpx: on this 2-core machine an ``httpx.AsyncClient`` round trip to a local server
costs ~1.7 ms, most of it client overhead (anyio, h11, per-request objects); this client —
persistent keep-alive connections as asyncio protocols, one ``write`` per request, the
response parsed by ``httptools`` (the C parser uvicorn uses) — costs a fraction of that, and
the transformer makes one or two such hops per request. It speaks just what those hops
need: POST/GET with a body, Content-Length or chunked responses, keep-alive, a timeout that
covers connecting too.

It cannot be desynchronized: a connection carries one request at a time, and any byte that
is not part of the answer to the request in flight — a second response, data on an idle
connection, bytes after the end of the response — retires the connection, so no later
request can read another one's answer. A request is re-sent on a fresh connection only
when a reused connection failed before any byte of the response arrived (the server had
closed it while idle); never after part of a response. Header names and values and the
request target are checked before anything is written (RFC 9110 field syntax): nothing
with CR, LF or NUL reaches the wire.
"""

from __future__ import annotations

import asyncio
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

from tureen.serving.fields import check_field


class PoolConnectError(ConnectionError):
    """The server could not be reached (refused, reset, closed mid-response)."""


class PoolTimeoutError(TimeoutError):
    """The server did not answer within the timeout."""


@dataclass
class PoolResponse:
    status: int
    headers: dict[str, str]
    content: bytes


_TARGET = re.compile(r"/[!-~]*")
_UNSOLICITED = "the server sent data no request asked for"


class _UnansweredError(ConnectionError):
    """The connection ended before any byte of the response: safe to send again."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[PoolResponse] | None = None
        self.usable = True
        self.received = 0
        self.complete = False
        self.keep_alive = False
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done() or self.complete:
            self._retire(ConnectionError(_UNSOLICITED))
            return
        self.received += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._retire(ConnectionError(f"malformed response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        self.transport = None
        if self.waiter is not None and not self.waiter.done():
            err = _UnansweredError if self.received == 0 else ConnectionResetError
            self.waiter.set_exception(err("the server closed the connection"))

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self.complete:  # a second response to one request: desync
            self._retire(ConnectionError(_UNSOLICITED))

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        # read here: the parser resets its keep-alive flag once the message is complete
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:  # an interim response: the answer follows
            self.headers, self.body = {}, []
            return
        self.complete = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
            waiter.set_result(PoolResponse(status, self.headers, body))

    # requests

    async def send(self, raw: bytes) -> tuple[PoolResponse, bool]:
        """Write ``raw`` and wait for its response; (response, may the connection be reused)."""
        assert self.transport is not None and self.usable
        self.waiter = asyncio.get_running_loop().create_future()
        self.received, self.complete, self.headers, self.body = 0, False, {}, []
        self.parser = httptools.HttpResponseParser(self)
        self.transport.write(raw)
        try:
            resp = await self.waiter
        finally:
            self.waiter = None
        reuse = self.keep_alive and self.usable and self.transport is not None
        return resp, reuse

    def _retire(self, exc: Exception) -> None:
        self.usable = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self.usable = False
        if self.transport is not None:
            self.transport.close()


class HttpPool:
    def __init__(self, base_url: str, max_connections: int = 100, timeout: float = 10.0) -> None:
        if "://" not in base_url:
            base_url = "http://" + base_url
        parts = urlsplit(base_url)
        if parts.scheme != "http":
            raise ValueError(f"only http:// URLs are supported, got {base_url!r}")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self.max_connections = max_connections
        self._host_header = f"{self.host}:{self.port}".encode()
        self._idle: list[_Connection] = []
        self._sem: asyncio.Semaphore | None = None
        self._closed = False

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(_Connection, self.host, self.port)
        except OSError as exc:
            raise PoolConnectError(f"ConnectError: {exc}") from None
        return conn

    def _encode(self, method: str, path: str, body: bytes,
                headers: dict[str, str] | None) -> bytes:
        target = f"{self.prefix}{path}"
        if not method.isalpha() or not _TARGET.fullmatch(target):
            raise ValueError(f"refusing to send {method} {target[:80]!r}: the method or request "
                             "target has characters HTTP does not allow there")
        head = [f"{method} {target} HTTP/1.1".encode(), b"Host: " + self._host_header,
                b"Content-Length: " + str(len(body)).encode()]
        for k, v in (headers or {}).items():
            check_field(k, v)
            head.append(f"{k}: {v}".encode("latin-1"))
        return b"\r\n".join(head) + b"\r\n\r\n" + body

    async def request(self, method: str, path: str, body: bytes = b"",
                      headers: dict[str, str] | None = None) -> PoolResponse:
        raw = self._encode(method, path, body, headers)
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.max_connections)
        async with self._sem:
            try:  # wait_for, not asyncio.timeout: callers may run eagerly, outside a Task
                return await asyncio.wait_for(self._exchange(raw), self.timeout)
            except TimeoutError:
                raise PoolTimeoutError(
                    f"ReadTimeout: no answer within {self.timeout:g} s") from None

    async def _exchange(self, raw: bytes) -> PoolResponse:
        while True:
            conn = self._idle_connection()
            reused = conn is not None
            if conn is None:
                conn = await self._open()
            try:
                resp, reuse = await conn.send(raw)
            except _UnansweredError as exc:
                conn.close()
                if reused:  # closed while idle, before it saw this request: send it again
                    continue
                raise PoolConnectError(f"{type(exc).__name__}: {exc}") from None
            except (OSError, ConnectionError) as exc:
                conn.close()
                raise PoolConnectError(f"{type(exc).__name__}: {exc}") from None
            except BaseException:  # timeout or cancellation mid-request: never reuse it
                conn.close()
                raise
            if reuse and not self._closed:
                self._idle.append(conn)
            else:
                conn.close()
            return resp

    def _idle_connection(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if conn.usable and conn.transport is not None:
                return conn
        return None

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
