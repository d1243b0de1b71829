"""HTTP/2 stream states on the server side (RFC 9113 §5.1), as an explicit table.

A server never reserves streams (no PUSH_PROMISE), so a stream is::

    IDLE ──HEADERS──▶ OPEN ──peer END_STREAM──▶ HALF_CLOSED_REMOTE ──our END_STREAM──▶ CLOSED
      │                 │                                                              ▲
      │                 └──our END_STREAM──▶ HALF_CLOSED_LOCAL ──peer END_STREAM───────┘
      └──HEADERS+END_STREAM──▶ HALF_CLOSED_REMOTE            RST_STREAM (either way) ──▶ CLOSED

``RECEIVE[(state, frame)]`` says what receiving a frame does: the next state, or the error
(a stream error answered with RST_STREAM, or a connection error answered with GOAWAY).
``Stream.state`` is derived from the two END_STREAM flags; ``IDLE`` and ``CLOSED`` streams
have no ``Stream`` object: a stream id above the highest one opened is idle, one below it
that is not open is closed (§5.1.1). The most recent closed streams are remembered: frames
on a stream the server reset may still arrive (sent before the peer saw the reset) and are
ignored (§5.4.2); DATA or HEADERS on another closed stream is a STREAM_CLOSED stream error,
not a connection error. HEADERS on a lower id that was never opened is a PROTOCOL_ERROR
(§5.1.1: stream ids only grow).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from enum import Enum
from typing import Any

from tureen.transports.grpc.hpack import Header

#: what a stream may send before we replenish its window
STREAM_WINDOW = 8 * 1024 * 1024


class State(Enum):
    IDLE = "idle"
    OPEN = "open"
    HALF_CLOSED_REMOTE = "half-closed (remote)"
    HALF_CLOSED_LOCAL = "half-closed (local)"
    CLOSED = "closed"


class Do(Enum):
    """What receiving a frame in a state means."""

    OK = "ok"  # handle it
    IGNORE = "ignore"  # drop it (account for flow control)
    STREAM_CLOSED = "stream STREAM_CLOSED"  # RST_STREAM(STREAM_CLOSED) on that stream
    PROTOCOL = "connection PROTOCOL_ERROR"  # GOAWAY(PROTOCOL_ERROR)


S = State
#: (state, frame) -> what to do; frames not listed for a state are handled (``Do.OK``)
RECEIVE: dict[tuple[State, str], Do] = {
    (S.IDLE, "DATA"): Do.PROTOCOL,
    (S.IDLE, "RST_STREAM"): Do.PROTOCOL,
    (S.IDLE, "WINDOW_UPDATE"): Do.PROTOCOL,
    (S.IDLE, "CONTINUATION"): Do.PROTOCOL,
    (S.HALF_CLOSED_REMOTE, "DATA"): Do.STREAM_CLOSED,
    (S.HALF_CLOSED_REMOTE, "HEADERS"): Do.STREAM_CLOSED,
    (S.CLOSED, "DATA"): Do.STREAM_CLOSED,
    (S.CLOSED, "HEADERS"): Do.STREAM_CLOSED,
    (S.CLOSED, "WINDOW_UPDATE"): Do.IGNORE,
    (S.CLOSED, "RST_STREAM"): Do.IGNORE,
    (S.CLOSED, "PRIORITY"): Do.OK,
}

#: frames a stream the server reset may still receive, already in flight: ignored (§5.4.2)
AFTER_OUR_RESET = frozenset({"DATA", "HEADERS", "WINDOW_UPDATE", "RST_STREAM", "PRIORITY"})


def on_receive(state: State, frame: str, reset_by_us: bool = False,
               known: bool = True) -> Do:
    """``known``: for a closed stream, whether it is one this connection opened recently."""
    if state is S.CLOSED:
        if reset_by_us and frame in AFTER_OUR_RESET:
            return Do.IGNORE
        if not known and frame == "HEADERS":
            return Do.PROTOCOL
    return RECEIVE.get((state, frame), Do.OK)


class Stream:
    __slots__ = ("blocked_at", "body", "call", "content_length", "discard", "head_sent",
                 "headers", "held", "hold", "id", "local_done", "more", "on_drain", "pending",
                 "queued",
                 "received", "recv_unacked", "recv_window", "remote_done", "request",
                 "send_window", "started", "streaming", "trailers")

    def __init__(self, stream_id: int, send_window: int, started: float) -> None:
        self.id = stream_id
        self.headers: tuple[Header, ...] = ()
        self.body = bytearray()
        self.held = 0  # bytes of ``body`` counted against the connection's buffer
        self.received = 0  # body bytes the peer sent (for content-length)
        self.content_length: int | None = None
        self.remote_done = False  # the peer sent END_STREAM
        self.local_done = False  # we sent END_STREAM (or our answer is queued to)
        self.recv_window = STREAM_WINDOW
        self.recv_unacked = 0
        self.send_window = send_window
        self.pending: memoryview | None = None  # response bytes waiting for window
        self.more: list[memoryview] = []  # further messages of a streaming response, in order
        self.queued = 0  # bytes of pending + more
        self.blocked_at = 0.0  # loop time the answer last waited for window with no progress
        self.head_sent = False
        #: None while a streaming response may still send data; then the trailer block
        self.trailers: bytes | None = b""
        self.on_drain: Callable[[], None] | None = None  # queued bytes fell to 0
        #: the body is a stream of messages its reader takes as they arrive (``on_data``)
        self.streaming = False
        self.hold = False  # do not replenish the receive window (the reader fell behind)
        self.discard = False  # the answer went out early: drop further DATA
        self.call: Any = None  # the application's state for this stream
        self.request: Any = None  # the validated request (h2request.Request)
        self.started = started  # loop time the stream opened (body deadline)

    @property
    def state(self) -> State:
        if self.remote_done:
            return S.CLOSED if self.local_done else S.HALF_CLOSED_REMOTE
        return S.HALF_CLOSED_LOCAL if self.local_done else S.OPEN

    @property
    def ended(self) -> bool:
        """The peer sent END_STREAM."""
        return self.remote_done


class ClosedStreams:
    """Ids of closed streams, the most recent ``keep`` of them."""

    def __init__(self, keep: int = 1024) -> None:
        self.keep = keep
        self._ids: OrderedDict[int, None] = OrderedDict()

    def add(self, stream_id: int) -> None:
        self._ids[stream_id] = None
        if len(self._ids) > self.keep:
            self._ids.popitem(last=False)

    def __contains__(self, stream_id: object) -> bool:
        return stream_id in self._ids

    def clear(self) -> None:
        self._ids.clear()
