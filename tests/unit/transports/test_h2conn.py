"""HTTP/2 server connection (RFC 9113) against a fake transport: settings, ping, flow control
in both directions, header blocks, stream and connection errors, graceful shutdown."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import pytest

from tureen.transports.grpc import h2conn
from tureen.transports.grpc import h2frames as f
from tureen.transports.grpc.h2calm import H2Limits
from tureen.transports.grpc.h2conn import H2Connection, Stream
from tureen.transports.grpc.hpack import Decoder, Encoder

REQUEST = [(":method", "POST"), (":scheme", "http"), (":path", "/blob"),
           (":authority", "x"), ("content-type", "application/grpc")]


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class Blob(H2Connection):
    """Answers each request with ``size`` bytes (the path's body length when given)."""

    def __init__(self, size: int = 10, **kw: Any) -> None:
        super().__init__(max_body=kw.pop("max_body", 1 << 30), **kw)
        self.size = size
        self.ended: list[Stream] = []
        self.bodies: list[bytes] = []  # each request's body (consumed once on_end returns)
        self.resets: list[int] = []
        self.hold = False

    def on_headers(self, stream: Stream) -> None:
        pass

    def on_end(self, stream: Stream) -> None:
        self.ended.append(stream)
        self.bodies.append(bytes(stream.body))
        if not self.hold:
            self.answer(stream)

    def answer(self, stream: Stream) -> None:
        self.send_response(stream, b"\x88", b"x" * self.size, b"\x00\x01a\x01b")

    def on_reset(self, stream: Stream) -> None:
        self.resets.append(stream.id)

    def on_body_limit(self, stream: Stream) -> None:
        self.send_headers_only(stream, b"\x8d")  # :status 500


Frame = tuple[int, int, int, bytes]


class Peer:
    """The client side: builds frames and reads what the server wrote."""

    def __init__(self, conn: H2Connection, transport: FakeTransport) -> None:
        self.conn, self.t = conn, transport
        self.enc, self.dec = Encoder(), Decoder()
        self.read_pos = 0
        self.buf = b""

    def send(self, *frames: bytes) -> None:
        self.conn.data_received(b"".join(frames))

    def headers(self, sid: int, headers: list[tuple[str, str]] = REQUEST,
                end_stream: bool = False) -> bytes:
        return f.frame(f.HEADERS, f.END_HEADERS | (f.END_STREAM if end_stream else 0), sid,
                       self.enc.encode(headers))

    def frames(self) -> list[Frame]:
        self.buf += b"".join(self.t.writes[self.read_pos:])
        self.read_pos = len(self.t.writes)
        out: list[Frame] = []
        while len(self.buf) >= 9:
            lt, flags, sid = f.FRAME_HEADER.unpack_from(self.buf)
            end = 9 + (lt >> 8)
            if len(self.buf) < end:
                break
            out.append((lt & 0xFF, flags, sid, self.buf[9:end]))
            self.buf = self.buf[end:]
        return out


async def connect(conn: H2Connection, settings: dict[int, int] | None = None) -> Peer:
    t = FakeTransport()
    conn.connection_made(t)  # type: ignore[arg-type]
    peer = Peer(conn, t)
    peer.send(f.PREFACE, f.settings(settings or {}))
    return peer


def kinds(frames: list[Frame]) -> list[int]:
    return [k for k, *_ in frames]


def data_bytes(frames: list[Frame], sid: int) -> int:
    return sum(len(p) for k, _, s, p in frames if k == f.DATA and s == sid)


def goaway_code(frames: list[Frame]) -> int:
    (payload,) = [p for k, _, _, p in frames if k == f.GOAWAY]
    return int(struct.unpack(">II", payload[:8])[1])


async def test_preface_settings_and_ping() -> None:
    peer = await connect(Blob())
    frames = peer.frames()
    assert kinds(frames) == [f.SETTINGS, f.WINDOW_UPDATE, f.SETTINGS]
    ours = dict(f.parse_settings(frames[0][3]))
    assert ours[f.INITIAL_WINDOW_SIZE] == h2conn.STREAM_WINDOW
    assert frames[2][1] == f.ACK  # our ACK of the client's SETTINGS
    peer.send(f.frame(f.PING, 0, 0, b"12345678"))
    assert peer.frames() == [(f.PING, f.ACK, 0, b"12345678")]


async def test_bad_preface_is_a_protocol_error() -> None:
    conn = Blob()
    t = FakeTransport()
    conn.connection_made(t)  # type: ignore[arg-type]
    conn.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert t.closed
    assert goaway_code(Peer(conn, t).frames()) == f.PROTOCOL_ERROR


async def test_request_and_response_leave_in_one_write() -> None:
    conn = Blob()
    peer = await connect(conn)
    peer.frames()
    before = len(peer.t.writes)
    peer.send(peer.headers(1), f.frame(f.DATA, f.END_STREAM, 1, b"hello"))
    assert len(peer.t.writes) == before + 1
    frames = peer.frames()
    assert kinds(frames) == [f.HEADERS, f.DATA, f.HEADERS]
    assert peer.dec.decode(frames[2][3]) == (("a", "b"),)
    assert frames[2][1] & f.END_STREAM
    assert conn.bodies[0] == b"hello"
    assert not conn.streams


@pytest.mark.parametrize("size", [4 << 20, 64 << 20])
async def test_large_response_waits_for_window_updates(size: int) -> None:
    conn = Blob(size)
    peer = await connect(conn)  # the client keeps the default 64 KiB windows
    peer.send(peer.headers(1, end_stream=True))
    frames = peer.frames()
    got = data_bytes(frames, 1)
    assert got == f.DEFAULT_WINDOW
    assert kinds(frames)[-1] == f.DATA  # no trailers yet
    assert all(len(p) <= f.DEFAULT_MAX_FRAME for k, _, _, p in frames if k == f.DATA)
    step = 1 << 20
    while got < size:
        peer.send(f.window_update(0, step), f.window_update(1, step))
        await _tick()
        frames = peer.frames()
        got += data_bytes(frames, 1)
    assert got == size
    assert frames[-1][0] == f.HEADERS and frames[-1][1] & f.END_STREAM
    assert not conn.streams


async def _tick() -> None:
    import asyncio

    await asyncio.sleep(0)


async def test_peer_settings_change_window_and_frame_size() -> None:
    conn = Blob(100_000)
    peer = await connect(conn, {f.INITIAL_WINDOW_SIZE: 1000, f.MAX_FRAME_SIZE: 32768})
    peer.send(peer.headers(1, end_stream=True))
    assert data_bytes(peer.frames(), 1) == 1000
    peer.send(f.window_update(0, 1 << 20), f.settings({f.INITIAL_WINDOW_SIZE: 60_000}))
    frames = peer.frames()
    assert data_bytes(frames, 1) == 59_000  # the delta applies to open streams
    assert max(len(p) for k, _, _, p in frames if k == f.DATA) == 32768
    peer.send(f.settings({f.INITIAL_WINDOW_SIZE: 0}))  # negative window: nothing moves
    peer.send(f.window_update(1, 59_000))
    assert data_bytes(peer.frames(), 1) == 0
    peer.send(f.window_update(1, 100_000))
    frames = peer.frames()
    assert data_bytes(frames, 1) == 40_000 and frames[-1][0] == f.HEADERS


async def test_upload_windows_are_replenished_and_enforced() -> None:
    conn = Blob()
    peer = await connect(conn)
    peer.frames()
    chunk = b"z" * f.DEFAULT_MAX_FRAME
    n = h2conn.STREAM_WINDOW // 2 // len(chunk)
    peer.send(peer.headers(1), *[f.frame(f.DATA, 0, 1, chunk)] * n)
    updates = [(s, f.u32(p)) for k, _, s, p in peer.frames() if k == f.WINDOW_UPDATE]
    assert updates == [(1, n * len(chunk))]
    # a stream that overruns its window is reset; the connection lives on
    peer.send(peer.headers(3))
    conn.streams[3].recv_window = 100  # as if the window had been used up
    peer.send(f.frame(f.DATA, 0, 3, b"x" * 101))
    frames = peer.frames()
    assert (f.RST_STREAM, 0, 3, struct.pack(">I", f.FLOW_CONTROL_ERROR)) in frames
    assert not peer.t.closed


async def test_connection_window_overrun_is_a_connection_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(h2conn, "CONN_WINDOW", 100_000)
    peer = await connect(Blob())
    peer.send(peer.headers(1), *[f.frame(f.DATA, 0, 1, b"a" * 16_000)] * 7)
    assert goaway_code(peer.frames()) == f.FLOW_CONTROL_ERROR and peer.t.closed


async def test_continuation_padding_and_priority() -> None:
    conn = Blob()
    peer = await connect(conn)
    peer.frames()
    block = peer.enc.encode([*REQUEST, ("x-long", "v" * 100)])
    pad = 7
    first = bytes([pad]) + b"\x00\x00\x00\x00\x10" + block[:10] + b"\x00" * pad
    peer.send(f.frame(f.HEADERS, f.PADDED | f.PRIORITY_FLAG, 1, first),
              f.frame(f.CONTINUATION, 0, 1, block[10:50]),
              f.frame(f.CONTINUATION, f.END_HEADERS, 1, block[50:]),
              f.frame(f.DATA, f.PADDED | f.END_STREAM, 1, b"\x03abc\x00\x00\x00"))
    assert dict(conn.ended[0].headers)["x-long"] == "v" * 100
    assert conn.bodies[0] == b"abc"
    assert kinds(peer.frames()) == [f.HEADERS, f.DATA, f.HEADERS]


@pytest.mark.parametrize(("frames", "code"), [
    ([f.frame(f.HEADERS, 0, 1, b"\x82"), f.frame(f.DATA, 0, 1, b"x")], f.PROTOCOL_ERROR),
    ([f.frame(f.CONTINUATION, f.END_HEADERS, 1, b"\x82")], f.PROTOCOL_ERROR),
    ([f.frame(f.HEADERS, f.END_HEADERS, 2, b"\x83")], f.PROTOCOL_ERROR),  # even id
    ([f.frame(f.HEADERS, f.END_HEADERS, 1, b"\xff\xff")], f.COMPRESSION_ERROR),
    ([f.frame(f.DATA, 0, 9, b"x")], f.PROTOCOL_ERROR),  # DATA on an idle stream
    ([f.frame(f.PING, 0, 0, b"1234")], f.FRAME_SIZE_ERROR),
    ([f.frame(f.SETTINGS, 0, 0, b"\x00\x04\x80\x00\x00\x00")], f.FLOW_CONTROL_ERROR),
    ([f.frame(f.SETTINGS, 0, 0, b"\x00\x05\x00\x00\x01\x00")], f.PROTOCOL_ERROR),
    ([f.frame(f.WINDOW_UPDATE, 0, 0, b"\x00\x00\x00\x00")], f.PROTOCOL_ERROR),
    ([f.frame(f.WINDOW_UPDATE, 0, 0, b"\x7f\xff\xff\xff")], f.FLOW_CONTROL_ERROR),
    ([f.frame(f.PUSH_PROMISE, f.END_HEADERS, 1, b"\x00\x00\x00\x02")], f.PROTOCOL_ERROR),
    ([f.frame_header(20_000, f.DATA, 0, 1) + b"x" * 20_000], f.FRAME_SIZE_ERROR),
])
async def test_connection_errors_send_goaway(frames: list[bytes], code: int) -> None:
    peer = await connect(Blob())
    peer.frames()
    peer.send(*frames)
    assert goaway_code(peer.frames()) == code
    assert peer.t.closed


async def test_headers_after_a_higher_stream_is_a_protocol_error() -> None:
    peer = await connect(Blob())
    peer.send(peer.headers(5, end_stream=True), peer.headers(3, end_stream=True))
    assert goaway_code(peer.frames()) == f.PROTOCOL_ERROR


async def test_rst_stream_reaches_the_application() -> None:
    conn = Blob()
    conn.hold = True
    peer = await connect(conn)
    peer.send(peer.headers(1, end_stream=True), f.rst_stream(1, f.CANCEL))
    assert conn.resets == [1] and not conn.streams


async def test_max_concurrent_streams_refuses_extra_streams() -> None:
    conn = Blob(max_streams=2)
    conn.hold = True
    peer = await connect(conn)
    peer.send(*(peer.headers(sid, end_stream=True) for sid in (1, 3, 5)))
    assert (f.RST_STREAM, 0, 5, struct.pack(">I", f.REFUSED_STREAM)) in peer.frames()
    assert sorted(conn.streams) == [1, 3]


async def test_early_answer_resets_the_unfinished_request_with_no_error() -> None:
    conn = Blob(max_body=10)
    peer = await connect(conn)
    peer.frames()
    peer.send(peer.headers(1), f.frame(f.DATA, 0, 1, b"x" * 11),
              f.frame(f.DATA, f.END_STREAM, 1, b"late"))  # late DATA is ignored
    frames = peer.frames()
    assert kinds(frames) == [f.HEADERS, f.RST_STREAM]
    assert frames[1][3] == struct.pack(">I", f.NO_ERROR)
    assert not conn.streams and not peer.t.closed


async def test_graceful_shutdown_finishes_streams_in_flight() -> None:
    conn = Blob()
    conn.hold = True
    peer = await connect(conn)
    peer.send(peer.headers(1, end_stream=True))
    conn.shutdown()
    await _tick()
    frames = peer.frames()
    assert frames[-1][0] == f.GOAWAY and struct.unpack(">II", frames[-1][3]) == (1, f.NO_ERROR)
    assert not peer.t.closed
    peer.send(peer.headers(3, end_stream=True))  # beyond the GOAWAY's last stream: ignored
    assert len(conn.ended) == 1
    conn.answer(conn.ended[0])
    await _tick()
    assert kinds(peer.frames()) == [f.HEADERS, f.DATA, f.HEADERS]
    assert peer.t.closed


async def test_header_table_size_setting_is_acknowledged_in_the_next_block() -> None:
    conn = Blob()
    peer = await connect(conn, {f.HEADER_TABLE_SIZE: 0})
    peer.frames()
    peer.send(peer.headers(1, end_stream=True))
    frames = peer.frames()
    assert frames[0][3][:1] == b"\x20"  # dynamic table size update to 0
    peer.dec.max_allowed = 0
    assert peer.dec.decode(frames[0][3]) == ((":status", "200"),)


async def test_a_closed_connection_is_freed_without_the_cycle_collector() -> None:
    """Issue 11 #6: closed connections' memory waited for a cyclic GC."""
    import gc
    import weakref

    conn = Blob()
    peer = await connect(conn)
    peer.send(peer.headers(1), f.frame(f.DATA, f.END_STREAM, 1, b"x" * 1000))
    ref = weakref.ref(conn)
    gc.disable()
    try:
        conn.connection_lost(None)
        del conn, peer
        assert ref() is None, gc.get_referrers(ref())
    finally:
        gc.enable()


# ---- timers (issue 11 #7, #11): tick(now) is what the server calls once a second ----------

TIMERS = H2Limits(1 << 20, handshake_timeout=2, idle_timeout=30, keepalive_interval=10,
                  keepalive_timeout=5, body_timeout=4)


def goaways(frames: list[Frame]) -> list[int]:
    return [int(struct.unpack(">II", p[:8])[1]) for k, _, _, p in frames if k == f.GOAWAY]


async def test_a_connection_without_a_preface_is_closed_at_the_handshake_deadline() -> None:
    conn, t = Blob(limits=TIMERS), FakeTransport()
    conn.connection_made(t)  # type: ignore[arg-type]
    now = asyncio.get_running_loop().time()
    conn.data_received(f.PREFACE[:10])
    conn.tick(now + 1)
    assert not t.closed
    conn.tick(now + 3)
    assert t.closed


async def test_an_unfinished_header_block_is_cut_at_the_head_deadline() -> None:
    conn = Blob(limits=TIMERS)
    peer = await connect(conn)
    peer.frames()
    block = peer.enc.encode(REQUEST)
    peer.send(f.frame(f.HEADERS, 0, 1, block[:3]))
    now = asyncio.get_running_loop().time()
    conn.tick(now + 1)
    assert goaways(peer.frames()) == []
    conn.tick(now + 3)
    assert goaways(peer.frames()) == [f.ENHANCE_YOUR_CALM] and peer.t.closed


async def test_a_stalled_body_is_reset_at_the_body_deadline() -> None:
    conn = Blob(limits=TIMERS)
    peer = await connect(conn)
    peer.send(peer.headers(1), peer.headers(3, end_stream=True))
    peer.frames()
    now = asyncio.get_running_loop().time()
    conn.tick(now + 3)
    assert [k for k, *_ in peer.frames()] == []
    conn.tick(now + 5)
    frames = peer.frames()
    assert [(k, s, p) for k, _, s, p in frames] == [(f.RST_STREAM, 1, struct.pack(">I", f.CANCEL))]
    assert not peer.t.closed and conn.resets == [1]


async def test_silent_peers_are_pinged_and_closed_without_an_answer() -> None:
    conn = Blob(limits=TIMERS)
    peer = await connect(conn)
    peer.frames()
    now = asyncio.get_running_loop().time()
    conn.tick(now + 5)
    assert peer.frames() == []
    conn.tick(now + 11)
    (ping,) = peer.frames()
    assert ping[0] == f.PING and ping[1] == 0
    peer.send(f.frame(f.PING, f.ACK, 0, ping[3]))  # answered: the connection stays
    conn.tick(now + 17)  # (unanswered, 6 s > 5 s would close it) silent again: pinged
    assert [k for k, *_ in peer.frames()] == [f.PING] and not peer.t.closed
    conn.tick(now + 21)
    assert not peer.t.closed
    conn.tick(now + 23)  # this time no answer
    assert goaways(peer.frames()) == [f.NO_ERROR] and peer.t.closed


async def test_a_connection_without_calls_is_closed_when_idle() -> None:
    conn = Blob(limits=H2Limits(1 << 20, idle_timeout=30, keepalive_interval=1000))
    peer = await connect(conn)
    peer.send(*[peer.headers(1, end_stream=True)])
    peer.frames()
    now = asyncio.get_running_loop().time()
    conn.tick(now + 1)  # the call is answered: no streams left, idle from here
    conn.tick(now + 20)
    assert not peer.t.closed
    conn.tick(now + 32)
    assert goaways(peer.frames()) == [f.NO_ERROR] and peer.t.closed


async def test_answers_a_peer_gives_no_window_for_are_capped_and_reset() -> None:
    """Issue 11 #4: a peer that announces a window of 0 made the server hold every answer."""
    lim = H2Limits(1 << 20, connection_buffer=300, body_timeout=4)
    conn = Blob(size=200, limits=lim)
    peer = await connect(conn, {f.INITIAL_WINDOW_SIZE: 0})
    peer.send(peer.headers(1, end_stream=True), peer.headers(3, end_stream=True))
    peer.frames()
    assert conn.unsent_bytes() == 400
    peer.send(peer.headers(5, end_stream=True))  # over the cap: refused, not answered
    rst = [(s, p) for k, _, s, p in peer.frames() if k == f.RST_STREAM]
    assert rst == [(5, struct.pack(">I", f.REFUSED_STREAM))] and len(conn.ended) == 2
    now = asyncio.get_running_loop().time()
    conn.tick(now + 3)
    assert [k for k, *_ in peer.frames()] == []
    conn.tick(now + 5)  # no window for 4 s: both answers are dropped
    rst = [(s, p) for k, _, s, p in peer.frames() if k == f.RST_STREAM]
    assert rst == [(1, struct.pack(">I", f.CANCEL)), (3, struct.pack(">I", f.CANCEL))]
    assert conn.unsent_bytes() == 0 and not peer.t.closed


def _with_secret(value: bytes) -> bytes:
    """A request block whose authorization is never indexed (as nghttp2 sends it)."""
    from tureen.transports.grpc.hpack import encode_int

    return (b"\x83\x86\x04\x05/blob\x01\x01x\x0f\x10\x10application/grpc"
            + b"\x1f\x08" + encode_int(len(value), 7) + value)


async def test_never_indexed_values_are_checked_on_every_request() -> None:
    conn = Blob()
    peer = await connect(conn)
    peer.frames()
    for sid, value in ((1, b"Bearer one"), (3, b"Bearer bad\x01"), (5, b"Bearer two"),
                       (7, b" Bearer three")):
        peer.send(f.frame(f.HEADERS, f.END_HEADERS | f.END_STREAM, sid, _with_secret(value)))
    assert [dict(s.request.fields)["authorization"] for s in conn.ended] == [
        "Bearer one", "Bearer two"]
    resets = [(s, p) for k, _, s, p in peer.frames() if k == f.RST_STREAM]
    assert [(s, struct.unpack(">I", p)[0]) for s, p in resets] == [
        (3, f.PROTOCOL_ERROR), (7, f.PROTOCOL_ERROR)]
