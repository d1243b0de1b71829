"""Triton's own Python clients (HTTP and gRPC) against a running tureen server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from tritonclient.utils import InferenceServerException

from .conftest import N_FEATURES, Server

ROWS = np.random.default_rng(7).normal(size=(5, N_FEATURES)).astype(np.float32)


def expected(repo: Path, version: str) -> Any:
    return joblib.load(repo / "lr" / version / "model.joblib").predict(ROWS)


@pytest.fixture
def http(server: Server) -> thttp.InferenceServerClient:
    return thttp.InferenceServerClient(f"127.0.0.1:{server.http_port}")


@pytest.fixture
def grpc(server: Server) -> tgrpc.InferenceServerClient:
    return tgrpc.InferenceServerClient(server.grpc_target)


@pytest.mark.parametrize("binary", [True, False])
def test_http_infer_sklearn(http: thttp.InferenceServerClient, server: Server,
                            binary: bool) -> None:
    assert http.is_server_live() and http.is_server_ready()
    assert http.is_model_ready("lr") and http.is_model_ready("lr", "1")
    md = http.get_model_metadata("lr", "1")
    assert md["versions"] == ["1", "2"]
    assert md["inputs"] == [{"name": "input-0", "datatype": "FP32", "shape": [-1, N_FEATURES]}]
    inp = thttp.InferInput("input-0", list(ROWS.shape), "FP32")
    inp.set_data_from_numpy(ROWS, binary_data=binary)
    out = thttp.InferRequestedOutput("output-0", binary_data=binary)
    for version in ("1", "2"):
        res = http.infer("lr", [inp], model_version=version, outputs=[out], request_id="abc")
        assert res.get_response()["model_version"] == version
        assert res.get_response()["id"] == "abc"
        np.testing.assert_array_equal(res.as_numpy("output-0"), expected(server.repo, version))
    res = http.infer("lr", [inp])  # default version: the highest
    np.testing.assert_array_equal(res.as_numpy("output-0"), expected(server.repo, "2"))
    res = http.infer("lr", [inp], request_compression_algorithm="gzip")
    np.testing.assert_array_equal(res.as_numpy("output-0"), expected(server.repo, "2"))


def test_grpc_infer_sklearn(grpc: tgrpc.InferenceServerClient, server: Server) -> None:
    assert grpc.is_server_live() and grpc.is_server_ready()
    assert grpc.is_model_ready("lr", "2")
    md = grpc.get_model_metadata("lr", as_json=True)
    assert md["inputs"][0]["datatype"] == "FP32"
    assert "binary_tensor_data" in grpc.get_server_metadata(as_json=True)["extensions"]
    inp = tgrpc.InferInput("input-0", list(ROWS.shape), "FP32")
    inp.set_data_from_numpy(ROWS)
    for version in ("1", "2"):
        res = grpc.infer("lr", [inp], model_version=version)
        np.testing.assert_array_equal(res.as_numpy("output-0"), expected(server.repo, version))


ALL_TYPES = {
    "BOOL": np.array([[True, False, True]]),
    "UINT8": np.array([[0, 7, 255]], dtype=np.uint8),
    "UINT16": np.array([[0, 7, 65535]], dtype=np.uint16),
    "UINT32": np.array([[0, 7, 2**32 - 1]], dtype=np.uint32),
    "UINT64": np.array([[0, 7, 2**64 - 1]], dtype=np.uint64),
    "INT8": np.array([[-128, 0, 127]], dtype=np.int8),
    "INT16": np.array([[-5, 0, 5]], dtype=np.int16),
    "INT32": np.array([[-5, 0, 2**31 - 1]], dtype=np.int32),
    "INT64": np.array([[-(2**63), 0, 2**63 - 1]], dtype=np.int64),
    "FP16": np.array([[1.5, -0.25, 65504]], dtype=np.float16),
    "FP32": np.array([[1.5, -0.25, 3.4e38]], dtype=np.float32),
    "FP64": np.array([[1.5, -0.25, 1e308]], dtype=np.float64),
    "BYTES": np.array([[b"a", b"", "ü".encode()]], dtype=object),
}


@pytest.mark.parametrize("binary", [True, False])
def test_http_every_datatype(http: thttp.InferenceServerClient, binary: bool) -> None:
    inputs, outputs = [], []
    for i, (dt, arr) in enumerate(ALL_TYPES.items()):
        t = thttp.InferInput(f"in{i}", list(arr.shape), dt)
        t.set_data_from_numpy(arr, binary_data=binary or dt == "FP16")
        inputs.append(t)
        outputs.append(thttp.InferRequestedOutput(f"out{i}", binary_data=binary or dt == "FP16"))
    res = http.infer("echo", inputs, outputs=outputs)
    for i, (dt, arr) in enumerate(ALL_TYPES.items()):
        got = res.as_numpy(f"out{i}")
        if dt == "BYTES":
            got = np.array([v if isinstance(v, bytes) else v.encode() for v in got.reshape(-1)],
                           dtype=object).reshape(got.shape)
        np.testing.assert_array_equal(got, arr, err_msg=dt)
        assert got.dtype == arr.dtype, dt


def test_grpc_every_datatype(grpc: tgrpc.InferenceServerClient) -> None:
    inputs = []
    for i, (dt, arr) in enumerate(ALL_TYPES.items()):
        t = tgrpc.InferInput(f"in{i}", list(arr.shape), dt)
        t.set_data_from_numpy(arr)
        inputs.append(t)
    res = grpc.infer("echo", inputs)
    for i, (dt, arr) in enumerate(ALL_TYPES.items()):
        got = res.as_numpy(f"out{i}")
        np.testing.assert_array_equal(got, arr, err_msg=dt)
        assert got.dtype == arr.dtype, dt


def test_http_errors(http: thttp.InferenceServerClient) -> None:
    bad = thttp.InferInput("input-0", [1, 3], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(InferenceServerException, match="shape"):
        http.infer("lr", [bad])
    with pytest.raises(InferenceServerException, match="not served"):
        http.get_model_metadata("nope")
    with pytest.raises(InferenceServerException, match="no version"):
        http.get_model_metadata("lr", "9")


def test_grpc_errors_map_to_status_codes(grpc: tgrpc.InferenceServerClient) -> None:
    bad = tgrpc.InferInput("input-0", [1, 3], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(InferenceServerException) as e:
        grpc.infer("lr", [bad])
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
    with pytest.raises(InferenceServerException) as e:
        grpc.get_model_metadata("nope")
    assert e.value.status() == "StatusCode.NOT_FOUND"
    wrong = tgrpc.InferInput("input-0", [1, N_FEATURES], "FP64")
    wrong.set_data_from_numpy(np.zeros((1, N_FEATURES)))
    with pytest.raises(InferenceServerException, match="expects FP32") as e:
        grpc.infer("lr", [wrong])
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT"


def test_grpc_repository_extension(grpc: tgrpc.InferenceServerClient) -> None:
    index = grpc.get_model_repository_index(as_json=True)["models"]
    assert {"name": "scaler", "version": "1", "state": "READY"} in [
        {k: m.get(k, "") for k in ("name", "version", "state")} for m in index]
    grpc.unload_model("scaler")
    assert not _exists(grpc, "scaler")
    assert "scaler" in [m["name"] for m in grpc.get_model_repository_index(as_json=True)["models"]]
    grpc.load_model("scaler")
    assert grpc.is_model_ready("scaler")


def _exists(grpc: tgrpc.InferenceServerClient, name: str) -> bool:
    try:
        grpc.is_model_ready(name)
    except InferenceServerException:
        return False
    return True
