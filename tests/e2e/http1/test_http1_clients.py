"""tureen's HTTP/1.1 server under ModelServer, hit by real clients: httpx, http.client and
raw sockets (pipelining, 100-continue, chunked bodies, limits, streaming, drain)."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvloop
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from tureen.serving import Model, ModelServer


class Doubler(Model):
    def load(self) -> bool:
        self.ready = True
        return True

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        return {"predictions": [[2 * v for v in row] for row in payload["instances"]]}


class Sleeper(Model):
    def load(self) -> bool:
        self.ready = True
        return True

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        await asyncio.sleep(float(payload["instances"][0][0]))
        return {"predictions": [1]}


async def stream(request: Request) -> StreamingResponse:
    async def parts() -> AsyncIterator[bytes]:
        for i in range(3):
            yield f"part{i};".encode()

    return StreamingResponse(parts(), media_type="text/plain")


class Served:
    def __init__(self) -> None:
        self.server = ModelServer(0, 0, host="127.0.0.1", enable_grpc=False, grace_seconds=5,
                                  max_request_bytes=1024 * 1024,
                                  extra_routes=[Route("/stream", stream)])
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            await self.server.serve([Doubler("m"), Sleeper("sleepy")],
                                    install_signal_handlers=False)

        uvloop.run(main())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.http_port}"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.server.http_port:
                try:
                    if httpx.get(self.url + "/v2/health/ready").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        raise TimeoutError("server did not start")

    def stop(self) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self.server.stop)
        self.thread.join(30)
        assert not self.thread.is_alive()


@pytest.fixture
def served() -> Iterator[Served]:
    s = Served()
    s.start()
    yield s
    s.stop()


def raw(port: int, data: bytes, until: bytes, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        got = b""
        while got.count(until) < 1:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


def test_httpx_keep_alive_reuses_one_connection(served: Served) -> None:
    with httpx.Client(base_url=served.url) as c:
        for i in range(20):
            r = c.post("/v1/models/m:predict", json={"instances": [[i]]},
                       headers={"x-request-id": f"r{i}"})
            assert r.json() == {"predictions": [[2 * i]]}
            assert r.headers["x-request-id"] == f"r{i}"
        assert c.get("/v1/models/nope/x").status_code == 404
        r = c.get("/v1/models/m:predict")
        assert r.status_code == 405 and r.headers["allow"] == "POST"


def test_http_client_chunked_body_and_head(served: Served) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", served.server.http_port, timeout=10)
    try:
        body = json.dumps({"instances": [[1], [2]]}).encode()
        conn.request("POST", "/v1/models/m:predict", body=iter([body[:5], body[5:]]),
                     headers={"content-type": "application/json"}, encode_chunked=True)
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read()) == {"predictions": [[2], [4]]}
        conn.request("HEAD", "/v2/health/live")
        r = conn.getresponse()
        assert r.status == 200 and r.read() == b""
        assert int(r.headers["content-length"]) > 0
        conn.request("GET", "/v2/health/live")  # same connection still in sync
        assert json.loads(conn.getresponse().read()) == {"live": True}
    finally:
        conn.close()


def test_raw_pipelining_in_order(served: Served) -> None:
    reqs = b"".join(
        b"POST /v1/models/%s:predict HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s"
        % (name, len(body), body)
        for name, body in [(b"sleepy", b'{"instances": [[0.2]]}'),
                           (b"m", b'{"instances": [[5]]}')])
    got = raw(served.server.http_port, reqs + b"GET /v2 HTTP/1.1\r\nhost: t\r\n"
                                              b"connection: close\r\n\r\n",
              b"extensions")
    first, second, third = (got.index(b'{"predictions":[1]}'), got.index(b"[[10]]"),
                            got.index(b"extensions"))
    assert first < second < third


def test_raw_expect_100_continue(served: Served) -> None:
    port = served.server.http_port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        body = b'{"instances": [[3]]}'
        sock.sendall(b"POST /v1/models/m:predict HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\n"
                     b"content-length: %d\r\n\r\n" % len(body))
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        got = b""
        while b"[[6]]" not in got:
            chunk = sock.recv(4096)
            assert chunk
            got += chunk


def test_limits_seen_by_real_clients(served: Served) -> None:
    r = httpx.post(served.url + "/v1/models/m:predict", content=b"x" * (2 * 1024 * 1024),
                   timeout=30)
    assert r.status_code == 413 and "--max_request_mb" in r.json()["error"]
    assert r.headers["x-request-id"]
    got = raw(served.server.http_port,
              b"GET / HTTP/1.1\r\nhost: t\r\nx-big: " + b"a" * 100_000 + b"\r\n\r\n", b"}")
    assert got.startswith(b"HTTP/1.1 431 ")
    got = raw(served.server.http_port, b"GARBAGE\r\n\r\n", b"}")
    assert got.startswith(b"HTTP/1.1 400 ")


def test_asgi_route_streams_chunked(served: Served) -> None:
    with httpx.Client(base_url=served.url) as c, c.stream("GET", "/stream") as r:
        assert r.headers["transfer-encoding"] == "chunked"
        assert b"".join(r.iter_bytes()) == b"part0;part1;part2;"


async def test_drain_finishes_in_flight_requests() -> None:
    served = Served()
    await asyncio.to_thread(served.start)
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as c:
        slow = asyncio.create_task(c.post("/v1/models/sleepy:predict",
                                          json={"instances": [[0.5]]}))
        await asyncio.sleep(0.2)
        await asyncio.to_thread(served.stop)
        r = await slow
    assert r.status_code == 200 and r.headers["connection"] == "close"
    with pytest.raises(httpx.ConnectError):
        httpx.get(served.url + "/")
