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


Serve = Callable[..., Awaitable[tuple[RawServer, int]]]


async def test_a_smuggled_second_response_never_reaches_the_next_caller(serve: Serve) -> None:
    """Issue 11 critical 2: one request answered twice (a smuggled request) left the pooled
    connection one response behind; each next caller got the previous caller's answer."""
    seen: list[bytes] = []

    async def answer_twice(req: bytes) -> tuple[bytes, bool]:
        body = req.split(b"\r\n\r\n", 1)[1]
        seen.append(body)
        if body == b"first":
            return ok(b"for-first") + ok(b"for-nobody"), True
        return ok(b"for-" + body), True

    _, port = await serve(answer_twice)
    pool = HttpPool(f"http://127.0.0.1:{port}")
    assert (await pool.request("POST", "/", b"first")).content == b"for-first"
    for name in (b"second", b"third"):
        assert (await pool.request("POST", "/", name)).content == b"for-" + name
    await pool.close()


async def test_data_on_an_idle_connection_retires_it(serve: Serve) -> None:
    async def late_extra(req: bytes) -> tuple[bytes, bool]:
        body = req.split(b"\r\n\r\n", 1)[1]
        return ok(b"for-" + body), True

    server, port = await serve(late_extra)
    pool = HttpPool(f"http://127.0.0.1:{port}")
    assert (await pool.request("POST", "/", b"a")).content == b"for-a"
    conn = pool._idle[0]
    assert conn.transport is not None
    conn.data_received(ok(b"stale"))  # what a late second response looks like to the pool
    assert (await pool.request("POST", "/", b"b")).content == b"for-b"
    assert server.connections == 2
    await pool.close()


async def test_a_post_is_not_sent_again_after_a_partial_response(serve: Serve) -> None:
    requests: list[bytes] = []

    class Partial(RawServer):
        async def _handle(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            while True:
                try:
                    req = await _read_request(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                requests.append(req)
                if len(requests) == 1:
                    writer.write(ok(b"fine"))
                    await writer.drain()
                    continue
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\npart")
                await writer.drain()
                break
            writer.close()

    server = Partial(lambda req: None)  # type: ignore[arg-type,return-value]
    port = await server.start()
    pool = HttpPool(f"http://127.0.0.1:{port}")
    await pool.request("POST", "/", b"one")
    with pytest.raises(PoolConnectError):
        await pool.request("POST", "/", b"charge-the-card")
    await asyncio.sleep(0.05)
    assert sum(r.endswith(b"charge-the-card") for r in requests) == 1
    await pool.close()
    assert server.server is not None
    server.server.close()


@pytest.mark.parametrize("headers", [
    {"x-request-id": "a\r\nPOST /v2/repository/models/m/unload HTTP/1.1"},
    {"authorization": "Bearer x\nfoo: bar"}, {"bad name": "v"}, {"x": "nul\x00"},
])
async def test_invalid_header_fields_are_never_written(serve: Serve,
                                                       headers: dict[str, str]) -> None:
    async def echo(req: bytes) -> tuple[bytes, bool]:
        return ok(b""), True

    server, port = await serve(echo)
    pool = HttpPool(f"http://127.0.0.1:{port}")
    with pytest.raises(ValueError, match="header"):
        await pool.request("POST", "/", b"", headers)
    with pytest.raises(ValueError, match="request target"):
        await pool.request("POST", "/v1/models/a b:predict", b"")
    assert server.connections == 0
    await pool.close()


async def test_connecting_counts_against_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """A host that never completes the TCP handshake cannot be made on loopback; stand in for
    it with a connect that never returns."""
    pool = HttpPool("http://127.0.0.1:9", timeout=0.2)

    async def never() -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(pool, "_open", never)
    loop = asyncio.get_running_loop()
    t = loop.time()
    with pytest.raises(PoolTimeoutError):
        await pool.request("POST", "/", b"")
    assert loop.time() - t < 2.0
