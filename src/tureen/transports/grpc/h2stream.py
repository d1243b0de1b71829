"""Bidirectional streaming calls (``ModelStreamInfer``) on ``h2grpc``'s connections.

Request messages are cut out of the HTTP/2 body as they arrive (each a length-prefixed
``ModelInferRequest``) and handed to a ``StreamSession`` (``tureen.serving.streaming``); each
response or in-stream error goes out as one ``ModelStreamInferResponse`` message as soon as
it exists; trailers (``grpc-status`` 0) follow once the client half-closed and every request
was answered. The whole stream runs through the guard chain once (its request context is
current for every request of the stream, so services authorize each one).

Memory is bounded both ways: a decoded request keeps its bytes' flow-control credit (the
connection's buffer and the server's budget) until the session takes it; when
``MAX_WAITING`` decoded requests wait for a slot, the stream's receive window is held (the
client must stop sending on it); when more than
``HIGH_WATER`` response bytes wait for the client to read them, the requests producing
responses wait too.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import zlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from google.protobuf.message import DecodeError

from tureen.codecs.pb import inference_pb2 as pb
from tureen.error_codes import GrpcStatus as Status
from tureen.serving.context import RequestContext
from tureen.serving.dataplane import DataPlane
from tureen.serving.guard import GuardChain
from tureen.transports.grpc.h2conn import Stream
from tureen.transports.grpc.handlers import serve_stream, stream_error

if TYPE_CHECKING:
    from tureen.transports.grpc.h2grpc import GrpcConnection

log = logging.getLogger(__name__)

_PREFIX = struct.Struct(">BI")
MAX_WAITING = 64
HIGH_WATER = 8 * 1024 * 1024


class StreamCall:
    """The state of one streaming call; ``GrpcConnection`` feeds it body bytes."""

    def __init__(self, conn: GrpcConnection, s: Stream, name: str, ctx: RequestContext,
                 dp: DataPlane, chain: GuardChain, max_message: int) -> None:
        self.conn, self.stream, self.name, self.ctx = conn, s, name, ctx
        self.rid = ctx.request_id
        self.dp, self.chain, self.max_message = dp, chain, max_message
        self.deadline: float | None = None
        self.timeout = 0.0
        self.encoding: str | None = None
        self.timer: asyncio.TimerHandle | None = None
        #: decoded requests and the body bytes each took (their flow-control credit)
        self.waiting: asyncio.Queue[tuple[pb.ModelInferRequest, int] | None] = asyncio.Queue()
        self.drained = asyncio.Event()
        self.drained.set()
        self.task: asyncio.Task[None] | None = None
        self.failed = False

    def start(self) -> None:
        self.task = self.conn.loop.create_task(self.chain.run(self.ctx, self._serve))
        self.task.add_done_callback(self._finished)
        if self.deadline is not None:
            self.timer = self.conn.loop.call_at(self.deadline, self.expire)

    # input (called from data_received)

    def feed(self) -> None:
        """Decode every complete message in the stream's body."""
        s, body = self.stream, self.stream.body
        pos = 0
        while len(body) - pos >= 5 and not self.failed:
            flag, length = _PREFIX.unpack_from(body, pos)
            if length > self.max_message:
                self.fail(Status.RESOURCE_EXHAUSTED, f"a request message of {length} bytes is "
                          f"over the gRPC message limit of {self.max_message} bytes.")
                return
            if len(body) - pos - 5 < length:
                break
            data: Any = memoryview(body)[pos + 5:pos + 5 + length]
            pos += 5 + length
            try:
                if flag & 1:
                    if self.encoding is None:
                        raise ValueError("a message is flagged compressed but the call has no "
                                         "grpc-encoding")
                    data = inflate(data, self.encoding, self.max_message)
                msg = pb.ModelInferRequest.FromString(data)
            except (DecodeError, ValueError, OverflowError, zlib.error) as exc:
                del data
                self.fail(Status.INTERNAL, f"a request of the stream cannot be read: {exc}.")
                return
            del data
            self.waiting.put_nowait((msg, 5 + length))
        if pos:
            del body[:pos]
        if self.waiting.qsize() >= MAX_WAITING:
            s.hold = True

    def end_of_input(self) -> None:
        """The client half-closed: answer what was sent, then end the call."""
        self.feed()
        if self.stream.body and not self.failed:
            self.fail(Status.INTERNAL, "the stream ended inside a message (truncated).")
            return
        self.waiting.put_nowait(None)

    # serving (a task under the guard chain)

    async def _serve(self) -> None:
        await serve_stream(self.dp, self.ctx.headers, self._requests(), self._send)

    async def _requests(self) -> AsyncIterator[pb.ModelInferRequest]:
        while True:
            item = await self.waiting.get()
            if self.stream.hold and self.waiting.qsize() < MAX_WAITING // 2:
                self.conn.release_window(self.stream)
            if item is None:
                return
            self.conn.give_back(self.stream, item[1])
            yield item[0]

    async def _send(self, message: pb.ModelStreamInferResponse) -> None:
        payload = message.SerializeToString()
        if len(payload) > self.max_message:
            r = message.infer_response
            payload = stream_error(
                f"the response of {len(payload)} bytes is over the gRPC message limit of "
                f"{self.max_message} bytes.", r.model_name, r.model_version, r.id,
            ).SerializeToString()
        conn, s = self.conn, self.stream
        if conn.streams.get(s.id) is not s:
            raise asyncio.CancelledError  # reset by the client or the connection is gone
        if not s.head_sent:
            conn.send_headers(s, conn.head)
        conn.send_data(s, _PREFIX.pack(0, len(payload)) + payload)
        if s.queued > HIGH_WATER:
            self.drained.clear()
            s.on_drain = self.drained.set
            await self.drained.wait()

    # ending

    def _finished(self, task: asyncio.Task[None]) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if task.cancelled() or self.failed:
            return
        exc = task.exception()
        if exc is None:
            self.conn.end_call(self.stream, Status.OK, "")
            return
        status, message = getattr(exc, "grpc", Status.INTERNAL), getattr(exc, "message", "")
        if not message:
            log.error("stream %s ended with %r (request id %s)", self.name, exc, self.rid)
            message = ("internal server error; the server log has the details under "
                       f"request id {self.rid}.")
        self.conn.end_call(self.stream, status, message)

    def fail(self, status: Status, message: str) -> None:
        """End the call now with ``status`` (the requests still running are cancelled)."""
        if self.failed:
            return
        self.failed = True
        if self.task is not None:
            self.task.cancel()
        self.conn.end_call(self.stream, status, message)

    def expire(self) -> None:
        self.fail(Status.DEADLINE_EXCEEDED, f"{self.name} did not finish within the call's "
                  f"deadline of {self.timeout:g} s.")

    def cancel(self) -> None:
        """The client reset the stream or went away."""
        self.failed = True
        if self.timer is not None:
            self.timer.cancel()
        if self.task is not None:
            self.task.cancel()


def inflate(data: memoryview, encoding: str, limit: int) -> bytes:
    """A ``grpc-encoding`` gzip/deflate message, refusing to grow past ``limit``."""
    d = zlib.decompressobj(31 if encoding == "gzip" else 15)
    out = d.decompress(data, limit + 1)
    if len(out) > limit:
        raise OverflowError("the decompressed message is over the gRPC message limit")
    if not d.eof:
        raise zlib.error("truncated stream")
    return out
