"""OIP/Triton gRPC on both servers (tureen's HTTP/2 and grpc.aio): streams, extensions and
the correctness fixes, with grpcio's own client."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from tests.e2e.serving.conftest import Server

from tureen.codecs.pb import inference_pb2 as pb

SERVICE = "/inference.GRPCInferenceService/"


@pytest.fixture
def channel(triton_server: Server) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(triton_server.grpc_target) as ch:
        yield ch


def unary(ch: grpc.Channel, method: str, response: type) -> grpc.UnaryUnaryMultiCallable:
    return ch.unary_unary(SERVICE + method, request_serializer=lambda m: m.SerializeToString(),
                          response_deserializer=response.FromString)


def simple_request(rid: str = "", model: str = "simple", raw: bool = True
                   ) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name=model, id=rid)
    for name in ("INPUT0", "INPUT1"):
        t = req.inputs.add(name=name, datatype="INT32", shape=[1, 16])
        if raw:
            req.raw_input_contents.append(np.arange(16, dtype=np.int32).tobytes())
        else:
            t.contents.int_contents.extend(range(16))
    return req


def stream(ch: grpc.Channel) -> grpc.StreamStreamMultiCallable:
    return ch.stream_stream(SERVICE + "ModelStreamInfer",
                            request_serializer=lambda m: m.SerializeToString(),
                            response_deserializer=pb.ModelStreamInferResponse.FromString)


def repeat_request(values: list[int], rid: str, delay_ms: int = 0) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name="repeat_int32", id=rid)
    n = len(values)
    for name, dt, data in (("IN", "INT32", np.array(values, np.int32)),
                           ("DELAY", "UINT32", np.full(n, delay_ms, np.uint32)),
                           ("WAIT", "UINT32", np.zeros(1, np.uint32))):
        req.inputs.add(name=name, datatype=dt, shape=[len(data)])
        req.raw_input_contents.append(data.tobytes())
    return req


def test_stream_answers_each_request_in_order_and_errors_in_stream(channel: grpc.Channel
                                                                   ) -> None:
    requests = [repeat_request([1, 2, 3], "a", delay_ms=5), simple_request("b", model="ghost"),
                repeat_request([7], "c"), simple_request("d")]
    answers = list(stream(channel)(iter(requests)))
    by_id: dict[str, list[pb.ModelStreamInferResponse]] = {}
    for a in answers:
        by_id.setdefault(a.infer_response.id, []).append(a)
    out = [int(np.frombuffer(a.infer_response.raw_output_contents[0], np.int32)[0])
           for a in by_id["a"]]
    assert out == [1, 2, 3]  # one request, several responses, in the model's order
    assert "Request for unknown model" in by_id["b"][0].error_message
    assert by_id["b"][0].infer_response.model_name == "ghost"
    assert len(by_id["c"]) == 1 and not by_id["d"][0].error_message


def test_stream_survives_a_client_that_goes_away(channel: grpc.Channel,
                                                 triton_server: Server) -> None:
    call = stream(channel)(iter([repeat_request(list(range(50)), "slow", delay_ms=50)]))
    first = next(call)
    assert first.infer_response.id == "slow"
    call.cancel()  # mid-stream: the server stops the request, nothing leaks into other calls
    assert len(list(stream(channel)(iter([simple_request("after")])))) == 1


def test_typed_and_raw_for_one_input_is_invalid_argument(channel: grpc.Channel) -> None:
    req = simple_request(raw=False)
    req.raw_input_contents.extend([np.zeros(16, np.int32).tobytes()])
    with pytest.raises(grpc.RpcError) as e:
        unary(channel, "ModelInfer", pb.ModelInferResponse)(req)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "contents field must not be specified" in (e.value.details() or "")


def test_uint64_parameters_over_2_63(channel: grpc.Channel) -> None:
    """Crashed with INTERNAL before; now the model sees the value."""
    req = simple_request()
    req.parameters["sequence_id"].uint64_param = 2**64 - 1  # not a sequence model: ignored
    resp = unary(channel, "ModelInfer", pb.ModelInferResponse)(req)
    assert len(resp.raw_output_contents) == 2


def test_statistics_and_config(channel: grpc.Channel) -> None:
    unary(channel, "ModelInfer", pb.ModelInferResponse)(simple_request())
    stats = unary(channel, "ModelStatistics", pb.ModelStatisticsResponse)(
        pb.ModelStatisticsRequest(name="simple"))
    (s,) = stats.model_stats
    assert s.name == "simple" and s.inference_count >= 1 and s.inference_stats.success.ns > 0
    assert s.last_inference >= (time.time() - 600) * 1000
    everything = unary(channel, "ModelStatistics", pb.ModelStatisticsResponse)(
        pb.ModelStatisticsRequest())
    assert {m.name for m in everything.model_stats} >= {"simple", "repeat_int32"}
    cfg = unary(channel, "ModelConfig", pb.ModelConfigResponse)(
        pb.ModelConfigRequest(name="repeat_int32")).config
    assert cfg.name == "repeat_int32" and cfg.model_transaction_policy.decoupled
    assert [i.name for i in cfg.input] == ["IN", "DELAY", "WAIT"]
    assert cfg.input[1].data_type == pb.TYPE_UINT32
    with pytest.raises(grpc.RpcError) as e:
        unary(channel, "ModelConfig", pb.ModelConfigResponse)(pb.ModelConfigRequest(name="no"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_load_with_config_and_refusals(channel: grpc.Channel) -> None:
    load = unary(channel, "RepositoryModelLoad", pb.RepositoryModelLoadResponse)
    req = pb.RepositoryModelLoadRequest(model_name="simple_identity")
    req.parameters["config"].string_param = '{"max_batch_size": 4}'
    load(req)
    cfg = unary(channel, "ModelConfig", pb.ModelConfigResponse)(
        pb.ModelConfigRequest(name="simple_identity")).config
    assert cfg.max_batch_size == 4
    req.parameters["config"].string_param = "{"
    with pytest.raises(grpc.RpcError) as e:
        load(req)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "failed to load" in (e.value.details() or "")
    req.parameters["config"].string_param = "{}"
    req.parameters["file:1/model.py"].bytes_param = b"import os"
    with pytest.raises(grpc.RpcError) as e:
        load(req)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "file overrides" in (e.value.details() or "")
    load(pb.RepositoryModelLoadRequest(model_name="simple_identity"))  # back to the files


def test_cuda_shared_memory_is_refused(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as e:
        unary(channel, "CudaSharedMemoryRegister", pb.CudaSharedMemoryRegisterResponse)(
            pb.CudaSharedMemoryRegisterRequest(name="g", raw_handle=b"x", byte_size=8))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "CUDA shared memory is not supported" in (e.value.details() or "")
    status = unary(channel, "CudaSharedMemoryStatus", pb.CudaSharedMemoryStatusResponse)(
        pb.CudaSharedMemoryStatusRequest())
    assert not status.regions


def test_unserved_methods_name_what_is_served(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as e:
        unary(channel, "LogSettings", pb.ServerLiveResponse)(pb.ServerLiveRequest())
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
