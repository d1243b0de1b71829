"""A raw HTTP/2 peer for negative tests: frames built with python-hyper's ``hyperframe`` and
``hpack`` (not tureen's own code), written on a real socket, answers read back frame by frame.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from hpack import Decoder, Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SERVICE = "/inference.GRPCInferenceService"
LIVE = f"{SERVICE}/ServerLive"
EMPTY_MESSAGE = b"\0\0\0\0\0"

# error codes (RFC 9113 §7)
NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR, STREAM_CLOSED = 0x0, 0x1, 0x3, 0x5
FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = 0x6, 0x7, 0x8, 0x9
ENHANCE_YOUR_CALM = 0xB


def request_headers(path: str = LIVE, extra: list[tuple[str, str]] | None = None,
                    **override: str) -> list[tuple[str, str]]:
    base = {":method": "POST", ":scheme": "http", ":path": path, ":authority": "test",
            "content-type": "application/grpc", "te": "trailers", **override}
    return [*base.items(), *(extra or [])]


@dataclass
class Outcome:
    """What the server did about one stream (and the connection)."""

    headers: dict[str, str] = field(default_factory=dict)
    rst: int | None = None
    goaway: int | None = None
    goaway_debug: bytes = b""
    closed: bool = False
    ended: bool = False

    @property
    def grpc_status(self) -> str | None:
        return self.headers.get("grpc-status")

    def refused(self) -> bool:
        """Not a successful call: an error status, a reset, GOAWAY or a closed socket."""
        return (self.rst is not None or self.goaway not in (None,) or self.closed
                or self.grpc_status not in (None, "0"))


class Peer:
    def __init__(self, target: str, timeout: float = 10.0, settings: bool = True) -> None:
        host, port = target.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.enc, self.dec = Encoder(), Decoder()
        self.buf = b""
        self.frames: list[Frame] = []
        if settings:
            self.raw(PREFACE + SettingsFrame(0).serialize())

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # writing

    def raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, *frames: Frame) -> None:
        self.raw(b"".join(fr.serialize() for fr in frames))

    def block(self, headers: list[tuple[str, str]]) -> bytes:
        return bytes(self.enc.encode(headers))

    def headers(self, sid: int, headers: list[tuple[str, str]], end_stream: bool = False,
                **kw: Any) -> HeadersFrame:
        flags = {"END_HEADERS"} | ({"END_STREAM"} if end_stream else set())
        fr = HeadersFrame(sid, self.block(headers), flags=flags, **kw)
        return fr

    def call(self, sid: int, headers: list[tuple[str, str]] | None = None,
             body: bytes = EMPTY_MESSAGE) -> list[Frame]:
        return [self.headers(sid, headers or request_headers()),
                DataFrame(sid, body, flags={"END_STREAM"})]

    # reading

    def _read_frame(self, deadline: float) -> Frame | None:
        while True:
            if len(self.buf) >= 9:
                length = struct.unpack(">I", b"\0" + self.buf[:3])[0]
                if len(self.buf) >= 9 + length:
                    fr, n = Frame.parse_frame_header(memoryview(self.buf[:9]))
                    fr.parse_body(memoryview(self.buf[9:9 + n]))
                    self.buf = self.buf[9 + n:]
                    self.frames.append(fr)
                    return fr
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return None
            except OSError:
                chunk = b""
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk

    def outcome(self, sid: int, timeout: float = 5.0) -> Outcome:
        """Read until stream ``sid`` ends, is reset, the connection goes away or closes."""
        out = Outcome()
        deadline = time.monotonic() + timeout
        while True:
            try:
                fr = self._read_frame(deadline)
            except ConnectionError:
                out.closed = True
                return out
            if fr is None:
                return out
            if isinstance(fr, GoAwayFrame):
                out.goaway, out.goaway_debug = fr.error_code, fr.additional_data
                if fr.error_code != NO_ERROR or sid > fr.last_stream_id:
                    return out
            elif fr.stream_id == sid:
                if isinstance(fr, RstStreamFrame):
                    out.rst = fr.error_code
                    return out
                if isinstance(fr, HeadersFrame):
                    out.headers.update(
                        (k.decode() if isinstance(k, bytes) else k,
                         v.decode() if isinstance(v, bytes) else v)
                        for k, v in self.dec.decode(fr.data))
                if "END_STREAM" in fr.flags:
                    out.ended = True
                    return out
            elif isinstance(fr, HeadersFrame):  # keep the HPACK state of other streams
                self.dec.decode(fr.data)


def legit_call(target: str, timeout: float = 10.0) -> bool:
    """A well-formed ServerLive call on a fresh connection answers grpc-status 0."""
    try:
        with Peer(target, timeout) as p:
            p.send(*p.call(1))
            return p.outcome(1, timeout).grpc_status == "0"
    except OSError:
        return False


__all__ = [
    "ContinuationFrame", "DataFrame", "GoAwayFrame", "HeadersFrame", "Outcome", "Peer",
    "PingFrame", "PriorityFrame", "RstStreamFrame", "SettingsFrame", "WindowUpdateFrame",
    "legit_call", "request_headers",
]
