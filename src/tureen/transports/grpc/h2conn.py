"""A server-side HTTP/2 connection (RFC 9113) for h2c with prior knowledge, on asyncio.

``H2Connection`` reads frames from one bytearray through memoryview slices, decodes header
blocks with HPACK, keeps connection- and stream-level flow control in both directions, and
queues every frame it sends in one list that is written with a single ``transport.write``
per event-loop callback. It knows nothing about gRPC: a subclass receives

    on_headers(stream)     request headers complete (``stream.headers``)
    on_end(stream)         request complete (``stream.body``)
    on_reset(stream)       the peer reset the stream or the connection went away
    on_body_limit(stream)  the body grew past ``max_body``

and answers with ``send_response`` / ``send_headers_only`` / ``reset``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from tureen.transports.grpc import h2frames as f
from tureen.transports.grpc.hpack import Decoder, Encoder, Header, HpackError

log = logging.getLogger(__name__)

#: what a stream may send before we replenish it, and the connection window we open
STREAM_WINDOW = 8 * 1024 * 1024
CONN_WINDOW = 64 * 1024 * 1024
MAX_HEADER_BLOCK = 1024 * 1024


class Stream:
    __slots__ = ("body", "call", "discard", "ended", "headers", "id", "pending", "recv_unacked",
                 "recv_window", "send_window", "trailers")

    def __init__(self, stream_id: int, send_window: int) -> None:
        self.id = stream_id
        self.headers: tuple[Header, ...] = ()
        self.body = bytearray()
        self.ended = False  # the peer sent END_STREAM
        self.recv_window = STREAM_WINDOW
        self.recv_unacked = 0
        self.send_window = send_window
        self.pending: memoryview | None = None  # response bytes waiting for window
        self.trailers = b""
        self.discard = False  # the answer went out early: drop further DATA
        self.call: Any = None  # the application's state for this stream


class H2Connection(asyncio.Protocol):
    def __init__(self, max_body: int, max_streams: int = 1000) -> None:
        self.max_body = max_body
        self.max_streams = max_streams
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.streams: dict[int, Stream] = {}
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self._buf = bytearray()
        self._preface = False
        self._out: list[bytes | memoryview] = []
        self._flush_scheduled = False
        self._receiving = False
        self._closing = False
        self._decoder = Decoder()
        self.encoder = Encoder()
        self._cont: tuple[int, int, bytearray] | None = None  # HEADERS awaiting CONTINUATION
        self.last_stream_id = 0
        self.going_away = False
        self._peer_initial = f.DEFAULT_WINDOW
        self.peer_max_frame = f.DEFAULT_MAX_FRAME
        self.send_window = f.DEFAULT_WINDOW
        self._recv_window = CONN_WINDOW
        self._recv_unacked = 0
        self._blocked: dict[int, Stream] = {}
        self._handlers: dict[int, Callable[[int, int, memoryview], None]] = {
            f.DATA: self._on_data, f.HEADERS: self._on_headers_frame,
            f.PRIORITY: self._on_priority, f.RST_STREAM: self._on_rst,
            f.SETTINGS: self._on_settings, f.PUSH_PROMISE: self._on_push_promise,
            f.PING: self._on_ping, f.GOAWAY: self._on_goaway,
            f.WINDOW_UPDATE: self._on_window_update, f.CONTINUATION: self._on_continuation,
        }

    # hooks for the application

    def on_headers(self, stream: Stream) -> None:
        raise NotImplementedError

    def on_end(self, stream: Stream) -> None:
        raise NotImplementedError

    def on_reset(self, stream: Stream) -> None:
        raise NotImplementedError

    def on_body_limit(self, stream: Stream) -> None:
        raise NotImplementedError

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        self._out.append(f.settings({
            f.MAX_CONCURRENT_STREAMS: self.max_streams,
            f.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            f.MAX_HEADER_LIST_SIZE: MAX_HEADER_BLOCK,
        }))
        self._out.append(f.window_update(0, CONN_WINDOW - f.DEFAULT_WINDOW))
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        streams, self.streams = self.streams, {}
        self._blocked.clear()
        for s in streams.values():
            self.on_reset(s)
        self.transport = None
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        self._receiving = True
        try:
            if not self._preface:
                self._buf += data
                if len(self._buf) < len(f.PREFACE):
                    if not f.PREFACE.startswith(self._buf):
                        raise f.H2Error(f.PROTOCOL_ERROR, "not an HTTP/2 client preface; this "
                                        "port speaks gRPC over cleartext HTTP/2 (h2c)")
                    return
                if not self._buf.startswith(f.PREFACE):
                    raise f.H2Error(f.PROTOCOL_ERROR, "not an HTTP/2 client preface; this port "
                                    "speaks gRPC over cleartext HTTP/2 (h2c)")
                self._preface = True
                data = bytes(self._buf[len(f.PREFACE):])
                self._buf = bytearray()
            if self._buf:
                self._buf += data
                used = self._parse(self._buf)
                del self._buf[:used]
            else:
                used = self._parse(data)
                if used < len(data):
                    self._buf = bytearray(data[used:])
            if self._recv_unacked >= CONN_WINDOW // 4:
                self._out.append(f.window_update(0, self._recv_unacked))
                self._recv_window += self._recv_unacked
                self._recv_unacked = 0
        except f.H2Error as exc:
            self.fail(exc.code, str(exc))
        finally:
            self._receiving = False
            if self._out:
                self._flush()

    def _parse(self, buf: bytes | bytearray) -> int:
        """Handle every complete frame in ``buf``; return how many bytes were used."""
        n, pos = len(buf), 0
        mv = memoryview(buf)
        unpack, handlers = f.FRAME_HEADER.unpack_from, self._handlers
        while n - pos >= 9 and self.transport is not None:
            lt, flags, sid = unpack(buf, pos)
            length = lt >> 8
            end = pos + 9 + length
            if length > f.DEFAULT_MAX_FRAME:
                raise f.H2Error(f.FRAME_SIZE_ERROR, f"frame of {length} bytes exceeds "
                                f"SETTINGS_MAX_FRAME_SIZE {f.DEFAULT_MAX_FRAME}")
            if end > n:
                break
            kind = lt & 0xFF
            if not self._preface_settings_seen and kind != f.SETTINGS:
                raise f.H2Error(f.PROTOCOL_ERROR, "the first frame must be SETTINGS")
            if self._cont is not None and kind != f.CONTINUATION:
                raise f.H2Error(f.PROTOCOL_ERROR, "a header block was interrupted by a "
                                "frame other than CONTINUATION")
            handler = handlers.get(kind)
            pos = end
            if handler is not None:
                try:
                    handler(flags, sid & 0x7FFFFFFF, mv[end - length:end])
                except f.StreamError as exc:
                    self.reset(exc.stream_id, exc.code)
        return pos

    _preface_settings_seen = False

    # frames

    def _on_data(self, flags: int, sid: int, payload: memoryview) -> None:
        if sid == 0:
            raise f.H2Error(f.PROTOCOL_ERROR, "DATA on stream 0")
        size = len(payload)
        self._recv_window -= size
        if self._recv_window < 0:
            raise f.H2Error(f.FLOW_CONTROL_ERROR, "DATA beyond the connection window")
        self._recv_unacked += size
        s = self.streams.get(sid)
        if s is None:
            if sid > self.last_stream_id:
                raise f.H2Error(f.PROTOCOL_ERROR, f"DATA on idle stream {sid}")
            return  # a stream we already answered or reset: ignore (§5.4.2)
        if s.ended:
            raise f.StreamError(sid, f.STREAM_CLOSED, "DATA after END_STREAM")
        s.recv_window -= size
        if s.recv_window < 0:
            raise f.StreamError(sid, f.FLOW_CONTROL_ERROR, "DATA beyond the stream window")
        data = f.strip_padding(payload, flags, sid)
        if not s.discard:
            s.body += data
            if len(s.body) > self.max_body:
                s.discard = True
                s.body = bytearray()
                self.on_body_limit(s)
                if sid not in self.streams:
                    return
        if flags & f.END_STREAM:
            s.ended = True
            if not s.discard:
                self.on_end(s)
            else:
                self._forget(s)
            return
        s.recv_unacked += size
        if s.recv_unacked >= STREAM_WINDOW // 2:
            self._out.append(f.window_update(sid, s.recv_unacked))
            s.recv_window += s.recv_unacked
            s.recv_unacked = 0

    def _on_headers_frame(self, flags: int, sid: int, payload: memoryview) -> None:
        if sid == 0:
            raise f.H2Error(f.PROTOCOL_ERROR, "HEADERS on stream 0")
        payload = f.strip_padding(payload, flags, sid)
        if flags & f.PRIORITY_FLAG:
            if len(payload) < 5:
                raise f.H2Error(f.FRAME_SIZE_ERROR, "HEADERS priority fields are truncated")
            if f.u32(payload) & 0x7FFFFFFF == sid:
                raise f.StreamError(sid, f.PROTOCOL_ERROR, "stream depends on itself")
            payload = payload[5:]
        if flags & f.END_HEADERS:
            self._header_block(sid, flags & f.END_STREAM, bytes(payload))
        else:
            self._cont = (sid, flags & f.END_STREAM, bytearray(payload))

    def _on_continuation(self, flags: int, sid: int, payload: memoryview) -> None:
        if self._cont is None or self._cont[0] != sid:
            raise f.H2Error(f.PROTOCOL_ERROR, f"unexpected CONTINUATION on stream {sid}")
        block = self._cont[2]
        block += payload
        if len(block) > MAX_HEADER_BLOCK:
            raise f.H2Error(f.ENHANCE_YOUR_CALM, f"header block over {MAX_HEADER_BLOCK} bytes")
        if flags & f.END_HEADERS:
            end_stream = self._cont[1]
            self._cont = None
            self._header_block(sid, end_stream, bytes(block))

    def _header_block(self, sid: int, end_stream: int, block: bytes) -> None:
        try:
            headers = self._decoder.decode(block)
        except HpackError as exc:
            raise f.H2Error(f.COMPRESSION_ERROR, f"header block: {exc}") from None
        s = self.streams.get(sid)
        if s is not None:  # trailers
            if s.ended:
                raise f.StreamError(sid, f.STREAM_CLOSED, "HEADERS after END_STREAM")
            if not end_stream:
                raise f.StreamError(sid, f.PROTOCOL_ERROR, "trailers without END_STREAM")
            s.ended = True
            if s.discard:
                self._forget(s)
            else:
                self.on_end(s)
            return
        if sid <= self.last_stream_id or not sid & 1:
            raise f.H2Error(f.PROTOCOL_ERROR, f"HEADERS opening stream {sid} after stream "
                            f"{self.last_stream_id} (client streams are odd and increasing)")
        if self.going_away:
            return  # beyond the last stream id of our GOAWAY: ignored, the client retries
        self.last_stream_id = sid
        if len(self.streams) >= self.max_streams:
            raise f.StreamError(sid, f.REFUSED_STREAM, "too many concurrent streams")
        s = Stream(sid, self._peer_initial)
        s.headers = headers
        s.ended = bool(end_stream)
        self.streams[sid] = s
        self.on_headers(s)
        if end_stream and sid in self.streams:
            self.on_end(s)

    def _on_priority(self, flags: int, sid: int, payload: memoryview) -> None:
        if sid == 0:
            raise f.H2Error(f.PROTOCOL_ERROR, "PRIORITY on stream 0")
        if len(payload) != 5:
            raise f.StreamError(sid, f.FRAME_SIZE_ERROR, "PRIORITY payload must be 5 bytes")

    def _on_rst(self, flags: int, sid: int, payload: memoryview) -> None:
        if sid == 0:
            raise f.H2Error(f.PROTOCOL_ERROR, "RST_STREAM on stream 0")
        if len(payload) != 4:
            raise f.H2Error(f.FRAME_SIZE_ERROR, "RST_STREAM payload must be 4 bytes")
        if sid > self.last_stream_id:
            raise f.H2Error(f.PROTOCOL_ERROR, f"RST_STREAM on idle stream {sid}")
        s = self.streams.pop(sid, None)
        if s is not None:
            self._blocked.pop(sid, None)
            self.on_reset(s)
            self._maybe_close()

    def _on_settings(self, flags: int, sid: int, payload: memoryview) -> None:
        if sid != 0:
            raise f.H2Error(f.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & f.ACK:
            if len(payload):
                raise f.H2Error(f.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            return
        self._preface_settings_seen = True
        for key, value in f.parse_settings(payload):
            if key == f.INITIAL_WINDOW_SIZE:
                if value > f.MAX_WINDOW:
                    raise f.H2Error(f.FLOW_CONTROL_ERROR, f"INITIAL_WINDOW_SIZE {value} > 2^31-1")
                delta, self._peer_initial = value - self._peer_initial, value
                for s in self.streams.values():
                    s.send_window += delta
            elif key == f.MAX_FRAME_SIZE:
                if not f.DEFAULT_MAX_FRAME <= value <= f.MAX_FRAME_LIMIT:
                    raise f.H2Error(f.PROTOCOL_ERROR, f"MAX_FRAME_SIZE {value} out of range")
                self.peer_max_frame = value
            elif key == f.ENABLE_PUSH and value > 1:
                raise f.H2Error(f.PROTOCOL_ERROR, f"ENABLE_PUSH {value} is not 0 or 1")
            elif key == f.HEADER_TABLE_SIZE:
                self.encoder.set_max_table_size(value)
        self._out.append(f.frame(f.SETTINGS, f.ACK, 0))
        self._unblock()

    def _on_push_promise(self, flags: int, sid: int, payload: memoryview) -> None:
        raise f.H2Error(f.PROTOCOL_ERROR, "clients must not send PUSH_PROMISE")

    def _on_ping(self, flags: int, sid: int, payload: memoryview) -> None:
        if sid != 0:
            raise f.H2Error(f.PROTOCOL_ERROR, "PING on a stream")
        if len(payload) != 8:
            raise f.H2Error(f.FRAME_SIZE_ERROR, "PING payload must be 8 bytes")
        if not flags & f.ACK:
            self._out.append(f.frame(f.PING, f.ACK, 0, bytes(payload)))

    def _on_goaway(self, flags: int, sid: int, payload: memoryview) -> None:
        if sid != 0:
            raise f.H2Error(f.PROTOCOL_ERROR, "GOAWAY on a stream")
        self.going_away = True
        self._maybe_close()

    def _on_window_update(self, flags: int, sid: int, payload: memoryview) -> None:
        if len(payload) != 4:
            raise f.H2Error(f.FRAME_SIZE_ERROR, "WINDOW_UPDATE payload must be 4 bytes")
        inc = f.u32(payload) & 0x7FFFFFFF
        if sid == 0:
            if inc == 0:
                raise f.H2Error(f.PROTOCOL_ERROR, "WINDOW_UPDATE with increment 0")
            self.send_window += inc
            if self.send_window > f.MAX_WINDOW:
                raise f.H2Error(f.FLOW_CONTROL_ERROR, "connection window above 2^31-1")
        else:
            s = self.streams.get(sid)
            if s is None:
                return
            if inc == 0:
                raise f.StreamError(sid, f.PROTOCOL_ERROR, "WINDOW_UPDATE with increment 0")
            s.send_window += inc
            if s.send_window > f.MAX_WINDOW:
                raise f.StreamError(sid, f.FLOW_CONTROL_ERROR, "stream window above 2^31-1")
        self._unblock()

    # sending

    def send_headers_only(self, s: Stream, block: bytes) -> None:
        """A complete response in one header block (e.g. gRPC trailers-only)."""
        self._out += f.header_frames(s.id, self.encoder.prefix() + block, True,
                                     self.peer_max_frame)
        self._done(s)

    def send_response(self, s: Stream, head: bytes, body: bytes, trailers: bytes) -> None:
        """Headers, the body as flow-controlled DATA, then trailers (END_STREAM)."""
        self._out += f.header_frames(s.id, self.encoder.prefix() + head, False,
                                     self.peer_max_frame)
        s.pending = memoryview(body)
        s.trailers = trailers
        self._push(s)
        self._schedule_flush()

    def _push(self, s: Stream) -> None:
        data = s.pending
        assert data is not None
        avail = min(len(data), s.send_window, self.send_window)
        if avail > 0:
            out, mf, sid, pos = self._out, self.peer_max_frame, s.id, 0
            while pos < avail:
                size = min(mf, avail - pos)
                out.append(f.frame_header(size, f.DATA, 0, sid))
                out.append(data[pos:pos + size])
                pos += size
            s.send_window -= avail
            self.send_window -= avail
            data = s.pending = data[avail:]
        if len(data):
            self._blocked[s.id] = s
            return
        self._blocked.pop(s.id, None)
        s.pending = None
        self._out += f.header_frames(s.id, self.encoder.prefix() + s.trailers, True,
                                     self.peer_max_frame)
        self._done(s)

    def _unblock(self) -> None:
        for s in list(self._blocked.values()):
            if self.send_window <= 0:
                break
            if s.send_window > 0:
                self._push(s)
        self._schedule_flush()

    def reset(self, sid: int, code: int) -> None:
        self._out.append(f.rst_stream(sid, code))
        s = self.streams.pop(sid, None)
        if s is not None:
            self._blocked.pop(sid, None)
            self.on_reset(s)
        self._schedule_flush()
        self._maybe_close()

    def _done(self, s: Stream) -> None:
        """Our side of ``s`` is complete."""
        if not s.ended:  # answered early: ask the client to stop sending (§8.1)
            self._out.append(f.rst_stream(s.id, f.NO_ERROR))
        self._forget(s)
        self._schedule_flush()

    def _forget(self, s: Stream) -> None:
        if self.streams.get(s.id) is s:
            del self.streams[s.id]
            self._maybe_close()

    def _schedule_flush(self) -> None:
        if not self._receiving and not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        out = self._out
        if out and self.transport is not None and not self._closing:
            self._out = []
            self.transport.write(b"".join(out))

    # lifecycle

    def shutdown(self) -> None:
        """Graceful: GOAWAY naming the last stream we will serve; close once those finish."""
        if self.transport is None:
            return
        if not self.going_away:
            self.going_away = True
            self._out.append(f.goaway(self.last_stream_id, f.NO_ERROR))
            self._schedule_flush()
        self._maybe_close()

    def _maybe_close(self) -> None:
        if self.going_away and not self.streams and self.transport is not None:
            self.close()

    def close(self) -> None:
        """Write what is queued and close."""
        if self.transport is not None and not self._closing:
            self._flush()
            self._closing = True
            self.transport.close()

    def fail(self, code: int, message: str) -> None:
        """A connection error: GOAWAY with ``code``, end every stream, close."""
        if self.transport is None or self._closing:
            return
        log.info("closing HTTP/2 connection: %s (error code %d)", message, code)
        self._out.append(f.goaway(self.last_stream_id, code, message))
        self.going_away = True
        streams, self.streams = self.streams, {}
        self._blocked.clear()
        for s in streams.values():
            self.on_reset(s)
        self.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
