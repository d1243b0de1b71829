"""The sending half of a server-side HTTP/2 connection, and its lifecycle.

Every frame the server sends is queued in one list and written with a single
``transport.write`` per event-loop callback. Response bodies are flow-controlled DATA
(stream and connection windows), one body (``send_response``) or a stream of messages
(``send_headers``, ``send_data`` any number of times, ``finish``); a stream's answer ends
with END_STREAM, and an answer given before the request ended also resets the request
(NO_ERROR, §8.1). When the transport's write buffer is over its high-water mark
(``pause_writing``) the connection stops reading, so a peer that does not read cannot make
the server queue answers (PING and SETTINGS ACKs, refusals) without bound. Shutdown sends
GOAWAY and closes once the streams in flight are done; a connection error sends GOAWAY with
its code and closes at once.
"""

from __future__ import annotations

import asyncio
import logging

from tureen.transports.grpc import h2frames as f
from tureen.transports.grpc.h2calm import H2Limits, Meter
from tureen.transports.grpc.h2streams import ClosedStreams, Stream
from tureen.transports.grpc.hpack import Encoder

log = logging.getLogger(__name__)


class H2Output(asyncio.Protocol):
    def __init__(self, limits: H2Limits) -> None:
        self.limits = limits
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.streams: dict[int, Stream] = {}
        self.reset_by_us = ClosedStreams()
        self.recently_closed = ClosedStreams()
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self.encoder = Encoder()
        self.meter = Meter()
        self.last_stream_id = 0
        self.going_away = False
        self.peer_max_frame = f.DEFAULT_MAX_FRAME
        self.send_window = f.DEFAULT_WINDOW
        self._out: list[bytes | memoryview] = []
        self._flush_scheduled = False
        self._receiving = False
        self._closing = False
        self._blocked: dict[int, Stream] = {}
        self._writing_paused = False
        self._reading_paused = False

    # hooks for the application and the receiving half

    def on_reset(self, stream: Stream) -> None:
        raise NotImplementedError

    def release(self, stream: Stream) -> None:
        """The stream's buffered request body is no longer needed (flow-control credit)."""

    # backpressure (asyncio calls these around the transport's high-water mark)

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._update_reading()

    def _update_reading(self) -> None:
        t = self.transport
        if t is None or self._closing:
            return
        if self._writing_paused and not self._reading_paused:
            self._reading_paused = True
            t.pause_reading()
        elif not self._writing_paused and self._reading_paused:
            self._reading_paused = False
            t.resume_reading()

    # sending

    def send_headers_only(self, s: Stream, block: bytes) -> None:
        """A complete response in one header block (e.g. gRPC trailers-only)."""
        self._out += f.header_frames(s.id, self.encoder.prefix() + block, True,
                                     self.peer_max_frame)
        self._done(s)

    def send_response(self, s: Stream, head: bytes, body: bytes, trailers: bytes) -> None:
        """Headers, the body as flow-controlled DATA, then trailers (END_STREAM)."""
        size, mf = len(body), self.peer_max_frame
        if (0 < size <= mf and size <= s.send_window and size <= self.send_window
                and len(trailers) <= mf and s.pending is None
                and self.streams.get(s.id) is s and s.id not in self._blocked):
            # the common unary answer: the window takes the body, each part fits one frame;
            # the same frames send_headers + send_data + _push queue, in one step
            head = self.encoder.prefix() + head
            if len(head) <= mf:
                sid = s.id
                self._out += (
                    f.frame_header(len(head), f.HEADERS, f.END_HEADERS, sid), head,
                    f.frame_header(size, f.DATA, 0, sid), body,
                    f.frame_header(len(trailers), f.HEADERS, f.END_STREAM | f.END_HEADERS, sid),
                    trailers)
                s.head_sent = True
                s.trailers = trailers
                s.send_window -= size
                self.send_window -= size
                if s.on_drain is not None:
                    s.on_drain()
                self._done(s)
                return
            self._out += f.header_frames(s.id, head, False, mf)  # (the prefix is in head)
            s.head_sent = True
            s.trailers = trailers
            self.send_data(s, body)
            return
        self.send_headers(s, head)
        s.trailers = trailers
        self.send_data(s, body)

    def send_headers(self, s: Stream, head: bytes) -> None:
        """The response headers of a stream whose DATA and trailers follow."""
        self._out += f.header_frames(s.id, self.encoder.prefix() + head, False,
                                     self.peer_max_frame)
        s.head_sent = True
        s.trailers = None

    def send_data(self, s: Stream, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data`` after what ``s`` already queued (flow-controlled DATA frames)."""
        if self.streams.get(s.id) is not s:
            return
        s.queued += len(data)
        if s.pending is None:
            s.pending = memoryview(data)
        else:
            s.more.append(memoryview(data))
        if s.id not in self._blocked:
            self._push(s)
        self._schedule_flush()

    def finish(self, s: Stream, trailers: bytes) -> None:
        """End a streaming response with ``trailers`` once its queued DATA is out."""
        if self.streams.get(s.id) is not s:
            return
        s.trailers = trailers
        if s.id not in self._blocked:
            self._push(s)
        self._schedule_flush()

    def _push(self, s: Stream) -> None:
        while s.pending is not None:
            data = s.pending
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
                s.queued -= avail
                data = s.pending = data[avail:]
            if len(data):
                if avail > 0 or s.id not in self._blocked:
                    s.blocked_at = self.loop.time()  # progress (or new): the stall starts now
                self._blocked[s.id] = s
                return
            s.pending = s.more.pop(0) if s.more else None
        self._blocked.pop(s.id, None)
        if s.on_drain is not None:
            s.on_drain()
        if s.trailers is None:
            return  # a streaming response: more may come
        self._out += f.header_frames(s.id, self.encoder.prefix() + s.trailers, True,
                                     self.peer_max_frame)
        self._done(s)

    def unsent_bytes(self) -> int:
        """Answer bytes waiting for the peer's flow-control window."""
        return sum(s.queued for s in self._blocked.values())

    def _unblock(self) -> None:
        for s in list(self._blocked.values()):
            if self.send_window <= 0:
                break
            if s.send_window > 0:
                self._push(s)
        self._schedule_flush()

    def reset(self, sid: int, code: int) -> None:
        """RST_STREAM ``sid`` with ``code``; frames the peer already sent on it are ignored."""
        self._out.append(f.rst_stream(sid, code))
        self.reset_by_us.add(sid)
        self.recently_closed.add(sid)
        s = self.streams.pop(sid, None)
        if s is not None:
            self._blocked.pop(sid, None)
            self.release(s)
            self.on_reset(s)
        self._schedule_flush()
        self._maybe_close()

    def _done(self, s: Stream) -> None:
        """Our side of ``s`` is complete (END_STREAM queued)."""
        s.local_done = True
        self.meter.answered_one()
        if not s.remote_done:  # answered early: ask the client to stop sending (§8.1)
            self._out.append(f.rst_stream(s.id, f.NO_ERROR))
            self.reset_by_us.add(s.id)
        self._forget(s)
        self._schedule_flush()

    def _forget(self, s: Stream) -> None:
        if self.streams.get(s.id) is s:
            del self.streams[s.id]
            self.recently_closed.add(s.id)
            self._blocked.pop(s.id, None)
            self.release(s)
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
        self._end_all()
        self.close()

    def _end_all(self) -> None:
        streams, self.streams = self.streams, {}
        self._blocked.clear()
        for s in streams.values():
            self.release(s)
            self.on_reset(s)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
