"""Triton's gRPC client against tureen's own HTTP/2 gRPC server started in process. Every
datatype and the v1/v2 pass live in tests/e2e/serving/test_serving_tritonclient.py, which
runs against both gRPC implementations through ``tureen serve-model``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import joblib
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
from tritonclient.utils import InferenceServerException

from .conftest import N_FEATURES, Running

ROWS = np.random.default_rng(7).normal(size=(5, N_FEATURES)).astype(np.float32)


@pytest.fixture
def client(server: Running) -> Iterator[tgrpc.InferenceServerClient]:
    c = tgrpc.InferenceServerClient(server.target)
    yield c
    c.close()


def expected(server: Running, version: str) -> Any:
    return joblib.load(server.repo / "lr" / version / "model.joblib").predict(ROWS)


def test_health_metadata_and_infer(client: tgrpc.InferenceServerClient,
                                   server: Running) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("lr", "2")
    md = client.get_model_metadata("lr", as_json=True)
    assert md["versions"] == ["1", "2"]
    assert md["inputs"][0]["datatype"] == "FP32"
    assert "binary_tensor_data" in client.get_server_metadata(as_json=True)["extensions"]
    inp = tgrpc.InferInput("input-0", list(ROWS.shape), "FP32")
    inp.set_data_from_numpy(ROWS)
    for version in ("1", "2"):
        res = client.infer("lr", [inp], model_version=version, request_id="r-1")
        np.testing.assert_array_equal(res.as_numpy("output-0"), expected(server, version))
        assert res.get_response().id == "r-1"
    res = client.infer("lr", [inp])  # default version: the highest
    np.testing.assert_array_equal(res.as_numpy("output-0"), expected(server, "2"))


def test_errors_map_to_status_codes(client: tgrpc.InferenceServerClient) -> None:
    bad = tgrpc.InferInput("input-0", [1, 3], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(InferenceServerException) as e:
        client.infer("lr", [bad])
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
    with pytest.raises(InferenceServerException) as e:
        client.get_model_metadata("nope")
    assert e.value.status() == "StatusCode.NOT_FOUND"
    assert "not served" in str(e.value)
    wrong = tgrpc.InferInput("input-0", [1, N_FEATURES], "FP64")
    wrong.set_data_from_numpy(np.zeros((1, N_FEATURES)))
    with pytest.raises(InferenceServerException, match="expects FP32") as e:
        client.infer("lr", [wrong])
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT"


def test_not_ready_model_is_unavailable(fresh_server: Running) -> None:
    client = tgrpc.InferenceServerClient(fresh_server.target)
    assert not client.is_server_ready() and not client.is_model_ready("notready")
    x = tgrpc.InferInput("x", [1], "FP32")
    x.set_data_from_numpy(np.zeros(1, dtype=np.float32))
    with pytest.raises(InferenceServerException) as e:
        client.infer("notready", [x])
    assert e.value.status() == "StatusCode.UNAVAILABLE"
    client.close()


def test_repository_extension(client: tgrpc.InferenceServerClient) -> None:
    index = client.get_model_repository_index(as_json=True)["models"]
    assert {"name": "spare", "version": "1", "state": "READY"} in [
        {k: m.get(k, "") for k in ("name", "version", "state")} for m in index]
    client.unload_model("spare")
    with pytest.raises(InferenceServerException):
        client.is_model_ready("spare")
    assert "spare" in [m["name"] for m in client.get_model_repository_index(as_json=True)["models"]]
    client.load_model("spare")
    assert client.is_model_ready("spare")


def test_16m_element_fp32_round_trip(client: tgrpc.InferenceServerClient) -> None:
    big = np.random.default_rng(0).random((1, 16 * 1024 * 1024), dtype=np.float32)
    t = tgrpc.InferInput("in0", list(big.shape), "FP32")
    t.set_data_from_numpy(big)
    res = client.infer("echo", [t])
    np.testing.assert_array_equal(res.as_numpy("out0"), big)
