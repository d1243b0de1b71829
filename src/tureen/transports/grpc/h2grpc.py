"""Unary gRPC calls (the gRPC-over-HTTP2 protocol) on ``H2Connection``.

A call is ``POST /inference.GRPCInferenceService/<Method>`` with ``content-type:
application/grpc``; its body is one length-prefixed message (flag byte, 4-byte big-endian
length; flag 1 = compressed with ``grpc-encoding``). The answer is HEADERS (``:status 200``),
one DATA message and trailers (``grpc-status``, ``grpc-message``, ``x-request-id``), or a
trailers-only HEADERS frame for errors. Handlers are ``handlers.InferenceServicer``'s, run
through the guard chain and started with ``drive_eager`` so that calls which never suspend
finish inside ``data_received`` and leave in the same write, and a call that waits (for its
batch) is resumed by the future it waits for, without a Task of its own.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import zlib
from functools import partial
from typing import Any, cast

from google.protobuf.message import DecodeError

from tureen.error_codes import GrpcStatus as Status
from tureen.errors import InvalidRequestError, PayloadTooLargeError
from tureen.serving.context import RequestContext
from tureen.serving.dataplane import DataPlane
from tureen.serving.guard import GuardChain, RequestFailedError
from tureen.serving.ratelog import RateLimitedLog
from tureen.transports.eager import Driven, drive_eager
from tureen.transports.grpc import h2frames as f
from tureen.transports.grpc.h2calm import H2Limits
from tureen.transports.grpc.h2conn import H2Connection, Stream
from tureen.transports.grpc.h2request import Request
from tureen.transports.grpc.h2stream import StreamCall, inflate
from tureen.transports.grpc.handlers import METHODS, SERVICE_NAME, STREAMS, InferenceServicer
from tureen.transports.grpc.hpack import Shaped, encode_field, encode_str

log = logging.getLogger(__name__)

_PREFIX = struct.Struct(">BI")
HEAD = encode_field(":status", "200") + encode_field("content-type", "application/grpc")
_STATUS = [encode_field("grpc-status", str(int(s))) for s in Status]
_RID = b"\x00" + encode_str("x-request-id")
_ENCODINGS = "identity,deflate,gzip"
#: request headers that are protocol, not metadata for the model
_NOT_METADATA = frozenset(("content-type", "te", "grpc-timeout", "grpc-encoding",
                           "grpc-accept-encoding"))
#: messages larger than this are decoded in a thread, not on the event loop
OFFLOAD_BYTES = 1024 * 1024
_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def percent_encode(message: str) -> str:
    """``grpc-message``'s encoding: printable ASCII but '%' as is, other UTF-8 bytes %XX."""
    raw = message.encode()
    if all(0x20 <= b <= 0x7E and b != 0x25 for b in raw):
        return message
    return "".join(chr(b) if 0x20 <= b <= 0x7E and b != 0x25 else f"%{b:02X}" for b in raw)


def trailers(status: int, message: str, rid: str) -> bytes:
    block = _STATUS[status]
    if message:
        block += encode_field("grpc-message", percent_encode(message))
    return block + _RID + encode_str(rid)


def parse_timeout(value: str) -> float:
    """``grpc-timeout`` (1-8 digits and a unit) in seconds."""
    unit = _TIMEOUT_UNITS.get(value[-1:])
    digits = value[:-1]
    if unit is None or not digits.isdigit() or len(digits) > 8:
        raise ValueError(value)
    return int(digits) * unit


class Service:
    """What every connection of one server shares."""

    def __init__(self, dataplane: DataPlane, max_message_bytes: int, max_streams: int,
                 chain: GuardChain | None = None, limits: H2Limits | None = None,
                 max_connections: int = 1000) -> None:
        servicer = InferenceServicer(dataplane)
        self.chain = chain or GuardChain()
        self.methods: dict[str, tuple[str, Any, Any]] = {
            f"/{SERVICE_NAME}/{name}": (name, getattr(servicer, name), req)
            for name, (req, _) in METHODS.items()
        }
        self.streaming = {f"/{SERVICE_NAME}/{name}": name for name in STREAMS}
        self.dataplane = dataplane
        self.max_message = max_message_bytes
        self.max_streams = max_streams
        self.limits = limits or H2Limits(max_message_bytes + 5, max_streams=max_streams)
        self.max_connections = max_connections
        self.connections: set[GrpcConnection] = set()
        self.refusals = RateLimitedLog(log)


class Call:
    __slots__ = ("ctx", "deadline", "encoding", "fn", "name", "req_cls", "rid", "task",
                 "timeout", "timer")

    def __init__(self, name: str, fn: Any, req_cls: Any, ctx: RequestContext) -> None:
        self.name, self.fn, self.req_cls, self.ctx = name, fn, req_cls, ctx
        self.rid = ctx.request_id
        self.deadline: float | None = None
        self.timeout = 0.0
        self.encoding: str | None = None
        self.task: Driven | None = None
        self.timer: asyncio.TimerHandle | None = None


