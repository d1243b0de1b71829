"""What an HTTP/2 peer may cost: the limits of a connection, the server-wide body budget, and
the counting of frames a peer makes the server handle for free.

Frames that cost the server work but carry no request — PINGs and SETTINGS (each owes an
ACK), streams the peer resets before they are answered (Rapid Reset, CVE-2023-44487), empty
DATA frames, PRIORITY frames, CONTINUATION frames — are counted in fixed windows of
``WINDOW`` seconds. A peer over a limit is an abuser: the connection gets GOAWAY
(ENHANCE_YOUR_CALM) and is closed, while other connections are served as usual. The limits
sit far above what grpcio, Triton's, KServe's and Go's clients send.
"""

from __future__ import annotations

import time

WINDOW = 10.0

#: event -> most allowed per window (resets: beyond the streams answered in the window)
LIMITS: dict[str, int] = {
    "ping": 1000,
    "settings": 500,
    "reset": 500,
    "empty_data": 1000,
    "priority": 2000,
}
#: CONTINUATION frames allowed in one header block
MAX_CONTINUATIONS = 64


class Meter:
    __slots__ = ("answered", "counts", "limits", "started")

    def __init__(self, limits: dict[str, int] | None = None) -> None:
        self.limits = limits or LIMITS
        self.counts: dict[str, int] = dict.fromkeys(self.limits, 0)
        self.answered = 0
        self.started = time.monotonic()

    def _roll(self) -> None:
        now = time.monotonic()
        if now - self.started >= WINDOW:
            self.started = now
            self.answered = 0
            for k in self.counts:
                self.counts[k] = 0

    def count(self, event: str) -> str | None:
        """Count one ``event``; a description of the abuse when it is over its limit."""
        self._roll()
        n = self.counts[event] = self.counts[event] + 1
        limit = self.limits[event] + (self.answered if event == "reset" else 0)
        if n > limit:
            return f"more than {limit} {event.replace('_', ' ')} frames in {WINDOW:g} s"
        return None

    def answered_one(self) -> None:
        self.answered += 1


class Budget:
    """Request-body bytes all connections of one server may hold at once; a connection
    stops granting flow-control window while the budget is spent."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    @property
    def free(self) -> int:
        return max(0, self.limit - self.used)


class H2Limits:
    """What one HTTP/2 connection and its streams may cost (``ServingConfig.limits``)."""

    def __init__(
        self,
        max_body: int,
        *,
        max_streams: int = 1000,
        max_header_list: int = 64 * 1024,
        connection_buffer: int | None = None,
        budget: Budget | None = None,
        handshake_timeout: float = 10.0,
        idle_timeout: float = 300.0,
        keepalive_interval: float = 60.0,
        keepalive_timeout: float = 20.0,
        body_timeout: float = 60.0,
        write_high_water: int = 1024 * 1024,
    ) -> None:
        self.max_body = max_body
        self.max_streams = max_streams
        self.max_header_list = max_header_list
        #: request-body bytes one connection may hold (at least one full message)
        self.connection_buffer = connection_buffer or max_body + 32 * 1024 * 1024
        self.budget = budget or Budget(max(self.connection_buffer, 1 << 30))
        self.handshake_timeout = handshake_timeout
        self.idle_timeout = idle_timeout
        self.keepalive_interval = keepalive_interval
        self.keepalive_timeout = keepalive_timeout
        self.body_timeout = body_timeout
        self.write_high_water = write_high_water
