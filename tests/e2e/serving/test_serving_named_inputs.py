"""End to end: columns in another order than the model's give the same predictions over v1,
OIP REST (``content_type: pd``) and gRPC; a missing or extra column is a 400 /
INVALID_ARGUMENT. (Before: a Feast-ordered request got ``[1, 0]`` instead of ``[0, 1]``.)"""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import httpx
import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from tureen.codecs.pb import inference_pb2 as pb

from .conftest import Server, start_server

X = np.array([[0.0, 5.0], [5.0, 0.0], [1.0, 4.0], [4.0, 1.0]] * 25, dtype=np.float32)
ROWS = [{"a": 0.0, "b": 5.0}, {"a": 5.0, "b": 0.0}]
WANT = [0, 1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("named") / "models"
    d = root / "ab" / "1"
    d.mkdir(parents=True)
    joblib.dump(LogisticRegression().fit(X, (X[:, 0] > X[:, 1]).astype(np.int64)),
                d / "model.joblib")  # trained on arrays: columns a, b by position
    (d / "model-settings.json").write_text(json.dumps({"inputs": [
        {"name": "a", "datatype": "FP32", "shape": [-1]},
        {"name": "b", "datatype": "FP32", "shape": [-1]}]}))
    s = start_server(root)
    yield s
    assert s.stop() == 0


@pytest.mark.parametrize("order", [["a", "b"], ["b", "a"]])
def test_v1_and_oip_rest(server: Server, order: list[str]) -> None:
    rows = [{k: r[k] for k in order} for r in ROWS]
    r = httpx.post(f"{server.url}/v1/models/ab:predict", json={"instances": rows})
    assert r.json() == {"predictions": WANT}
    body = {"parameters": {"content_type": "pd"}, "inputs": [
        {"name": k, "datatype": "FP32", "shape": [2], "data": [r[k] for r in ROWS]}
        for k in order]}
    r = httpx.post(f"{server.url}/v2/models/ab/infer", json=body)
    assert r.json()["outputs"][0]["data"] == WANT
    body["inputs"] = body["inputs"][:1]
    r = httpx.post(f"{server.url}/v2/models/ab/infer", json=body)
    assert r.status_code == 400 and "missing" in r.json()["error"]
    r = httpx.post(f"{server.url}/v1/models/ab:predict",
                   json={"instances": [{**rows[0], "c": 1.0}]})
    assert r.status_code == 400 and "'c'" in r.json()["error"]


@pytest.mark.parametrize("order", [["a", "b"], ["b", "a"]])
def test_grpc(server: Server, order: list[str]) -> None:
    req = pb.ModelInferRequest(model_name="ab")
    for k in order:
        req.inputs.add(name=k, datatype="FP32", shape=[2])
        req.raw_input_contents.append(np.array([r[k] for r in ROWS], np.float32).tobytes())
    with grpc.insecure_channel(server.grpc_target) as ch:
        infer = ch.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                               request_serializer=pb.ModelInferRequest.SerializeToString,
                               response_deserializer=pb.ModelInferResponse.FromString)
        resp = infer(req)
        assert np.frombuffer(resp.raw_output_contents[0], np.int64).tolist() == WANT
        req.inputs.add(name="c", datatype="FP32", shape=[2])
        req.raw_input_contents.append(np.zeros(2, np.float32).tobytes())
        with pytest.raises(grpc.RpcError) as e:
            infer(req)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
