"""The transformer's pooled HTTP client against a raw asyncio server whose behaviour each
test controls: keep-alive reuse, chunked bodies, servers closing idle connections, refused
connections and timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tureen.serving.http_pool import HttpPool, PoolConnectError, PoolTimeoutError

Behaviour = Callable[[bytes], Awaitable[tuple[bytes, bool]]]


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + (await reader.readexactly(length) if length else b"")


class RawServer:
    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                req = await _read_request(reader)
                resp, keep = await self.behaviour(req)
                writer.write(resp)
                await writer.drain()
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Behaviour], Awaitable[tuple[RawServer, int]]]]:
    started: list[RawServer] = []

    async def run(behaviour: Behaviour) -> tuple[RawServer, int]:
        s = RawServer(behaviour)
        port = await s.start()
        started.append(s)
        return s, port

    yield run
    for s in started:
        assert s.server is not None
        s.server.close()


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(body)).encode() + b"\r\n" + extra \
        + b"\r\n" + body


async def test_keep_alive_reuses_one_connection(serve: Callable[..., Awaitable[
        tuple[RawServer, int]]]) -> None:
    async def echo(req: bytes) -> tuple[bytes, bool]:
        return ok(req.split(b"\r\n\r\n", 1)[1]), True

    server, port = await serve(echo)
    pool = HttpPool(f"http://127.0.0.1:{port}")
    for i in range(5):
        resp = await pool.request("POST", "/x", f"body-{i}".encode(), {"x-a": "b"})
        assert resp.status == 200 and resp.content == f"body-{i}".encode()
    assert server.connections == 1
    await pool.close()


async def test_chunked_and_split_responses(serve: Callable[..., Awaitable[
        tuple[RawServer, int]]]) -> None:
    async def chunked(req: bytes) -> tuple[bytes, bool]:
        return (b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-Y: z\r\n\r\n"
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), True

    _, port = await serve(chunked)
    pool = HttpPool(f"127.0.0.1:{port}")
    resp = await pool.request("GET", "/")
    assert (resp.status, resp.content, resp.headers["x-y"]) == (201, b"hello world", "z")
    await pool.close()


async def test_server_closing_idle_connections_is_retried_once(serve: Callable[..., Awaitable[
        tuple[RawServer, int]]]) -> None:
    async def close_after(req: bytes) -> tuple[bytes, bool]:
        return ok(b"fine"), False  # answers, then closes without saying so

    server, port = await serve(close_after)
    pool = HttpPool(f"http://127.0.0.1:{port}")
    for _ in range(3):
        assert (await pool.request("POST", "/", b"x")).content == b"fine"
        await asyncio.sleep(0.05)
    assert server.connections == 3
    await pool.close()


async def test_connection_close_header_is_honoured(serve: Callable[..., Awaitable[
        tuple[RawServer, int]]]) -> None:
    async def close(req: bytes) -> tuple[bytes, bool]:
        return ok(b"bye", b"Connection: close\r\n"), False

    server, port = await serve(close)
    pool = HttpPool(f"http://127.0.0.1:{port}")
    await pool.request("POST", "/", b"")
    await pool.request("POST", "/", b"")
    assert server.connections == 2 and not pool._idle
    await pool.close()


async def test_refused_and_timeout(serve: Callable[..., Awaitable[tuple[RawServer, int]]]
                                   ) -> None:
    async def hang(req: bytes) -> tuple[bytes, bool]:
        await asyncio.sleep(5)
        return ok(b""), True

    server, port = await serve(hang)
    pool = HttpPool(f"http://127.0.0.1:{port}", timeout=0.2)
    with pytest.raises(PoolTimeoutError, match="ReadTimeout"):
        await pool.request("POST", "/", b"")
    await pool.close()
    assert server.server is not None
    server.server.close()
    await server.server.wait_closed()
    with pytest.raises(PoolConnectError, match="ConnectError"):
        await HttpPool(f"http://127.0.0.1:{port}").request("POST", "/", b"")
