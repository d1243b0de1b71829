"""The REST app in process (httpx ASGI transport): routes, codes, binary extension, limits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tureen.codecs.oip_json import decode_response, encode_request, encode_response
from tureen.serving import (
    DataPlane,
    InferInput,
    InferRequest,
    Model,
    ModelRepository,
    VersionPolicy,
)
from tureen.transports.rest import build_app

from .conftest import Doubler, loaded


class Boom(Model):
    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        raise RuntimeError("secret internals")


async def feature_route(request: Request) -> JSONResponse:
    return JSONResponse({"extra": True})


@pytest.fixture
async def client(lr_repo: Path) -> Any:
    repo = ModelRepository(lr_repo, VersionPolicy("all"))
    dp = DataPlane(repo, model_control=True)
    await repo.load_all()
    dp.register(loaded(Doubler("m")))
    dp.register(loaded(Boom("boom")))
    app = build_app(dp, [Route("/get-online-features", feature_route, methods=["POST"])],
                    max_request_bytes=10_000)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://t") as c:
        yield c
    dp.close()


V2 = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}


async def test_health_and_metadata(client: httpx.AsyncClient) -> None:
    assert (await client.get("/")).json() == {"status": "alive"}
    assert (await client.get("/v2/health/live")).json() == {"live": True}
    assert (await client.get("/v2/health/ready")).status_code == 200
    meta = (await client.get("/v2")).json()
    assert "binary_tensor_data" in meta["extensions"]
    assert (await client.get("/v1/models")).json() == {"models": ["boom", "lr", "m"]}
    assert (await client.get("/v1/models/m")).json() == {"name": "m", "ready": True}
    md = (await client.get("/v2/models/m")).json()
    assert md["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}]
    assert (await client.get("/v2/models/lr/versions/1/ready")).status_code == 200


async def test_v1_and_v2_predict(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/models/m:predict", json={"instances": [[1, 2]]})
    assert r.json() == {"predictions": [[2.0, 4.0]]}
    r = await client.post("/v2/models/m/infer", json={**V2, "id": "r1"})
    body = r.json()
    assert body["id"] == "r1" and body["model_version"] == "1"
    assert body["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [1, 2],
                                "data": [2.0, 4.0]}]
    r = await client.post("/v2/models/lr/versions/1/infer", json={"inputs": [
        {"name": "input-0", "datatype": "FP32", "shape": [1, 4], "data": [1, 0, 0, 0]}]})
    assert r.json()["model_version"] == "1"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "needle"),
    [
        ("POST", "/v2/models/m/infer", b"{not json", 400, "not valid JSON"),
        ("POST", "/v2/models/m/infer", json.dumps({"inputs": [{**V2["inputs"][0],
                                                                "shape": [2, 2]}]}).encode(),
         400, "shape"),
        ("POST", "/v2/models/m/infer", json.dumps({"inputs": [{**V2["inputs"][0],
                                                                "datatype": "INT8"}]}).encode(),
         400, "expects FP32"),
        ("POST", "/v2/models/nope/infer", json.dumps(V2).encode(), 404, "not served"),
        ("POST", "/v2/models/m/versions/7/infer", json.dumps(V2).encode(), 404, "version"),
        ("GET", "/v2/models/nope", b"", 404, "not served"),
        ("POST", "/v1/models/m:predict", b'{"instances": [[1, 2, 3]]}', 400, "shape"),
        ("POST", "/v1/models/m:predict", b'{"rows": []}', 400, "instances"),
        ("POST", "/v1/models/m:explain", b'{"instances": [[1, 2]]}', 404, "explainer"),
        ("GET", "/v2/models/m/infer", b"", 405, "POST"),
        ("GET", "/nowhere", b"", 404, "no route"),
        ("POST", "/v1/models/m:predict", b"[" + b"1," * 6000 + b"1]", 413, "limit"),
    ],
)
async def test_client_errors_are_never_500(client: httpx.AsyncClient, method: str, path: str,
                                           body: bytes, status: int, needle: str) -> None:
    r = await client.request(method, path, content=body)
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]


async def test_internal_error_is_generic_and_carries_request_id(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    r = await client.post("/v1/models/boom:predict", json={"instances": [[1]]},
                          headers={"x-request-id": "req-42", "authorization": "Bearer s3cr3t"})
    assert r.status_code == 500 and "req-42" in r.json()["error"]
    assert "secret internals" not in r.text
    assert r.headers["x-request-id"] == "req-42"
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    assert "req-42" in logged and "s3cr3t" not in logged


async def test_traceparent_becomes_the_request_id(client: httpx.AsyncClient) -> None:
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    r = await client.get("/v2/health/live", headers={"traceparent": tp})
    assert r.headers["x-request-id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert r.headers["traceparent"] == tp


async def test_binary_extension_both_ways(client: httpx.AsyncClient) -> None:
    x = np.array([[1.5, -2.0]], dtype=np.float32)
    req = InferRequest("m", [InferInput("x", "FP32", [1, 2], x)])
    body, n = encode_request(req, binary=True)
    r = await client.post("/v2/models/m/infer", content=body,
                          headers={"inference-header-content-length": str(n)})
    assert r.status_code == 200, r.text
    resp = decode_response(r.content, r.headers.get("inference-header-content-length"))
    assert resp.outputs[0].data.dtype == np.float32
    assert np.array_equal(resp.outputs[0].data, x * 2)
    # one output asked for as JSON although the request default is binary
    head = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2],
                                   "parameters": {"binary_data_size": 8}}],
                       "outputs": [{"name": "y", "parameters": {"binary_data": False}}],
                       "parameters": {"binary_data_output": True}}).encode()
    r = await client.post("/v2/models/m/infer", content=head + x.tobytes(),
                          headers={"inference-header-content-length": str(len(head))})
    assert r.json()["outputs"][0]["data"] == [3.0, -4.0]


async def test_binary_extension_errors(client: httpx.AsyncClient) -> None:
    head = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2],
                                   "parameters": {"binary_data_size": 8}}]}).encode()
    r = await client.post("/v2/models/m/infer", content=head + b"\0" * 4,
                          headers={"inference-header-content-length": str(len(head))})
    assert r.status_code == 400 and "binary" in r.json()["error"]
    r = await client.post("/v2/models/m/infer", content=head,
                          headers={"inference-header-content-length": "99999"})
    assert r.status_code == 400 and "Inference-Header-Content-Length" in r.json()["error"]


async def test_pandas_content_type(client: httpx.AsyncClient) -> None:
    body = {"parameters": {"content_type": "pd"}, "inputs": [
        {"name": f"f{i}", "datatype": "FP32", "shape": [2], "data": [1.0, -1.0]}
        for i in range(4)]}
    r = await client.post("/v2/models/lr/infer", json=body)
    # trained on arrays, lr never said which column is which: no silent guess (see
    # test_serving_signature for models that declare their columns)
    assert r.status_code == 400 and "declares no column names" in r.json()["error"]
    body["parameters"] = {}
    body["inputs"] = [{"name": "input-0", "datatype": "FP32", "shape": [2, 4],
                       "data": [1.0] * 4 + [-1.0] * 4}]
    r = await client.post("/v2/models/lr/infer", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == [1, 0]


async def test_repository_extension(client: httpx.AsyncClient) -> None:
    idx = (await client.post("/v2/repository/index")).json()
    assert {"name": "lr", "version": "1", "state": "READY", "reason": ""} in idx
    assert (await client.post("/v2/repository/models/lr/unload")).status_code == 200
    assert (await client.get("/v2/models/lr")).status_code == 404
    assert (await client.post("/v2/repository/models/lr/load")).status_code == 200
    assert (await client.get("/v2/models/lr/ready")).status_code == 200
    r = await client.post("/v2/repository/models/ghost/load")
    assert r.status_code == 404 and "not in the model repository" in r.json()["error"]


async def test_metrics_endpoint(client: httpx.AsyncClient) -> None:
    await client.post("/v1/models/m:predict", json={"instances": [[1, 2]]})
    text = (await client.get("/metrics")).text
    assert 'tureen_requests_total{model="m",version="1",protocol="v1",status="ok"} 1' in text


async def test_extra_routes_share_the_app(client: httpx.AsyncClient) -> None:
    assert (await client.post("/get-online-features")).json() == {"extra": True}


def test_response_json_numbers_round_trip() -> None:
    from tureen.serving import InferOutput, InferResponse

    for dt in ("FP16", "FP32", "FP64", "INT8", "UINT64", "BOOL"):
        arr: np.ndarray[Any, Any] = np.array([1, 0], dtype={"FP16": np.float16, "FP32": np.float32,
                                      "FP64": np.float64, "INT8": np.int8,
                                      "UINT64": np.uint64, "BOOL": np.bool_}[dt])
        body, n = encode_response(InferResponse("m", [InferOutput("o", dt, [2], arr)]), None)
        assert n is None
        out = decode_response(body, None).outputs[0]
        assert out.datatype == dt and np.array_equal(out.data, arr) and out.data.dtype == arr.dtype


async def test_library_input_errors_are_400(client: httpx.AsyncClient) -> None:
    head = json.dumps({"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [1, 4],
                                   "parameters": {"binary_data_size": 16}}]}).encode()
    nan = np.full(4, np.nan, dtype=np.float32).tobytes()  # scikit-learn refuses NaN
    r = await client.post("/v2/models/lr/infer", content=head + nan,
                          headers={"inference-header-content-length": str(len(head))})
    assert r.status_code == 400, r.text
    assert "rejected the input" in r.json()["error"]


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_compressed_requests(client: httpx.AsyncClient, encoding: str) -> None:
    import gzip
    import zlib

    raw = json.dumps({"instances": [[1, 2]]}).encode()
    body = gzip.compress(raw) if encoding == "gzip" else zlib.compress(raw)
    r = await client.post("/v1/models/m:predict", content=body,
                          headers={"content-encoding": encoding})
    assert r.json() == {"predictions": [[2.0, 4.0]]}
    bomb = gzip.compress(b"[" + b" " * 50_000 + b"]")  # small on the wire, over the limit inflated
    r = await client.post("/v1/models/m:predict", content=bomb,
                          headers={"content-encoding": "gzip"})
    assert r.status_code == 413
    r = await client.post("/v1/models/m:predict", content=b"nope",
                          headers={"content-encoding": "br"})
    assert r.status_code == 400 and "gzip" in r.json()["error"]


async def test_large_bodies_are_decoded_off_the_event_loop(lr_repo: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           ) -> None:
    """Issue 11 #9: decoding is proportional to the client's input, so a large body is
    decoded in a thread (a 37 MiB v2 JSON body held the loop for 1.2 s); small ones inline."""
    import threading

    from tureen.codecs.oip_json import decode_request, loads

    where: list[tuple[str, bool]] = []

    def spy(name: str, real: Any) -> Any:
        def run(*args: Any, **kw: Any) -> Any:
            where.append((name, threading.current_thread() is threading.main_thread()))
            return real(*args, **kw)
        return run

    monkeypatch.setattr("tureen.transports.rest.app.decode_request", spy("v2", decode_request))
    monkeypatch.setattr("tureen.transports.rest.app.loads", spy("v1", loads))
    dp = DataPlane()
    dp.register(loaded(Doubler("m")))
    app = build_app(dp, max_request_bytes=8 << 20)
    rows = [[1.5, 2.5]] * 200_000  # ~2.4 MiB of JSON
    big_v2 = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [len(rows), 2],
                          "data": rows}]}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://t") as c:
        for body, path in ((V2, "/v2/models/m/infer"), (big_v2, "/v2/models/m/infer"),
                           ({"instances": [[1, 2]]}, "/v1/models/m:predict"),
                           ({"instances": rows}, "/v1/models/m:predict")):
            r = await c.post(path, content=json.dumps(body).encode(),
                             headers={"content-type": "application/json"})
            assert r.status_code == 200, r.text[:300]
    dp.close()
    assert where == [("v2", True), ("v2", False), ("v1", True), ("v1", False)]
