"""ModelStreamInfer on tureen's HTTP/2 connection, without a network: messages are served as
they arrive (before the client half-closes), split across frames, bounded both ways."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from tureen.codecs.pb import inference_pb2 as pb
from tureen.serving import DataPlane, InferOutput, InferResponse, Model
from tureen.transports.grpc import h2frames as f
from tureen.transports.grpc import h2stream
from tureen.transports.grpc.h2grpc import GrpcConnection, Service
from tureen.transports.grpc.hpack import Decoder, Encoder

from .test_h2conn import FakeTransport, Peer

PATH = "/inference.GRPCInferenceService/ModelStreamInfer"


class Gate(Model):
    """Echoes IN once its gate opens."""

    def __init__(self) -> None:
        super().__init__("gate")
        self.gate = asyncio.Event()
        self.gate.set()
        self.ready = True

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        await self.gate.wait()
        i = payload.inputs[0]
        return InferResponse(self.name, [InferOutput("OUT", i.datatype, i.shape, i.data)])


def message(rid: str, value: int = 1, model: str = "gate") -> bytes:
    req = pb.ModelInferRequest(model_name=model, id=rid)
    req.inputs.add(name="IN", datatype="INT32", shape=[1])
    req.raw_input_contents.append(np.array([value], np.int32).tobytes())
    data = req.SerializeToString()
    return b"\0" + len(data).to_bytes(4, "big") + data


def open_stream(timeout: str | None = None) -> bytes:
    headers = [(":method", "POST"), (":scheme", "http"), (":path", PATH), (":authority", "x"),
               ("content-type", "application/grpc"), ("te", "trailers")]
    if timeout:
        headers.append(("grpc-timeout", timeout))
    return f.frame(f.HEADERS, f.END_HEADERS, 1, Encoder().encode(headers))


def responses(frames: list[Any]) -> list[pb.ModelStreamInferResponse]:
    body = b"".join(bytes(p) for k, _, sid, p in frames if k == f.DATA and sid == 1)
    out, pos = [], 0
    while pos < len(body):
        n = int.from_bytes(body[pos + 1:pos + 5], "big")
        out.append(pb.ModelStreamInferResponse.FromString(body[pos + 5:pos + 5 + n]))
        pos += 5 + n
    return out


def trailers(frames: list[Any]) -> dict[str, str]:
    dec, got = Decoder(), {}
    for k, flags, sid, payload in frames:
        if k == f.HEADERS and sid == 1:
            block = dict(dec.decode(payload))
            if flags & f.END_STREAM:
                got = block
    return got


async def setup(model: Model) -> tuple[GrpcConnection, Peer, DataPlane]:
    dp = DataPlane()
    dp.register(model)
    conn = GrpcConnection(Service(dp, 1 << 20, 100))
    t = FakeTransport()
    conn.connection_made(t)  # type: ignore[arg-type]
    conn.data_received(f.PREFACE + f.settings({}))
    peer = Peer(conn, t)
    peer.frames()
    return conn, peer, dp


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_requests_are_answered_before_the_client_half_closes() -> None:
    _conn, peer, dp = await setup(Gate())
    one, two = message("a", 1), message("b", 2)
    peer.send(open_stream(), f.frame(f.DATA, 0, 1, one[:7]))  # a message split across frames
    await settle()
    assert responses(peer.frames()) == []
    peer.send(f.frame(f.DATA, 0, 1, one[7:] + two))
    await settle()
    got = peer.frames()
    assert [r.infer_response.id for r in responses(got)] == ["a", "b"]
    assert trailers(got) == {}  # the stream is still open
    peer.send(f.frame(f.DATA, f.END_STREAM, 1, message("c", 3, model="ghost")))
    await settle()
    got = peer.frames()
    (err,) = responses(got)
    assert err.infer_response.id == "c" and "Request for unknown model" in err.error_message
    assert trailers(got)["grpc-status"] == "0"
    dp.close()


async def test_a_truncated_last_message_fails_the_call() -> None:
    _conn, peer, dp = await setup(Gate())
    peer.send(open_stream(), f.frame(f.DATA, f.END_STREAM, 1, message("a")[:-2]))
    await settle()
    assert trailers(peer.frames())["grpc-status"] == "13"  # INTERNAL: truncated
    dp.close()


async def test_a_client_that_sends_faster_than_the_model_is_held_back() -> None:
    model = Gate()
    model.gate.clear()
    conn, peer, dp = await setup(model)
    peer.send(open_stream(), f.frame(f.DATA, 0, 1, b"".join(
        message(str(i)) for i in range(64 + h2stream.MAX_WAITING))))
    await settle()
    stream = conn.streams[1]
    assert stream.hold  # 64 running, MAX_WAITING more decoded: the window is no longer given
    model.gate.set()
    for _ in range(50):
        await settle()
    assert not stream.hold
    assert len(responses(peer.frames())) == 64 + h2stream.MAX_WAITING
    dp.close()


async def test_a_stream_past_its_deadline_ends_with_deadline_exceeded() -> None:
    model = Gate()
    _conn, peer, dp = await setup(model)
    peer.send(open_stream(timeout="200m"), f.frame(f.DATA, 0, 1, message("a")))
    await settle()
    model.gate.clear()
    peer.send(f.frame(f.DATA, 0, 1, message("b")))
    await asyncio.sleep(0.3)
    got = peer.frames()
    assert [r.infer_response.id for r in responses(got)] == ["a"]
    assert trailers(got)["grpc-status"] == "4"
    model.gate.set()
    dp.close()


async def test_waiting_messages_keep_their_credit_until_the_session_takes_them() -> None:
    model = Gate()
    model.gate.clear()
    conn, peer, dp = await setup(model)
    peer.send(open_stream(), f.frame(f.DATA, 0, 1, b"".join(
        message(str(i)) for i in range(64 + 8))))
    await settle()
    # 64 running, one taken and waiting for a slot, 7 decoded and queued
    waiting = sum(len(message(str(i))) for i in range(65, 64 + 8))
    assert conn.buffered == conn.limits.budget.used == waiting
    model.gate.set()
    for _ in range(50):
        await settle()
    assert len(responses(peer.frames())) == 64 + 8
    assert conn.buffered == conn.limits.budget.used == 0
    dp.close()


async def test_an_idle_stream_outlives_the_body_deadline_but_a_stalled_message_does_not() -> None:
    conn, peer, dp = await setup(Gate())
    peer.send(open_stream(), f.frame(f.DATA, 0, 1, message("a")))
    await settle()
    later = conn.loop.time() + 2 * conn.limits.body_timeout
    conn.tick(later)  # between messages a stream may wait (the client decides when to send)
    assert 1 in conn.streams
    assert [r.infer_response.id for r in responses(peer.frames())] == ["a"]
    peer.send(f.frame(f.DATA, 0, 1, message("b")[:7]))  # a message that stops arriving
    conn.tick(conn.loop.time() + conn.limits.body_timeout + 1)
    assert 1 not in conn.streams
    assert [(k, bytes(p)) for k, _, sid, p in peer.frames() if sid == 1] == [
        (f.RST_STREAM, f.CANCEL.to_bytes(4, "big"))]
    dp.close()
