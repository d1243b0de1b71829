"""A server-side HTTP/2 connection (RFC 9113) for h2c with prior knowledge (or h2 over TLS),
on asyncio: the receiving half. ``h2output`` sends, ``h2streams`` holds the stream-state
table, ``h2request`` validates requests, ``h2calm`` counts abuse and holds the limits.

``H2Connection`` reads frames from one bytearray through memoryview slices, decodes every
header block with HPACK (also for a stream it refuses or resets, so the table stays in
sync), and checks each frame against its stream's state. It knows nothing about gRPC: a
subclass receives

    on_headers(stream)         request headers complete and valid (``stream.headers``)
    on_data(stream)            more body arrived on a ``stream.streaming`` stream (its reader
                               takes whole messages off ``stream.body`` with ``take``)
    on_end(stream)             request complete (``stream.body``; consumed when it returns)
    on_reset(stream)           the peer reset the stream or the connection went away
    on_body_limit(stream)      the body grew past ``max_body``
    on_rejected(stream, why)   the header list was over ``max_header_list``

and answers with ``send_response`` / ``send_headers_only`` / ``reset``, or — for a stream of
messages — ``send_headers``, ``send_data`` (any number of times) and ``finish``.

What a peer may cost is bounded: a stream buffers at most ``max_body``; the connection
grants flow-control window only for request bytes it is willing to hold
(``connection_buffer``, and the server-wide ``budget``), and gives it back as bodies are
consumed; answers waiting for the peer's window are capped at ``connection_buffer`` too (new
streams are refused beyond it) and reset after ``body_timeout`` without progress; a body has
``body_timeout`` to arrive (on a streaming stream: each message, from the end of the one
before); the handshake and each header block ``handshake_timeout``; an idle connection is
closed after ``idle_timeout``, a silent one pinged every ``keepalive_interval``; floods of
PING, SETTINGS, resets, empty DATA, PRIORITY and
CONTINUATION frames end in GOAWAY(ENHANCE_YOUR_CALM). ``tick(now)`` applies the timers (the
server calls it once a second). A streaming stream's messages keep their credit until its
reader is done with them (``give_back``); a reader that falls behind sets ``stream.hold``:
the stream's window is not replenished (the peer stops sending on it) until
``release_window``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from tureen.transports.grpc import h2frames as f
from tureen.transports.grpc.h2calm import MAX_CONTINUATIONS, H2Limits
from tureen.transports.grpc.h2output import H2Output
from tureen.transports.grpc.h2request import (
    MalformedError,
    blanked,
    check_trailers,
    parse_request,
    refill,
)
from tureen.transports.grpc.h2streams import STREAM_WINDOW, Do, State, Stream, on_receive
from tureen.transports.grpc.hpack import Decoder, Header, HeaderListTooLarge, HpackError, Shaped

__all__ = ["CONN_WINDOW", "STREAM_WINDOW", "H2Connection", "Stream"]

log = logging.getLogger(__name__)

#: the most connection-level window granted at once
CONN_WINDOW = 32 * 1024 * 1024
#: the most header block bytes (HEADERS + CONTINUATION) accepted before decoding
MAX_HEADER_BLOCK = 256 * 1024


class H2Connection(H2Output):
    def __init__(self, max_body: int, max_streams: int = 1000,
                 limits: H2Limits | None = None) -> None:
        super().__init__(limits or H2Limits(max_body, max_streams=max_streams))
        self.max_body = self.limits.max_body
        self.max_streams = self.limits.max_streams
        self._buf = bytearray()
        self._preface = False
        self._settings_seen = False
        self._decoder = Decoder()
        self._cont: tuple[int, int, bytearray, int] | None = None  # header block in pieces
        self._cont_since = 0.0  # when that header block began (the head deadline)
        self._peer_initial = f.DEFAULT_WINDOW
        self._recv_window = f.DEFAULT_WINDOW  # credit the peer has on the connection
        self.buffered = 0  # request-body bytes held by this connection's streams
        now = self.loop.time()
        self._opened_at = now
        self._last_frame = now
        self._idle_since: float | None = now
        self._ping_sent: float | None = None
        #: id(header list or HPACK Shape) -> (it, its parsed Request)
        self._checked: dict[int, tuple[object, Any]] = {}
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

    def on_data(self, stream: Stream) -> None:
        """More body arrived; unary calls wait for ``on_end`` instead."""

    def on_end(self, stream: Stream) -> None:
        raise NotImplementedError

    def on_body_limit(self, stream: Stream) -> None:
        raise NotImplementedError

    def on_rejected(self, stream: Stream, why: str) -> None:
        self.reset(stream.id, f.REFUSED_STREAM)

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        set_limits = getattr(transport, "set_write_buffer_limits", None)
        if set_limits is not None:
            set_limits(high=self.limits.write_high_water)
        self._out.append(f.settings({
            f.MAX_CONCURRENT_STREAMS: self.max_streams,
            f.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            f.MAX_HEADER_LIST_SIZE: self.limits.max_header_list,
        }))
        self._replenish(force=True)
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_all()
        self.transport = None
        # break the reference cycles (bound methods, decoded headers) so the memory of a
        # closed connection is freed at once, not by the cyclic collector
        self._handlers = {}
        self._checked.clear()
        self._decoder = Decoder()
        self._buf = bytearray()
        self._out = []
        self.reset_by_us.clear()
        self.recently_closed.clear()
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        self._receiving = True
        self._last_frame = self.loop.time()
        try:
            if not self._preface:
                self._buf += data
                if len(self._buf) < len(f.PREFACE):
                    if not f.PREFACE.startswith(self._buf):
                        raise f.H2Error(f.PROTOCOL_ERROR, "not an HTTP/2 client preface; this "
                                        "port speaks gRPC over HTTP/2")
                    return
                if not self._buf.startswith(f.PREFACE):
                    raise f.H2Error(f.PROTOCOL_ERROR, "not an HTTP/2 client preface; this port "
                                    "speaks gRPC over HTTP/2")
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
            self._replenish()
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
        while n - pos >= 9 and self.transport is not None and not self._closing:
            lt, flags, sid = unpack(buf, pos)
            length = lt >> 8
            end = pos + 9 + length
            if length > f.DEFAULT_MAX_FRAME:
                raise f.H2Error(f.FRAME_SIZE_ERROR, f"frame of {length} bytes exceeds "
                                f"SETTINGS_MAX_FRAME_SIZE {f.DEFAULT_MAX_FRAME}")
            if end > n:
                break
            kind = lt & 0xFF
            if not self._settings_seen and kind != f.SETTINGS:
                raise f.H2Error(f.PROTOCOL_ERROR, "the first frame must be SETTINGS")
            if self._cont is not None and kind != f.CONTINUATION:
                raise f.H2Error(f.PROTOCOL_ERROR, "a header block was interrupted by a "
                                "frame other than CONTINUATION")
            handler = handlers.get(kind)
            pos = end
            if handler is not None:  # unknown frame types are ignored (§4.1)
                try:
                    handler(flags, sid & 0x7FFFFFFF, mv[end - length:end])
                except f.StreamError as exc:
                    self.reset(exc.stream_id, exc.code)
        return pos

    # the state table

    def _state(self, sid: int) -> tuple[State, Stream | None]:
        s = self.streams.get(sid)
        if s is not None:
            return s.state, s
        return (State.IDLE if sid > self.last_stream_id else State.CLOSED), None

    def _check(self, sid: int, frame: str) -> tuple[Do, Stream | None]:
        state, s = self._state(sid)
        do = on_receive(state, frame, sid in self.reset_by_us, sid in self.recently_closed)
        if do is Do.PROTOCOL:
            raise f.H2Error(f.PROTOCOL_ERROR, f"{frame} on {state.value} stream {sid}")
        if do is Do.STREAM_CLOSED:
            raise f.StreamError(sid, f.STREAM_CLOSED, f"{frame} on {state.value} stream {sid}")
        return do, s

    def _calm(self, event: str) -> None:
        abuse = self.meter.count(event)
        if abuse is not None:
            raise f.H2Error(f.ENHANCE_YOUR_CALM, abuse)

    # frames

    def _on_data(self, flags: int, sid: int, payload: memoryview) -> None:
        if sid == 0:
            raise f.H2Error(f.PROTOCOL_ERROR, "DATA on stream 0")
        size = len(payload)
        self._recv_window -= size
        if self._recv_window < 0:
            raise f.H2Error(f.FLOW_CONTROL_ERROR, "DATA beyond the connection window")
        if size == 0 and not flags & f.END_STREAM:
            self._calm("empty_data")
        do, s = self._check(sid, "DATA")
        if do is Do.IGNORE or s is None:
            return
        s.recv_window -= size
        if s.recv_window < 0:
            raise f.StreamError(sid, f.FLOW_CONTROL_ERROR, "DATA beyond the stream window")
        data = f.strip_padding(payload, flags, sid)
        s.received += len(data)
        if s.content_length is not None and s.received > s.content_length:
            raise f.StreamError(sid, f.PROTOCOL_ERROR, "more DATA than content-length")
        if not s.discard:
            # a streaming body holds at most a partial message and the frame completing it
            limit = self.max_body + (f.DEFAULT_MAX_FRAME if s.streaming else 0)
            if len(s.body) + len(data) > limit:
                s.discard = True
                self._drop_body(s)
                self.on_body_limit(s)
                if sid not in self.streams:
                    return
            elif s.streaming:
                if not s.body:  # a message starts: it has body_timeout to arrive
                    s.started = self._last_frame
                s.body += data
                self._hold(s, len(data))
                if data:
                    self.on_data(s)
                    if sid not in self.streams:
                        return
            else:
                s.body += data
                self._hold(s, len(data))
        if flags & f.END_STREAM:
            self._end_stream(s)
            return
        s.recv_unacked += size
        if s.recv_unacked >= STREAM_WINDOW // 2 and not s.hold:
            self._out.append(f.window_update(sid, s.recv_unacked))
            s.recv_window += s.recv_unacked
            s.recv_unacked = 0

    def _end_stream(self, s: Stream) -> None:
        s.remote_done = True
        if s.content_length is not None and s.received != s.content_length:
            raise f.StreamError(s.id, f.PROTOCOL_ERROR, f"content-length {s.content_length} "
                                f"but {s.received} bytes of DATA")
        if s.discard:
            self._forget(s)
            return
        self.on_end(s)
        if not s.streaming:  # a stream's reader gives its messages' credit back itself
            self._drop_body(s)  # consumed: its flow-control credit goes back to the peer

    def release_window(self, s: Stream) -> None:
        """The reader caught up: give the peer back the window held for ``s``."""
        s.hold = False
        if s.recv_unacked and self.streams.get(s.id) is s and not s.remote_done:
            self._out.append(f.window_update(s.id, s.recv_unacked))
            s.recv_window += s.recv_unacked
            s.recv_unacked = 0
            self._schedule_flush()

    def _on_headers_frame(self, flags: int, sid: int, payload: memoryview) -> None:
        if sid == 0:
            raise f.H2Error(f.PROTOCOL_ERROR, "HEADERS on stream 0")
        payload = f.strip_padding(payload, flags, sid)
        self_dependent = False
        if flags & f.PRIORITY_FLAG:
            if len(payload) < 5:
                raise f.H2Error(f.FRAME_SIZE_ERROR, "HEADERS priority fields are truncated")
            self_dependent = f.u32(payload) & 0x7FFFFFFF == sid
            payload = payload[5:]
        if len(payload) > MAX_HEADER_BLOCK:
            raise f.H2Error(f.ENHANCE_YOUR_CALM, f"header block over {MAX_HEADER_BLOCK} bytes")
        if flags & f.END_HEADERS:
            self._header_block(sid, flags & f.END_STREAM, bytes(payload), self_dependent)
        else:
            self._cont = (sid, flags & f.END_STREAM | (0x100 if self_dependent else 0),
                          bytearray(payload), 0)
            self._cont_since = self.loop.time()

    def _on_continuation(self, flags: int, sid: int, payload: memoryview) -> None:
        if self._cont is None or self._cont[0] != sid:
            raise f.H2Error(f.PROTOCOL_ERROR, f"unexpected CONTINUATION on stream {sid}")
        _, bits, block, count = self._cont
        block += payload
        if len(block) > MAX_HEADER_BLOCK:
            raise f.H2Error(f.ENHANCE_YOUR_CALM, f"header block over {MAX_HEADER_BLOCK} bytes")
        if count + 1 > MAX_CONTINUATIONS:
            raise f.H2Error(f.ENHANCE_YOUR_CALM, f"more than {MAX_CONTINUATIONS} CONTINUATION "
                            "frames in one header block")
        self._cont = (sid, bits, block, count + 1)
        if flags & f.END_HEADERS:
            self._cont = None
            self._header_block(sid, bits & f.END_STREAM, bytes(block), bool(bits & 0x100))

    def _header_block(self, sid: int, end_stream: int, block: bytes,
                      self_dependent: bool) -> None:
        too_large: HeaderListTooLarge | None = None
        try:  # always decoded first: the dynamic table must stay in sync
            headers = self._decoder.decode(block, self.limits.max_header_list)
        except HeaderListTooLarge as exc:
            headers, too_large = (), exc
        except HpackError as exc:
            raise f.H2Error(f.COMPRESSION_ERROR, f"header block: {exc}") from None
        do, s = self._check(sid, "HEADERS")
        if self_dependent:
            raise f.StreamError(sid, f.PROTOCOL_ERROR, "stream depends on itself")
        if do is Do.IGNORE:
            return
        if s is not None:  # trailers
            if not end_stream:
                raise f.StreamError(sid, f.PROTOCOL_ERROR, "trailers without END_STREAM")
            if too_large is not None:
                raise f.StreamError(sid, f.PROTOCOL_ERROR, str(too_large))
            try:
                check_trailers(headers)
            except MalformedError as exc:
                raise f.StreamError(sid, f.PROTOCOL_ERROR, str(exc)) from None
            self._end_stream(s)
            return
        if not sid & 1:
            raise f.H2Error(f.PROTOCOL_ERROR, f"HEADERS opening even stream {sid} (client "
                            "streams are odd)")
        if self.going_away:
            return  # beyond the last stream id of our GOAWAY: ignored, the client retries
        self.last_stream_id = sid
        if len(self.streams) >= self.max_streams:
            raise f.StreamError(sid, f.REFUSED_STREAM, "too many concurrent streams")
        if self._blocked and self.unsent_bytes() >= self.limits.connection_buffer:
            raise f.StreamError(sid, f.REFUSED_STREAM, "answers are waiting for your "
                                "flow-control window; read them first")
        s = Stream(sid, self._peer_initial, self.loop.time())
        s.remote_done = bool(end_stream)
        self.streams[sid] = s
        self._idle_since = None
        if too_large is not None:
            self.on_rejected(s, f"request headers of at least {too_large.size} bytes are over "
                             f"the limit of {too_large.limit}")
            return
        try:
            request = self._validated(headers)
        except MalformedError as exc:
            raise f.StreamError(sid, f.PROTOCOL_ERROR, str(exc)) from None
        s.headers = headers
        s.content_length = request.content_length
        s.request = request
        self.on_headers(s)
        if end_stream and sid in self.streams:
            self._end_stream(s)

    def vouch(self, s: Stream, name: str) -> None:
        """The never-indexed ``name`` header of ``s`` authenticated: the same value on this
        connection need not be decoded again (``Decoder.vouch``)."""
        self._decoder.vouch(s.headers, name)

    def _validated(self, headers: tuple[Header, ...]) -> Any:
        """``parse_request(headers)``, memoized for header lists served from the HPACK
        cache (the same tuple for every identical block) and, for lists decoded through an
        HPACK ``Shape``, per shape: only the never-indexed values are checked anew (the
        memo keeps the request with those values blank)."""
        shape = headers.shape if isinstance(headers, Shaped) else None
        key: Any = headers if shape is None else shape
        hit = self._checked.get(id(key))
        if hit is not None and hit[0] is key:
            return hit[1] if shape is None else refill(hit[1], headers, shape.holes)
        request = parse_request(headers)
        if len(self._checked) >= 64:
            self._checked.clear()
        if shape is None:
            self._checked[id(headers)] = (headers, request)
        else:
            blank = blanked(request, len(headers), shape.holes)
            if blank is not None:
                self._checked[id(shape)] = (shape, blank)
        return request

    def _on_priority(self, flags: int, sid: int, payload: memoryview) -> None:
        if sid == 0:
            raise f.H2Error(f.PROTOCOL_ERROR, "PRIORITY on stream 0")
        if len(payload) != 5:
            raise f.StreamError(sid, f.FRAME_SIZE_ERROR, "PRIORITY payload must be 5 bytes")
        self._calm("priority")
        if f.u32(payload) & 0x7FFFFFFF == sid:
            raise f.StreamError(sid, f.PROTOCOL_ERROR, "stream depends on itself")

    def _on_rst(self, flags: int, sid: int, payload: memoryview) -> None:
        if sid == 0:
            raise f.H2Error(f.PROTOCOL_ERROR, "RST_STREAM on stream 0")
        if len(payload) != 4:
            raise f.H2Error(f.FRAME_SIZE_ERROR, "RST_STREAM payload must be 4 bytes")
        _, s = self._check(sid, "RST_STREAM")
        if s is None:
            return
        if not s.local_done:
            self._calm("reset")
        self.reset_by_us.add(sid)  # frames in flight on it are ignored from now on
        self.recently_closed.add(sid)
        del self.streams[sid]
        self._blocked.pop(sid, None)
        self.release(s)
        self.on_reset(s)
        self._maybe_close()

    def _on_settings(self, flags: int, sid: int, payload: memoryview) -> None:
        if sid != 0:
            raise f.H2Error(f.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & f.ACK:
            if len(payload):
                raise f.H2Error(f.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            return
        if self._settings_seen:
            self._calm("settings")
        self._settings_seen = True
        for key, value in f.parse_settings(payload):
            if key == f.INITIAL_WINDOW_SIZE:
                if value > f.MAX_WINDOW:
                    raise f.H2Error(f.FLOW_CONTROL_ERROR, f"INITIAL_WINDOW_SIZE {value} > 2^31-1")
                delta, self._peer_initial = value - self._peer_initial, value
                for s in self.streams.values():
                    s.send_window += delta
                    if s.send_window > f.MAX_WINDOW:
                        raise f.H2Error(f.FLOW_CONTROL_ERROR, f"INITIAL_WINDOW_SIZE {value} "
                                        f"takes stream {s.id}'s window past 2^31-1")
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
        if flags & f.ACK:
            self._ping_sent = None
            return
        self._calm("ping")
        self._out.append(f.frame(f.PING, f.ACK, 0, bytes(payload)))

    def _on_goaway(self, flags: int, sid: int, payload: memoryview) -> None:
        if sid != 0:
            raise f.H2Error(f.PROTOCOL_ERROR, "GOAWAY on a stream")
        if len(payload) < 8:
            raise f.H2Error(f.FRAME_SIZE_ERROR, "GOAWAY payload is shorter than 8 bytes")
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
            _, s = self._check(sid, "WINDOW_UPDATE")
            if s is None:
                return
            if inc == 0:
                raise f.StreamError(sid, f.PROTOCOL_ERROR, "WINDOW_UPDATE with increment 0")
            s.send_window += inc
            if s.send_window > f.MAX_WINDOW:
                raise f.StreamError(sid, f.FLOW_CONTROL_ERROR, "stream window above 2^31-1")
        self._unblock()

    # receive-side flow control: window only for what the connection is willing to hold

    def _hold(self, s: Stream, n: int) -> None:
        s.held += n
        self.buffered += n
        self.limits.budget.used += n

    def _drop_body(self, s: Stream) -> None:
        """Give back the credit of ``s``'s body (the application may have taken the bytes)."""
        n, s.held = s.held, 0
        if len(s.body):
            s.body = bytearray()
        if n:
            self.buffered -= n
            self.limits.budget.used -= n

    def release(self, stream: Stream) -> None:
        self._drop_body(stream)
        if self.transport is not None and not self._receiving:
            self._replenish()
            self._schedule_flush()

    def give_back(self, s: Stream, n: int) -> None:
        """A streaming reader is done with ``n`` bytes it took off ``s.body``: their credit
        goes back to the peer."""
        n = min(n, s.held)
        if n:
            s.held -= n
            self.buffered -= n
            self.limits.budget.used -= n
            if self.transport is not None and not self._receiving:
                self._replenish()
                self._schedule_flush()

    def _replenish(self, force: bool = False) -> None:
        room = min(self.limits.connection_buffer - self.buffered, self.limits.budget.free)
        target = max(0, min(CONN_WINDOW, room))
        deficit = target - self._recv_window
        if deficit > 0 and (force or deficit >= CONN_WINDOW // 4 or self._recv_window
                            < CONN_WINDOW // 4):
            self._out.append(f.window_update(0, deficit))
            self._recv_window += deficit

    # timers

    def tick(self, now: float) -> None:
        """Apply the handshake, body, idle and keepalive timers (called once a second)."""
        if self.transport is None or self._closing:
            return
        lim = self.limits
        if not self._settings_seen:
            if now - self._opened_at > lim.handshake_timeout:
                log.info("closing an HTTP/2 connection that sent no preface and SETTINGS "
                         "within %g s", lim.handshake_timeout)
                self.abort()
            return
        if self._cont is not None and now - self._cont_since > lim.handshake_timeout:
            self.fail(f.ENHANCE_YOUR_CALM, f"a header block unfinished after "
                      f"{lim.handshake_timeout:g} s")
            return
        for s in list(self.streams.values()):
            if (not s.remote_done and (s.body or not s.streaming)
                    and now - s.started > lim.body_timeout):
                self.reset(s.id, f.CANCEL)
                self._flush()
        for s in list(self._blocked.values()):  # no window for the answer from the peer
            if now - s.blocked_at > lim.body_timeout:
                self.reset(s.id, f.CANCEL)
                self._flush()
        if not self.streams:
            if self._idle_since is None:
                self._idle_since = now
            elif now - self._idle_since > lim.idle_timeout:
                self.fail(f.NO_ERROR, f"idle for {lim.idle_timeout:g} s")
                return
        if self._ping_sent is not None:
            if now - self._ping_sent > lim.keepalive_timeout:
                self.fail(f.NO_ERROR, f"no PING ACK within {lim.keepalive_timeout:g} s")
        elif now - self._last_frame > lim.keepalive_interval:
            self._ping_sent = now
            self._out.append(f.frame(f.PING, 0, 0, b"tureen:k"))
            self._flush()
