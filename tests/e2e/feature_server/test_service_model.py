"""Each FeatureService as a model: entity keys in, one typed tensor per feature out, over
OIP REST, OIP gRPC (Triton's client, for wire compatibility) and KServe v1."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tests.e2e.feature_server.servers import FEATURES, SERVICE, Server

from tureen.store import FeatureStore

DTYPES = {"credit_score": "INT64", "account_age_days": "INT64", "has_2fa_installed": "BOOL",
          "num_transactions_7d": "INT64", "total_amount_7d": "FP64", "has_fraud_7d": "BOOL",
          "amount_vs_avg_7d": "FP64"}


def expected(repo: Path, ids: list[int], amounts: list[float]) -> dict[str, list[object]]:
    with FeatureStore(repo) as fs:
        rows = [{"account_id": a, "amount": m} for a, m in zip(ids, amounts, strict=True)]
        return fs.get_online_features(feature_service=SERVICE, entity_rows=rows).to_dict()


def test_metadata_is_the_registry_schema(server: Server) -> None:
    md = httpx.get(f"{server.url}/v2/models/{SERVICE}").json()
    assert md["inputs"] == [{"name": "account_id", "datatype": "INT64", "shape": [-1]},
                            {"name": "amount", "datatype": "FP64", "shape": [-1]}]
    assert [(o["name"], o["datatype"]) for o in md["outputs"]] == [
        (f, DTYPES[f]) for f in FEATURES]


def test_oip_rest_typed_outputs_and_statuses(server: Server, repo: Path) -> None:
    r = httpx.post(f"{server.url}/v2/models/{SERVICE}/infer", json={"inputs": [
        {"name": "account_id", "datatype": "INT64", "shape": [3], "data": [1001, 1002, 9]},
        {"name": "amount", "datatype": "FP64", "shape": [3], "data": [5.0, 50.0, 1.0]}]})
    assert r.status_code == 200, r.text
    outs = {o["name"]: o for o in r.json()["outputs"]}
    want = expected(repo, [1001, 1002, 9], [5.0, 50.0, 1.0])
    assert list(outs) == FEATURES
    for f in FEATURES:
        assert outs[f]["datatype"] == DTYPES[f]
        assert outs[f]["data"][:2] == pytest.approx(want[f][:2])
        assert outs[f]["parameters"]["statuses"].split(",")[2] in ("NOT_FOUND", "NULL_VALUE")


def test_oip_grpc_with_triton_client(server: Server, repo: Path) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_target)
    ids = grpcclient.InferInput("account_id", [2], "INT64")
    ids.set_data_from_numpy(np.array([1003, 1004], dtype=np.int64))
    amt = grpcclient.InferInput("amount", [2], "FP64")
    amt.set_data_from_numpy(np.array([20.0, 30.0]))
    res = client.infer(SERVICE, [ids, amt])
    want = expected(repo, [1003, 1004], [20.0, 30.0])
    for f in FEATURES:
        arr = res.as_numpy(f)
        assert arr.dtype == {"INT64": np.int64, "FP64": np.float64, "BOOL": np.bool_}[DTYPES[f]]
        assert arr.tolist() == pytest.approx(want[f])
    client.close()


def test_v1_rows(server: Server, repo: Path) -> None:
    r = httpx.post(f"{server.url}/v1/models/fraud_detection_v1:predict",
                   json={"instances": [{"account_id": 1005}, {"account_id": 1006}]})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    with FeatureStore(repo) as fs:
        want = fs.get_online_features(feature_service="fraud_detection_v1",
                                      entity_rows={"account_id": [1005, 1006]}).to_dict()
    assert [p["credit_score"] for p in preds] == want["credit_score"]


def test_wrong_key_datatype_is_400(server: Server) -> None:
    r = httpx.post(f"{server.url}/v2/models/{SERVICE}/infer", json={"inputs": [
        {"name": "account_id", "datatype": "BYTES", "shape": [1], "data": ["x"]},
        {"name": "amount", "datatype": "FP64", "shape": [1], "data": [1.0]}]})
    assert r.status_code == 400
    assert "account_id" in r.json()["error"]
    r = httpx.post(f"{server.url}/v2/models/fraud_detection_v7/infer", json={"inputs": []})
    assert r.status_code == 404
    assert "fraud_detection_v7" in r.json()["error"]
