"""A lean pooled HTTP/1.1 client for the transformer's hot hops (predictor, feature server).

Why not httpx: on this 2-core machine an ``httpx.AsyncClient`` round trip to a local server
costs ~1.7 ms, most of it client overhead (anyio, h11, per-request objects); this client —
persistent keep-alive connections on asyncio streams, one ``write`` per request, the
response parsed by ``httptools`` (the C parser uvicorn uses) — costs a fraction of that, and
the transformer makes one or two such hops per request. It speaks just what those hops
need: POST/GET with a body, Content-Length or chunked responses, keep-alive, a per-request
timeout, and one transparent retry when a pooled connection turned out to be closed.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httptools


class PoolConnectError(ConnectionError):
    """The server could not be reached (refused, reset, closed mid-response)."""


class PoolTimeoutError(TimeoutError):
    """The server did not answer within the timeout."""


@dataclass
class PoolResponse:
    status: int
    headers: dict[str, str]
    content: bytes


@dataclass
class _Reader:
    headers: dict[str, str] = field(default_factory=dict)
    body: list[bytes] = field(default_factory=list)
    done: bool = False
    keep_alive: bool = False
    parser: httptools.HttpResponseParser | None = None

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        # read here: the parser resets its keep-alive flag once the message is complete
        if self.parser is not None:
            self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True


_Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


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
        self._idle: list[_Conn] = []
        self._sem: asyncio.Semaphore | None = None
        self._closed = False

    async def _open(self) -> _Conn:
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            raise PoolConnectError(f"ConnectError: {exc}") from None
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return reader, writer

    async def request(self, method: str, path: str, body: bytes = b"",
                      headers: dict[str, str] | None = None) -> PoolResponse:
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.max_connections)
        head = [f"{method} {self.prefix}{path} HTTP/1.1".encode(), b"Host: " + self._host_header,
                b"Content-Length: " + str(len(body)).encode()]
        head += [f"{k}: {v}".encode("latin-1") for k, v in (headers or {}).items()]
        raw = b"\r\n".join(head) + b"\r\n\r\n" + body
        async with self._sem:
            for attempt in (0, 1):
                reused = bool(self._idle)
                conn = self._idle.pop() if reused else await self._open()
                try:
                    resp, keep = await asyncio.wait_for(self._roundtrip(conn, raw), self.timeout)
                except TimeoutError:
                    conn[1].close()
                    raise PoolTimeoutError(
                        f"ReadTimeout: no answer within {self.timeout:g} s") from None
                except (OSError, asyncio.IncompleteReadError, httptools.HttpParserError) as exc:
                    conn[1].close()
                    if reused and attempt == 0:  # a stale keep-alive connection: retry once
                        continue
                    raise PoolConnectError(f"{type(exc).__name__}: {exc}") from None
                if keep and not self._closed:
                    self._idle.append(conn)
                else:
                    conn[1].close()
                return resp
        raise PoolConnectError("unreachable")  # pragma: no cover - the loop returns or raises

    async def _roundtrip(self, conn: _Conn, raw: bytes) -> tuple[PoolResponse, bool]:
        reader, writer = conn
        writer.write(raw)
        if writer.transport.get_write_buffer_size() > 65536:
            await writer.drain()
        state = _Reader()
        parser = state.parser = httptools.HttpResponseParser(state)
        while not state.done:
            data = await reader.read(65536)
            if not data:
                raise ConnectionResetError("the server closed the connection")
            parser.feed_data(data)
        body = state.body[0] if len(state.body) == 1 else b"".join(state.body)
        return PoolResponse(parser.get_status_code(), state.headers, body), state.keep_alive

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()
