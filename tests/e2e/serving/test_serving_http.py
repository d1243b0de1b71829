"""Plain HTTP (what curl sends) and raw gRPC messages against a running server."""

from __future__ import annotations

import grpc
import httpx
import numpy as np
import pytest

from tureen.codecs.pb import inference_pb2 as pb

from .conftest import N_FEATURES, Server

ROW = [0.5] * N_FEATURES


def test_curl_v1_and_v2(server: Server) -> None:
    with httpx.Client(base_url=server.url) as c:
        assert c.get("/").json() == {"status": "alive"}
        assert set(c.get("/v1/models").json()["models"]) >= {"lr", "scaler", "echo"}
        r = c.post("/v1/models/lr:predict", json={"instances": [ROW, ROW]})
        assert r.status_code == 200 and len(r.json()["predictions"]) == 2
        r = c.post("/v2/models/lr/versions/1/infer", json={"inputs": [
            {"name": "input-0", "datatype": "FP32", "shape": [1, N_FEATURES], "data": ROW}]})
        assert r.json()["model_version"] == "1"


def test_custom_model_gets_headers_and_explains(server: Server) -> None:
    with httpx.Client(base_url=server.url) as c:
        r = c.post("/v1/models/scaler:predict", json={"instances": [[1, 2]]},
                   headers={"x-tenant": "acme"})
        assert r.json() == {"predictions": [[3.0, 6.0]], "tenant": "acme"}
        r = c.post("/v1/models/scaler:explain", json={"instances": [[1, 2]]})
        assert r.json() == {"explanations": [["factor", 3.0]]}


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"),
    [
        ("/v1/models/lr:predict", b"{", 400, "not valid JSON"),
        ("/v1/models/lr:predict", b'{"instances": [[1, 2]]}', 400, "expects instances"),
        ("/v1/models/lr:predict", b'{"instances": [["a", "b"]]}', 400, "numbers"),
        ("/v1/models/ghost:predict", b'{"instances": [[1]]}', 404, "not served"),
        ("/v2/models/lr/infer", b'{"inputs": [{"name": "input-0", "datatype": "FP32", '
         b'"shape": [1, 10], "data": [1, 2]}]}', 400, "shape"),
        ("/v2/models/lr/infer", b'{"inputs": [{"name": "input-0", "datatype": "FP32", '
         b'"shape": [1, 2], "data": ["x", "y"]}]}', 400, "declared FP32"),
        ("/v2/models/lr/versions/3/infer", b'{"inputs": []}', 404, "no version"),
        ("/v2/models/lr/infer", b"x" * (9 * 1024 * 1024), 413, "limit"),
    ],
)
def test_client_errors(server: Server, path: str, body: bytes, status: int, needle: str) -> None:
    r = httpx.post(server.url + path, content=body, timeout=30)
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]
    assert r.headers["x-request-id"]


def test_request_id_is_echoed(server: Server) -> None:
    r = httpx.post(f"{server.url}/v1/models/lr:predict", json={"instances": [ROW]},
                   headers={"x-request-id": "trace-me"})
    assert r.headers["x-request-id"] == "trace-me"


def test_metrics_after_traffic(server: Server) -> None:
    httpx.post(f"{server.url}/v1/models/scaler:predict", json={"instances": [[1]]})
    text = httpx.get(f"{server.url}/metrics").text
    assert 'tureen_requests_total{model="scaler",version="1",protocol="v1",status="ok"}' in text
    assert 'tureen_request_duration_seconds_count{model="scaler",version="1",stage="preprocess"}' \
        in text


async def test_grpc_typed_contents(server: Server) -> None:
    req = pb.ModelInferRequest(model_name="lr", model_version="2")
    t = req.inputs.add(name="input-0", datatype="FP32", shape=[1, N_FEATURES])
    t.contents.fp32_contents.extend(ROW)
    async with grpc.aio.insecure_channel(server.grpc_target) as ch:
        infer = ch.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                               request_serializer=pb.ModelInferRequest.SerializeToString,
                               response_deserializer=pb.ModelInferResponse.FromString)
        resp = await infer(req)
        assert resp.model_version == "2" and len(resp.raw_output_contents) == 1
        req.parameters["typed_output_contents"].bool_param = True
        resp = await infer(req)
        assert not resp.raw_output_contents
        assert len(resp.outputs[0].contents.int64_contents) == 1
        t.contents.fp32_contents.append(1.0)  # 11 values for 10 elements
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await infer(req)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "11" in (e.value.details() or "")
        req.model_name = "ghost"
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await infer(req)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_binary_large_tensor_round_trip(server: Server) -> None:
    x = np.random.default_rng(0).random(1_000_000, dtype=np.float32)
    head = (b'{"inputs": [{"name": "in", "datatype": "FP32", "shape": [1000000], '
            b'"parameters": {"binary_data_size": 4000000}}], '
            b'"parameters": {"binary_data_output": true}}')
    r = httpx.post(f"{server.url}/v2/models/echo/infer", content=head + x.tobytes(),
                   headers={"inference-header-content-length": str(len(head))}, timeout=30)
    n = int(r.headers["inference-header-content-length"])
    assert np.array_equal(np.frombuffer(r.content[n:], dtype=np.float32), x)


async def test_grpc_repository_load_with_model_in_field_1(server: Server) -> None:
    """KServe's proto puts model_name in field 1 (our repository_name)."""
    async with grpc.aio.insecure_channel(server.grpc_target) as ch:
        load = ch.unary_unary("/inference.GRPCInferenceService/RepositoryModelLoad",
                              request_serializer=pb.RepositoryModelLoadRequest.SerializeToString,
                              response_deserializer=pb.RepositoryModelLoadResponse.FromString)
        await load(pb.RepositoryModelLoadRequest(repository_name="echo"))
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await load(pb.RepositoryModelLoadRequest())
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await load(pb.RepositoryModelLoadRequest(model_name="ghost"))
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
