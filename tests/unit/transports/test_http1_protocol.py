"""tureen.transports.http1 driven through a fake transport: bytes in, responses out."""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from typing import Any

import httptools
import pytest

from tureen.transports.http1.asgi import Receive, Send
from tureen.transports.http1.native import Headers, NativeHandler, Reply
from tureen.transports.http1.protocol import Connection
from tureen.transports.http1.server import HTTPServer, ServerState


class FakeTransport(asyncio.Transport):
    def __init__(self, proto: Connection) -> None:
        super().__init__()
        self.proto = proto
        self.out = bytearray()
        self.closed = False
        self.reading = True
        self.eof = False

    def write(self, data: Any) -> None:
        assert not self.closed, "write after close"
        self.out += data

    def writelines(self, parts: Any) -> None:
        for p in parts:
            self.write(p)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().call_soon(self.proto.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(
            name, default)


class Resp:
    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""

    def json(self) -> Any:
        return json.loads(self.body)


def parse(data: bytes, head: bool = False) -> list[Resp]:
    """Split a byte stream into responses (httptools handles lengths and chunking)."""
    out: list[Resp] = []

    class CB:
        def on_message_begin(self) -> None:
            out.append(Resp())

        def on_header(self, name: bytes, value: bytes) -> None:
            out[-1].headers[name.decode().lower()] = value.decode()

        def on_headers_complete(self) -> None:
            out[-1].status = parser.get_status_code()
            return None

        def on_body(self, body: bytes) -> None:
            out[-1].body += body

    parser = httptools.HttpResponseParser(CB())
    parser.feed_data(data)
    return out


async def echo(headers: Headers, body: bytes | bytearray) -> Reply:
    return 200, json.dumps({"len": len(body), "te": headers.get("transfer-encoding")}).encode(), \
        b"application/json", [(b"x-echo", b"1")]


class Resolver:
    def __init__(self) -> None:
        self.gate: asyncio.Future[None] | None = None
        self.calls: list[str] = []

    def resolve(self, method: str, path: str, query: bytes = b"") -> NativeHandler | None:
        if path == "/echo":
            return echo
        if path.startswith("/slow/"):
            return lambda h, b: self._slow(path)
        if path == "/boom":
            return self._boom
        if path == "/parts":
            return self._parts
        return None

    async def _slow(self, path: str) -> Reply:
        self.calls.append(path)
        assert self.gate is not None
        await self.gate
        return 200, path.encode(), b"text/plain", []

    async def _boom(self, headers: Headers, body: bytes | bytearray) -> Reply:
        raise RuntimeError("secret")

    async def _parts(self, headers: Headers, body: bytes | bytearray) -> Reply:
        return 200, [b"ab", memoryview(b"cd")], b"application/octet-stream", []


async def asgi_app(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                scope["state"]["started"] = True
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        for part in (b"one,", b"two,", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/wait-disconnect":
        body = b""
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                DISCONNECTS.append(path)
                return
            body += msg.get("body", b"")
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    data = json.dumps({"path": path, "query": scope["query_string"].decode(), "len": len(body),
                       "state": scope["state"].get("started", False)}).encode()
    await send({"type": "http.response.start", "status": 201,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


DISCONNECTS: list[str] = []


def connect(state: ServerState) -> tuple[Connection, FakeTransport]:
    conn = Connection(state)
    t = FakeTransport(conn)
    conn.connection_made(t)
    return conn, t


def make_state(app: Any = asgi_app, max_body: int = 1000, max_header: int = 2000,
               resolver: Any = None) -> ServerState:
    return ServerState(app, resolver or Resolver(), max_body, max_header,
                       "raise the test limit")


GET = b"GET /echo HTTP/1.1\r\nhost: t\r\n\r\n"


async def test_keep_alive_and_pipelining_answer_in_order() -> None:
    conn, t = connect(make_state())
    post = b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\n\r\nhello"
    conn.data_received(GET + post + GET[:10])  # third one arrives in two pieces
    conn.data_received(GET[10:])
    rs = parse(bytes(t.out))
    assert [r.status for r in rs] == [200, 200, 200]
    assert [r.json()["len"] for r in rs] == [0, 5, 0]
    assert rs[0].headers["x-echo"] == "1" and "connection" not in rs[0].headers
    assert not t.closed


async def test_pipelined_requests_wait_for_a_suspended_one() -> None:
    res = Resolver()
    res.gate = asyncio.get_running_loop().create_future()
    conn, t = connect(make_state(resolver=res))
    conn.data_received(b"GET /slow/1 HTTP/1.1\r\nhost: t\r\n"
                       b"\r\n" + GET + b"GET /slow/2 HTTP/1.1\r\nhost: t\r\n\r\n")
    assert t.out == b"" and res.calls == ["/slow/1"]
    res.gate.set_result(None)
    for _ in range(5):
        await asyncio.sleep(0)
    rs = parse(bytes(t.out))
    assert [r.status for r in rs] == [200, 200, 200]
    assert [r.body[:7] for r in rs] == [b"/slow/1", b'{"len":', b"/slow/2"]


async def test_connection_close_and_http10() -> None:
    conn, t = connect(make_state())
    conn.data_received(b"GET /echo HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n" + GET)
    rs = parse(bytes(t.out))
    assert len(rs) == 1 and rs[0].headers["connection"] == "close" and t.closed
    conn, t = connect(make_state())
    conn.data_received(b"GET /echo HTTP/1.0\r\n\r\n")
    assert parse(bytes(t.out))[0].headers["connection"] == "close" and t.closed
    conn, t = connect(make_state())
    conn.data_received(b"GET /echo HTTP/1.0\r\nconnection: keep-alive\r\n\r\n")
    assert parse(bytes(t.out))[0].status == 200 and not t.closed


async def test_chunked_request_body() -> None:
    conn, t = connect(make_state())
    conn.data_received(b"POST /echo HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n"
                       b"5\r\nhello\r\n")
    assert t.out == b""
    conn.data_received(b"6\r\n world\r\n0\r\n\r\n")
    r = parse(bytes(t.out))[0]
    assert r.json() == {"len": 11, "te": "chunked"}


async def test_expect_100_continue() -> None:
    conn, t = connect(make_state())
    conn.data_received(b"POST /echo HTTP/1.1\r\nhost: t\r\n"
                       b"expect: 100-continue\r\ncontent-length: 3\r\n\r\n")
    assert bytes(t.out) == b"HTTP/1.1 100 Continue\r\n\r\n"
    conn.data_received(b"abc")
    assert parse(bytes(t.out)[25:])[0].json()["len"] == 3


async def test_body_limit_on_content_length_is_413_before_reading() -> None:
    conn, t = connect(make_state(max_body=10))
    conn.data_received(b"POST /echo HTTP/1.1\r\nhost: t\r\n"
                       b"expect: 100-continue\r\ncontent-length: 11\r\n\r\n")
    r = parse(bytes(t.out))[0]
    assert r.status == 413 and b"100 Continue" not in t.out
    assert "11 bytes" in r.json()["error"] and "raise the test limit" in r.json()["error"]
    assert r.headers["connection"] == "close" and t.eof  # then drained, not reset


async def test_body_limit_while_streaming_chunks() -> None:
    conn, t = connect(make_state(max_body=10))
    conn.data_received(b"POST /echo HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n"
                       b"8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n")
    r = parse(bytes(t.out))[0]
    assert r.status == 413 and "limit of 10 bytes" in r.json()["error"]


async def test_streamed_body_over_the_limit_in_asgi_is_413() -> None:
    conn, t = connect(make_state(max_body=10))
    conn.data_received(b"POST /asgi HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n"
                       b"8\r\n12345678\r\n")
    await asyncio.sleep(0)
    conn.data_received(b"8\r\n12345678\r\n0\r\n\r\n")
    for _ in range(5):
        await asyncio.sleep(0)
    assert parse(bytes(t.out))[0].status == 413


async def test_header_limit_is_431() -> None:
    conn, t = connect(make_state(max_header=200))
    conn.data_received(GET + b"GET /echo HTTP/1.1\r\nhost: t\r\nx-big: " + b"a" * 300 + b"\r\n\r\n")
    rs = parse(bytes(t.out))
    assert [r.status for r in rs] == [200, 431]
    assert "headers exceed 200 bytes" in rs[1].json()["error"]


async def test_header_limit_across_reads_of_one_huge_header() -> None:
    conn, t = connect(make_state(max_header=200))
    conn.data_received(b"GET /echo HTTP/1.1\r\nhost: t\r\nx-big: ")
    conn.data_received(b"a" * 300)
    assert parse(bytes(t.out))[0].status == 431


@pytest.mark.parametrize("junk", [b"NOT HTTP\r\n\r\n", b"GET / HTTP/1.1\r\nhost: t\r\n"
                                                       b"bad header\r\n\r\n",
                                  b"POST /echo HTTP/1.1\r\nhost: t\r\n"
                                  b"transfer-encoding: chunked\r\n\r\n"
                                  b"zz\r\n"])
async def test_malformed_request_is_400_and_close(junk: bytes) -> None:
    conn, t = connect(make_state())
    conn.data_received(junk)
    r = parse(bytes(t.out))[0]
    assert r.status == 400 and "malformed" in r.json()["error"]
    assert r.headers["connection"] == "close"


async def test_head_sends_no_body() -> None:
    conn, t = connect(make_state())
    conn.data_received(b"HEAD /echo HTTP/1.1\r\nhost: t\r\n\r\n" + GET)
    raw = bytes(t.out)
    first_end = raw.index(b"\r\n\r\n") + 4
    assert b"content-length: 22" in raw[:first_end]
    assert raw[first_end:].startswith(b"HTTP/1.1 200 OK")


async def test_body_parts_and_handler_errors() -> None:
    conn, t = connect(make_state())
    conn.data_received(b"GET /parts HTTP/1.1\r\nhost: t\r\n"
                       b"\r\nGET /boom HTTP/1.1\r\nhost: t\r\n\r\n")
    rs = parse(bytes(t.out))
    assert rs[0].body == b"abcd" and rs[0].headers["content-length"] == "4"
    assert rs[1].status == 500 and b"secret" not in rs[1].body


async def test_disconnect_drops_a_native_result() -> None:
    res = Resolver()
    res.gate = asyncio.get_running_loop().create_future()
    conn, t = connect(make_state(resolver=res))
    conn.data_received(b"GET /slow/1 HTTP/1.1\r\nhost: t\r\n\r\n")
    conn.connection_lost(None)
    t.closed = True
    res.gate.set_result(None)
    for _ in range(5):
        await asyncio.sleep(0)
    assert t.out == b""  # nothing written to the dead transport, no error


async def test_disconnect_reaches_an_asgi_app() -> None:
    conn, _t = connect(make_state())
    conn.data_received(b"POST /wait-disconnect HTTP/1.1\r\nhost: t\r\n"
                       b"content-length: 10\r\n\r\nabc")
    await asyncio.sleep(0)
    conn.connection_lost(None)
    for _ in range(5):
        await asyncio.sleep(0)
    assert DISCONNECTS[-1] == "/wait-disconnect"


async def test_asgi_fallback_and_streaming_response() -> None:
    conn, t = connect(make_state())
    conn.data_received(b"POST /other%20path?q=1 HTTP/1.1\r\nhost: t\r\ncontent-length: 2\r\n\r\nhi"
                       b"GET /stream HTTP/1.1\r\nhost: t\r\n\r\n" + GET)
    for _ in range(10):
        await asyncio.sleep(0)
    rs = parse(bytes(t.out))
    assert rs[0].status == 201
    assert rs[0].json() == {"path": "/other path", "query": "q=1", "len": 2, "state": False}
    assert rs[1].headers["transfer-encoding"] == "chunked" and rs[1].body == b"one,two,three"
    assert rs[2].status == 200


async def test_write_backpressure_pauses_reading_and_the_queue() -> None:
    conn, t = connect(make_state())
    conn.pause_writing()
    assert not t.reading
    conn.data_received(GET + GET)
    assert t.out == b""  # nothing starts while the client is not reading
    conn.resume_writing()
    assert len(parse(bytes(t.out))) == 2 and t.reading


async def test_many_pipelined_requests_pause_reading() -> None:
    res = Resolver()
    res.gate = asyncio.get_running_loop().create_future()
    conn, t = connect(make_state(resolver=res))
    conn.data_received(b"GET /slow/1 HTTP/1.1\r\nhost: t\r\n\r\n" + GET * 40)
    assert not t.reading
    res.gate.set_result(None)
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(parse(bytes(t.out))) == 41 and t.reading


async def test_without_an_app_unclaimed_paths_are_404() -> None:
    conn, t = connect(make_state(app=None))
    conn.data_received(b"GET /nowhere HTTP/1.1\r\nhost: t\r\n\r\n")
    assert parse(bytes(t.out))[0].status == 404


async def test_keep_alive_timeout_closes_idle_connections_only() -> None:
    server = HTTPServer(asgi_app, Resolver(), keep_alive_timeout=0.05)
    await server.start()
    assert server.state is not None
    _idle, ti = connect(server.state)
    busy, tb = connect(server.state)
    res = server.resolver
    assert isinstance(res, Resolver)
    res.gate = asyncio.get_running_loop().create_future()
    busy.data_received(b"GET /slow/1 HTTP/1.1\r\nhost: t\r\n\r\n")
    await asyncio.sleep(0.3)
    assert ti.closed and not tb.closed
    res.gate.set_result(None)
    await server.shutdown(grace=1)


async def test_lifespan_and_graceful_drain() -> None:
    res = Resolver()
    res.gate = asyncio.get_running_loop().create_future()
    server = HTTPServer(asgi_app, res)
    await server.start()
    assert server.state is not None and server.state.lifespan_state == {"started": True}
    _idle, ti = connect(server.state)
    busy, tb = connect(server.state)
    busy.data_received(b"GET /slow/1 HTTP/1.1\r\nhost: t\r\n\r\n")
    drain = asyncio.create_task(server.shutdown(grace=5))
    await asyncio.sleep(0.01)
    assert ti.closed and not tb.closed  # idle closed at once, in-flight request goes on
    res.gate.set_result(None)
    await drain
    r = parse(bytes(tb.out))[0]
    assert r.status == 200 and r.headers["connection"] == "close" and tb.closed


async def test_drain_grace_expires_and_cancels() -> None:
    res = Resolver()
    res.gate = asyncio.get_running_loop().create_future()
    server = HTTPServer(None, res)
    await server.start()
    assert server.state is not None
    busy, tb = connect(server.state)
    busy.data_received(b"GET /slow/1 HTTP/1.1\r\nhost: t\r\n\r\n")
    await server.shutdown(grace=0.1)
    assert tb.closed and tb.out == b"" and not busy.tasks


# ---- what the app answers is checked before it reaches the wire (review defects) ----------

MISBEHAVIOUR: dict[str, tuple[int, list[tuple[bytes, bytes]], list[bytes]]] = {
    # path: (status, headers, body parts)
    "/crlf-header": (200, [(b"x-note", b"a\r\nset-cookie: stolen=1")], [b"ok"]),
    "/bad-name": (200, [(b"x note", b"v")], [b"ok"]),
    "/too-long": (200, [(b"content-length", b"3")], [b"abc", b"defgh"]),
    "/too-short": (200, [(b"content-length", b"10")], [b"abc"]),
    "/no-content": (204, [], [b"body that must not be sent"]),
    "/not-modified": (304, [(b"content-length", b"27")], [b"body that must not be sent"]),
    "/streamed": (200, [(b"content-type", b"text/plain")], [b"one,", b"two,", b"three"]),
}


async def misbehaving_app(scope: MutableMapping[str, Any], receive: Receive,
                          send: Send) -> None:
    if scope["type"] != "http":
        raise RuntimeError("no lifespan")
    status, headers, parts = MISBEHAVIOUR[scope["path"]]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    for i, part in enumerate(parts):
        await send({"type": "http.response.body", "body": part,
                    "more_body": i < len(parts) - 1})


class BadReplies(Resolver):
    def resolve(self, method: str, path: str, query: bytes = b"") -> NativeHandler | None:
        if path == "/native-crlf":
            return self._crlf
        if path == "/native-204":
            return self._no_content
        return super().resolve(method, path, query)

    async def _crlf(self, headers: Headers, body: bytes | bytearray) -> Reply:
        return 200, b"ok", b"text/plain", [(b"x-id", b"a\r\nx-injected: 1")]

    async def _no_content(self, headers: Headers, body: bytes | bytearray) -> Reply:
        return 204, b"body that must not be sent", b"text/plain", []


async def answer(head: bytes) -> FakeTransport:
    conn, t = connect(make_state(app=misbehaving_app, resolver=BadReplies()))
    conn.data_received(head)
    for _ in range(10):
        await asyncio.sleep(0)
    return t


@pytest.mark.parametrize("path", [b"/crlf-header", b"/bad-name", b"/native-crlf"])
async def test_invalid_response_headers_are_never_sent(path: bytes) -> None:
    t = await answer(b"GET " + path + b" HTTP/1.1\r\nhost: t\r\n\r\n")
    raw = bytes(t.out)
    assert raw.startswith(b"HTTP/1.1 500 "), raw
    assert b"stolen" not in raw and b"injected" not in raw and b"x note" not in raw


async def test_a_body_longer_than_the_apps_content_length_is_cut_and_closed() -> None:
    t = await answer(b"GET /too-long HTTP/1.1\r\nhost: t\r\n\r\n" + GET)
    raw = bytes(t.out)
    assert raw.startswith(b"HTTP/1.1 200 ") and raw.endswith(b"\r\n\r\nabc"), raw
    assert t.closed  # the extra bytes would be read as the next response


async def test_a_body_shorter_than_the_apps_content_length_ends_the_connection() -> None:
    t = await answer(b"GET /too-short HTTP/1.1\r\nhost: t\r\n\r\n" + GET)
    assert bytes(t.out).endswith(b"\r\n\r\nabc") and t.closed


@pytest.mark.parametrize("path", [b"/no-content", b"/not-modified", b"/native-204"])
async def test_204_and_304_carry_no_body(path: bytes) -> None:
    t = await answer(b"GET " + path + b" HTTP/1.1\r\nhost: t\r\n\r\n" + GET)
    raw = bytes(t.out)
    assert b"must not be sent" not in raw, raw
    first = raw.split(b"\r\n\r\n", 1)[0]
    assert b"transfer-encoding" not in first
    if path != b"/not-modified":
        assert b"content-length" not in first  # RFC 9110 §8.6: never on a 204
    rs = parse(raw)
    assert [r.status for r in rs][1:] == [200]  # the next response on the connection is intact


async def test_http10_never_gets_chunked_framing() -> None:
    t = await answer(b"GET /streamed HTTP/1.0\r\n\r\n")
    raw = bytes(t.out)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower() and body == b"one,two,three", raw
    assert t.closed  # a close-delimited body


async def test_a_connection_flood_writes_one_log_line_not_one_per_connection(
        caplog: pytest.LogCaptureFixture) -> None:
    """Refusing 500 connections over the cap logged 500 warnings (a flood of connections
    became a flood of log lines); now the first refusal is logged and the rest counted."""
    state = make_state()
    state.max_connections = 1
    connect(state)
    with caplog.at_level("WARNING", logger="tureen.transports.http1.protocol"):
        for _ in range(500):
            _, t = connect(state)
            assert bytes(t.out).startswith(b"HTTP/1.1 503 ") and t.closed
    assert len([r for r in caplog.records if "refusing" in r.getMessage()]) == 1


@pytest.mark.parametrize(("head", "status"), [
    (b"GET /echo HTTP/1.1\r\n\r\n", 400),  # no Host
    (b"GET /echo HTTP/1.1\r\nhost: t\r\nHost: u\r\n\r\n", 400),  # two
    (b"GET /echo HTTP/1.1\r\nhost: t\r\nx-a: 1\r\nx-a: 2\r\n\r\n", 200),  # another name twice
    (b"GET /echo HTTP/1.0\r\n\r\n", 200),  # HTTP/1.0 needs none
])
async def test_an_http11_request_has_exactly_one_host(head: bytes, status: int) -> None:
    conn, t = connect(make_state())
    conn.data_received(head)
    assert [r.status for r in parse(bytes(t.out))] == [status]