class GrpcConnection(H2Connection):
    #: the response headers of every call
    head = HEAD

    def __init__(self, service: Service) -> None:
        super().__init__(service.max_message + 5, service.max_streams, service.limits)
        self.service = service
        self.peer: str | None = None
        self.peer_cert: dict[str, Any] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if len(self.service.connections) >= self.service.max_connections:
            self.service.refusals.warning(
                "refusing a gRPC connection: %d connections are open (the limit)",
                len(self.service.connections))
            cast(asyncio.Transport, transport).write(f.settings({}) + f.goaway(
                0, f.ENHANCE_YOUR_CALM, "connection limit reached; retry later"))
            transport.close()
            return
        self.service.connections.add(self)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else None
        self.peer_cert = transport.get_extra_info("peercert") or None
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.service.connections.discard(self)
        super().connection_lost(exc)

    # answers

    def fail_call(self, s: Stream, status: Status, message: str, rid: str = "",
                  extra: bytes = b"") -> None:
        """A trailers-only response (trailers after what a stream already sent)."""
        if rid == "" and isinstance(s.call, Call | StreamCall):
            rid = s.call.rid
        if s.head_sent:
            self.finish(s, trailers(status, message, rid or "-"))
            return
        self.send_headers_only(s, HEAD + extra + trailers(status, message, rid or "-"))

    def end_call(self, s: Stream, status: Status, message: str) -> None:
        """The end of a streaming call (its trailers; the headers first if none went out)."""
        if self.streams.get(s.id) is s:
            self.fail_call(s, status, message)

    def http_error(self, s: Stream, code: int, message: str) -> None:
        self.send_headers_only(s, encode_field(":status", str(code)) + trailers(
            Status.UNIMPLEMENTED if code == 405 else Status.INTERNAL, message, "-"))

    # H2Connection hooks

    def on_rejected(self, s: Stream, why: str) -> None:
        self.fail_call(s, Status.RESOURCE_EXHAUSTED, f"{why}; send less metadata.")

    def on_headers(self, s: Stream) -> None:
        request: Request = s.request
        method, path = request.method, request.path
        ctype = timeout = encoding = None
        md: dict[str, str] = {}
        for name, value in request.fields:
            if name == "content-type":
                ctype = value
            elif name == "grpc-timeout":
                timeout = value
            elif name == "grpc-encoding":
                encoding = value
            elif name not in _NOT_METADATA and not name.endswith("-bin"):
                seen = md.get(name)  # repeated keys are kept, joined as HTTP does
                md[name] = value if seen is None else f"{seen}, {value}"
        if method != "POST":
            self.http_error(s, 405, f"gRPC calls are POST requests, not {method}.")
            return
        if ctype is None or not (ctype == "application/grpc" or
                                 ctype.startswith(("application/grpc+", "application/grpc;"))):
            self.http_error(s, 415, f"content-type {ctype!r} is not application/grpc; this "
                            "port serves gRPC only.")
            return
        ctx = self.service.chain.context("grpc", path, md, self.peer, self.peer_cert)
        rid = ctx.request_id
        entry = self.service.methods.get(path)
        call: Call | StreamCall
        if entry is not None:
            call = s.call = Call(entry[0], entry[1], entry[2], ctx)
        elif path in self.service.streaming:
            call = s.call = StreamCall(self, s, self.service.streaming[path], ctx,
                                       self.service.dataplane, self.service.chain,
                                       self.service.max_message)
            s.streaming = True
        else:
            self.fail_call(s, Status.UNIMPLEMENTED, f"unknown method {path}; this server "
                           f"serves {SERVICE_NAME} ({', '.join([*METHODS, *STREAMS])}).", rid)
            return
        if encoding is not None and encoding != "identity":
            if encoding not in ("gzip", "deflate"):
                self.fail_call(s, Status.UNIMPLEMENTED, f"grpc-encoding {encoding!r} is not "
                               f"supported; use one of {_ENCODINGS}.", rid,
                               encode_field("grpc-accept-encoding", _ENCODINGS))
                return
            call.encoding = encoding
        if timeout is not None:
            try:
                call.timeout = parse_timeout(timeout)
            except ValueError:
                self.fail_call(s, Status.INVALID_ARGUMENT, f"malformed grpc-timeout "
                               f"{timeout[:20]!r}.", rid)
                return
            call.deadline = self.loop.time() + call.timeout
        if isinstance(call, StreamCall):
            call.start()

    def on_body_limit(self, s: Stream) -> None:
        self.fail_call(s, Status.RESOURCE_EXHAUSTED, _too_large(
            "request", None, self.service.max_message))

    def on_data(self, s: Stream) -> None:
        if isinstance(s.call, StreamCall):
            s.call.feed()

    def on_end(self, s: Stream) -> None:
        call = s.call
        if isinstance(call, StreamCall):
            call.end_of_input()
            return
        assert isinstance(call, Call)
        body = s.body
        size = len(body)
        if size < 5:
            self.fail_call(s, Status.INVALID_ARGUMENT, f"{call.name} got no request message; "
                           "send exactly one.")
            return
        flag, length = _PREFIX.unpack_from(body)
        if length + 5 != size:
            what = "is truncated" if length + 5 > size else "holds more than one message"
            self.fail_call(s, Status.INVALID_ARGUMENT, f"the request body {what}; a unary "
                           "call carries exactly one length-prefixed message.")
            return
        if flag & 1 and call.encoding is None:
            self.fail_call(s, Status.INVALID_ARGUMENT, "the message is flagged compressed but "
                           "the call has no grpc-encoding; send grpc-encoding: gzip.")
            return
        s.body = bytearray()  # the call owns it now (h2conn has released its credit)
        if call.deadline is not None and self.loop.time() >= call.deadline:
            self._expire(s)
            return
        task = drive_eager(self.service.chain.run(call.ctx, self._invoke, call, body, flag),
                           partial(self._finished, s), self.loop)
        if task is not None and s.id in self.streams:
            call.task = task
            if call.deadline is not None:
                call.timer = self.loop.call_at(call.deadline, self._expire, s)

    async def _invoke(self, call: Call, body: bytearray, flag: int) -> Any:
        """Decode the message (in a thread when it is large) and call the handler; runs
        inside the guard chain, so nothing is decoded for a refused caller."""
        if len(body) > OFFLOAD_BYTES or flag & 1:
            req = await self.loop.run_in_executor(None, self._decode, call, body, flag)
        else:
            req = self._decode(call, body, flag)
        del body
        return await call.fn(req, None)

    def _decode(self, call: Call, body: bytearray, flag: int) -> Any:
        data: Any = memoryview(body)[5:]
        if flag & 1:
            assert call.encoding is not None
            try:
                data = inflate(data, call.encoding, self.service.max_message)
            except OverflowError:
                raise PayloadTooLargeError(_too_large(
                    "decompressed request", None, self.service.max_message)) from None
            except zlib.error as exc:
                raise InvalidRequestError(f"cannot {call.encoding}-decompress the request "
                                          f"message: {exc}.") from None
        try:
            return call.req_cls.FromString(data)
        except DecodeError:
            raise InvalidRequestError(f"the request is not a valid "
                                      f"{call.req_cls.DESCRIPTOR.full_name} message.") from None
        finally:
            del data

    def on_reset(self, s: Stream) -> None:
        call = s.call
        if isinstance(call, StreamCall):
            call.cancel()
        elif isinstance(call, Call):
            if call.timer is not None:
                call.timer.cancel()
            if call.task is not None:
                call.task.cancel()

    # completion

    def _finished(self, s: Stream, result: Any, exc: BaseException | None) -> None:
        call = s.call
        call.task = None  # it ends the cycle stream -> call -> task -> on_done -> stream
        if call.timer is not None:
            call.timer.cancel()
        if (isinstance(s.headers, Shaped) and call.ctx.identity is not None
                and "authorization" in call.ctx.headers):
            self.vouch(s, "authorization")  # it authenticated (an invalid one is refused)
        if self.streams.get(s.id) is not s:
            return  # reset by the client, expired, or the connection is gone
        if exc is None:
            payload = result.SerializeToString()
            if len(payload) > self.service.max_message:
                self.fail_call(s, Status.RESOURCE_EXHAUSTED, _too_large(
                    "response", len(payload), self.service.max_message))
                return
            self.send_response(s, HEAD, _PREFIX.pack(0, len(payload)) + payload,
                               trailers(0, "", call.rid))
        elif isinstance(exc, RequestFailedError):
            self.fail_call(s, exc.grpc, exc.message)
        elif isinstance(exc, asyncio.CancelledError):
            self.fail_call(s, Status.CANCELLED, "the call was cancelled by the server.")
        else:  # the chain maps every Exception; this is a BaseException escaping it
            log.error("call %s ended with %r (request id %s)", call.name, exc, call.rid)
            self.fail_call(s, Status.INTERNAL, "internal server error; the server log has "
                           f"the details under request id {call.rid}.")

    def _expire(self, s: Stream) -> None:
        if self.streams.get(s.id) is not s:
            return
        call = s.call
        if isinstance(call, StreamCall):
            call.expire()
            return
        if call.task is not None:
            call.task.cancel()
        self.fail_call(s, Status.DEADLINE_EXCEEDED, f"{call.name} did not finish within the "
                       f"call's deadline of {call.timeout:g} s.")


def _too_large(what: str, size: int | None, limit: int) -> str:
    got = f" of {size} bytes" if size is not None else ""
    return (f"the {what}{got} is over the gRPC message limit of {limit} bytes; send a "
            "smaller message or raise the server's limit.")
