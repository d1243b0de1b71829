"""grpcio's own client (generated messages, unary_unary) against tureen's HTTP/2 gRPC server:
every RPC, typed and raw tensors, metadata, errors, deadlines, gzip, cancellation, 200
concurrent calls on one channel, message limits and a graceful stop with a call in flight."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest

from tureen.codecs.pb import inference_pb2 as pb
from tureen.transports.grpc.handlers import METHODS

from .conftest import N_FEATURES, Running

SERVICE = "/inference.GRPCInferenceService/"


class Stub:
    def __init__(self, channel: grpc.Channel) -> None:
        for name, (req, resp) in METHODS.items():
            setattr(self, name, channel.unary_unary(
                SERVICE + name, request_serializer=req.SerializeToString,
                response_deserializer=resp.FromString))

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)


@pytest.fixture
def channel(server: Running) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.target) as ch:
        yield ch


@pytest.fixture
def stub(channel: grpc.Channel) -> Stub:
    return Stub(channel)


def infer_request(model: str, values: list[float], raw: bool = True) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name=model)
    t = req.inputs.add(name="x", datatype="FP32", shape=[1, len(values)])
    if raw:
        req.raw_input_contents.append(np.asarray(values, dtype=np.float32).tobytes())
    else:
        t.contents.fp32_contents.extend(values)
    return req


def test_every_rpc(stub: Stub, server: Running) -> None:
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name="lr", version="1")).ready
    md = stub.ServerMetadata(pb.ServerMetadataRequest())
    assert md.name == "tureen" and "binary_tensor_data" in md.extensions
    mm = stub.ModelMetadata(pb.ModelMetadataRequest(name="lr"))
    assert mm.inputs[0].datatype == "FP32" and list(mm.inputs[0].shape) == [-1, N_FEATURES]
    index = stub.RepositoryIndex(pb.RepositoryIndexRequest(ready=True))
    assert {"lr", "echo", "seer"} <= {m.name for m in index.models}
    stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="spare"))
    assert "spare" not in {m.name for m in stub.RepositoryIndex(
        pb.RepositoryIndexRequest(ready=True)).models}
    stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="spare"))
    assert stub.ModelReady(pb.ModelReadyRequest(name="spare")).ready


@pytest.mark.parametrize("raw", [True, False])
def test_infer_typed_and_raw(stub: Stub, raw: bool) -> None:
    resp, call = stub.ModelInfer.with_call(infer_request("seer", [1.5, -2.0, 3.0], raw),
                                           metadata=(("x-request-id", "req-7"),))
    out = resp.outputs[0]
    assert out.datatype == "FP32" and list(out.shape) == [1, 3]
    # replies are raw (as Triton's) whether the request was typed or raw
    assert np.frombuffer(resp.raw_output_contents[0], dtype=np.float32).tolist() == \
        [1.5, -2.0, 3.0]
    typed = infer_request("seer", [1.5], raw)
    typed.parameters["typed_output_contents"].bool_param = True
    assert list(stub.ModelInfer(typed).outputs[0].contents.fp32_contents) == [1.5]
    assert dict(call.trailing_metadata())["x-request-id"] == "req-7"
    assert call.code() == grpc.StatusCode.OK


def test_metadata_reaches_the_model_as_headers(stub: Stub, server: Running) -> None:
    stub.ModelInfer(infer_request("seer", [1.0]),
                    metadata=(("x-tenant", "acme"), ("k-bin", b"\x00\x01"),
                              ("traceparent", "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01")))
    seen = server.seer.seen[-1]
    assert seen["x-tenant"] == "acme" and "k-bin" not in seen
    assert seen["user-agent"].startswith("grpc-python")
    assert not any(k.startswith(":") or k in ("content-type", "te") for k in seen)


def test_errors_and_unknown_methods(stub: Stub, channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(infer_request("nope", [1.0]))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and "not served" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(infer_request("lr", [1.0, 2.0]))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    trailing = dict(e.value.trailing_metadata())
    assert trailing["x-request-id"]
    with pytest.raises(grpc.RpcError) as e:
        stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest())
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for path in (SERVICE + "Nope", "/other.Service/ModelInfer"):
        with pytest.raises(grpc.RpcError) as e:
            channel.unary_unary(path)(b"")
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "unknown method" in e.value.details()


def test_unicode_error_message_is_percent_encoded_and_decoded(stub: Stub) -> None:
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelMetadata(pb.ModelMetadataRequest(name="mödel%"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert "'mödel%'" in e.value.details()


def test_200_concurrent_calls_on_one_channel(stub: Stub) -> None:
    futures = [stub.ModelInfer.future(infer_request("seer", [float(i)])) for i in range(200)]
    got = [np.frombuffer(f.result(timeout=60).raw_output_contents[0], np.float32)[0]
           for f in futures]
    assert got == [float(i) for i in range(200)]


def test_deadline_shorter_than_a_slow_model(stub: Stub) -> None:
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(infer_request("slow", [1.0]), timeout=0.2)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_gzip_compressed_requests(server: Running) -> None:
    with grpc.insecure_channel(server.target, compression=grpc.Compression.Gzip) as ch:
        big = [float(i % 7) for i in range(50_000)]
        resp = Stub(ch).ModelInfer(infer_request("seer", big))
    assert np.frombuffer(resp.raw_output_contents[0], np.float32).tolist() == big


def test_client_cancellation_cancels_the_call(stub: Stub, server: Running) -> None:
    fut = stub.ModelInfer.future(infer_request("slow", [0.5]))
    server.wait_for(lambda: server.streams() == 1)
    assert fut.cancel()
    server.wait_for(lambda: server.streams() == 0)
    with pytest.raises(grpc.FutureCancelledError):
        fut.result()


def test_message_size_limit(fresh_server: Running) -> None:
    with grpc.insecure_channel(fresh_server.target) as ch:
        stub = Stub(ch)
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelInfer(infer_request("seer", [1.0] * 2000))
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "4096 bytes" in e.value.details()
        assert stub.ServerLive(pb.ServerLiveRequest()).live  # the connection lives on


def test_graceful_stop_finishes_the_call_in_flight(fresh_server: Running) -> None:
    with grpc.insecure_channel(fresh_server.target) as ch:
        stub = Stub(ch)
        fut = stub.ModelInfer.future(infer_request("slow", [0.5]))
        fresh_server.wait_for(lambda: fresh_server.streams() == 1)
        t0 = time.monotonic()
        fresh_server.stopped = True
        fresh_server.run(fresh_server.server.stop(grace=10))
        assert time.monotonic() - t0 < 10  # stop returned once the call was done
        resp = fut.result(timeout=10)
        assert np.frombuffer(resp.raw_output_contents[0], np.float32).tolist() == [0.5]
        with pytest.raises(grpc.RpcError) as e:
            stub.ServerLive(pb.ServerLiveRequest(), timeout=5)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    fresh_server.dp.close()
