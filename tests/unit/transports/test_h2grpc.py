"""gRPC framing on the HTTP/2 connection, without a network: eager calls answer inside
data_received, timeouts, percent-encoding, the status table."""

from __future__ import annotations

import asyncio
import gc

import pytest

from tureen.codecs.pb import inference_pb2 as pb
from tureen.error_codes import GrpcStatus as Status
from tureen.error_codes import grpc_status as status_of
from tureen.errors import NotFoundError, NotReadyError, TureenError
from tureen.serving import DataPlane
from tureen.transports.grpc import h2frames as f
from tureen.transports.grpc.h2conn import Stream
from tureen.transports.grpc.h2grpc import GrpcConnection, Service, parse_timeout, percent_encode
from tureen.transports.grpc.hpack import Decoder, Encoder
from tureen.transports.grpc.servicer import status_code

from .test_h2conn import FakeTransport, Peer


def call_frames(path: str, message: bytes) -> bytes:
    headers = [(":method", "POST"), (":scheme", "http"), (":path", path),
               (":authority", "x"), ("content-type", "application/grpc")]
    body = b"\0" + len(message).to_bytes(4, "big") + message
    return (f.frame(f.HEADERS, f.END_HEADERS, 1, Encoder().encode(headers)) +
            f.frame(f.DATA, f.END_STREAM, 1, body))


async def test_a_call_that_never_suspends_is_answered_inside_data_received() -> None:
    dp = DataPlane()
    conn = GrpcConnection(Service(dp, 1 << 20, 100))
    t = FakeTransport()
    conn.connection_made(t)  # type: ignore[arg-type]
    conn.data_received(f.PREFACE + f.settings({}))
    peer = Peer(conn, t)
    peer.frames()
    conn.data_received(call_frames("/inference.GRPCInferenceService/ServerLive",
                                   pb.ServerLiveRequest().SerializeToString()))
    frames = peer.frames()  # no event-loop turn in between
    assert [k for k, *_ in frames] == [f.HEADERS, f.DATA, f.HEADERS]
    assert pb.ServerLiveResponse.FromString(frames[1][3][5:]).live
    trailers = dict(Decoder().decode(frames[2][3]))
    assert trailers["grpc-status"] == "0" and trailers["x-request-id"]
    dp.close()


@pytest.mark.parametrize(("value", "seconds"), [
    ("1H", 3600.0), ("2M", 120.0), ("3S", 3.0), ("250m", 0.25), ("10u", 1e-5), ("7n", 7e-9),
])
def test_parse_timeout(value: str, seconds: float) -> None:
    assert parse_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "S", "1x", "123456789S", "-1S"])
def test_parse_timeout_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_timeout(bad)


def test_percent_encode() -> None:
    assert percent_encode("plain text ok") == "plain text ok"
    assert percent_encode("50% ü\n") == "50%25 %C3%BC%0A"


def test_status_table_uses_the_grpc_integers() -> None:
    assert status_of(NotFoundError("x")) == Status.NOT_FOUND
    assert int(Status.NOT_FOUND) == 5
    assert status_of(NotReadyError("x")) == 14
    assert status_of(TureenError("x")) == Status.INTERNAL
    assert status_code(status_of(NotFoundError("x"))).name == "NOT_FOUND"


@pytest.mark.parametrize("window", [f.DEFAULT_WINDOW, 3])
async def test_a_unary_answer_takes_its_window_and_waits_for_more(window: int) -> None:
    dp = DataPlane()
    conn = GrpcConnection(Service(dp, 1 << 20, 100))
    t = FakeTransport()
    conn.connection_made(t)  # type: ignore[arg-type]
    conn.data_received(f.PREFACE + f.settings({f.INITIAL_WINDOW_SIZE: window}))
    peer = Peer(conn, t)
    peer.frames()
    before = conn.send_window
    conn.data_received(call_frames("/inference.GRPCInferenceService/ServerLive",
                                   pb.ServerLiveRequest().SerializeToString()))
    frames = peer.frames()
    body = b"".join(p for k, _, _, p in frames if k == f.DATA)
    assert conn.send_window == before - len(body)
    if window < 7:  # 7 bytes of message: the rest waits for the stream's window
        assert [k for k, *_ in frames] == [f.HEADERS, f.DATA] and len(body) == window
        assert 1 in conn.streams
        conn.data_received(f.window_update(1, 100))
        frames += peer.frames()
        body = b"".join(p for k, _, _, p in frames if k == f.DATA)
    assert [k for k, *_ in frames][-1] == f.HEADERS and frames[-1][1] & f.END_STREAM
    assert pb.ServerLiveResponse.FromString(body[5:]).live
    assert 1 not in conn.streams
    dp.close()


async def test_a_call_that_waited_leaves_no_reference_cycle() -> None:
    dp = DataPlane()
    conn = GrpcConnection(Service(dp, 1 << 20, 100))
    path = "/inference.GRPCInferenceService/ServerLive"
    name, _, req_cls = conn.service.methods[path]

    async def live(request: pb.ServerLiveRequest, ctx: object) -> pb.ServerLiveResponse:
        fut = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(fut.set_result, None)
        await fut  # as a batched call waits for its batch
        return pb.ServerLiveResponse(live=True)

    conn.service.methods[path] = (name, live, req_cls)
    t = FakeTransport()
    conn.connection_made(t)  # type: ignore[arg-type]
    conn.data_received(f.PREFACE + f.settings({}))
    peer = Peer(conn, t)
    peer.frames()
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        conn.data_received(call_frames(path, pb.ServerLiveRequest().SerializeToString()))
        for _ in range(5):
            await asyncio.sleep(0)
        assert [k for k, *_ in peer.frames()] == [f.HEADERS, f.DATA, f.HEADERS]
        gc.collect()
        cycles = [o for o in gc.garbage if isinstance(o, Stream)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert cycles == []  # freed by reference counting, not left to the cyclic collector
    dp.close()
