"""Feature-enriched inference end to end: fused and split, three client protocols, three
predictor protocols, a non-tureen OIP predictor, missing-entity policies, scripts, and a
predictor that is down, slow or flaky."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tests.e2e.feature_server.servers import FEATURES, SERVICE, Server
from tests.e2e.transformer.conftest import Env
from tritonclient.utils import InferenceServerException

from tureen.store import FeatureStore

IDS = [1001, 1002, 1050]
AMOUNTS = [25.0, 480.0, 60.0]


def v1(server: Server, model: str, ids: list[int], amounts: list[float],
       key: str = "account_id") -> httpx.Response:
    return httpx.post(f"{server.url}/v1/models/{model}:predict", timeout=30, json={
        "instances": [{key: a, "amount": m} for a, m in zip(ids, amounts, strict=True)]})


def v2(server: Server, model: str, ids: list[int], amounts: list[float]) -> httpx.Response:
    return httpx.post(f"{server.url}/v2/models/{model}/infer", timeout=30, json={"inputs": [
        {"name": "account_id", "datatype": "INT64", "shape": [len(ids)], "data": ids},
        {"name": "amount", "datatype": "FP64", "shape": [len(ids)], "data": amounts}]})


def grpc(server: Server, model: str, ids: list[int], amounts: list[float]) -> np.ndarray[
        Any, Any]:
    client = grpcclient.InferenceServerClient(server.grpc_target)
    try:
        a = grpcclient.InferInput("account_id", [len(ids)], "INT64")
        a.set_data_from_numpy(np.asarray(ids, dtype=np.int64))
        b = grpcclient.InferInput("amount", [len(ids)], "FP64")
        b.set_data_from_numpy(np.asarray(amounts, dtype=np.float64))
        res = client.infer(model, [a, b])
        out: np.ndarray[Any, Any] | None = res.as_numpy(res.get_response().outputs[0].name)
        assert out is not None
        return out
    finally:
        client.close()


def predict(proto: str, server: Server, model: str, ids: list[int] = IDS,
            amounts: list[float] = AMOUNTS) -> np.ndarray[Any, Any]:
    if proto == "v1":
        r = v1(server, model, ids, amounts)
        assert r.status_code == 200, r.text
        return np.asarray(r.json()["predictions"], dtype=np.float64)
    if proto == "v2":
        r = v2(server, model, ids, amounts)
        assert r.status_code == 200, r.text
        o = r.json()["outputs"][0]
        return np.asarray(o["data"], dtype=np.float64).reshape(o["shape"])
    return grpc(server, model, ids, amounts).astype(np.float64)


def features(env: Env, ids: list[int] = IDS, amounts: list[float] = AMOUNTS) -> np.ndarray[
        Any, Any]:
    with FeatureStore(env.repo) as fs:
        d = fs.get_online_features(feature_service=SERVICE, entity_rows={
            "account_id": ids, "amount": amounts}).to_dict()
    return np.array([[d[f][i] for f in FEATURES] for i in range(len(ids))], dtype=np.float64)


def expected(env: Env) -> np.ndarray[Any, Any]:
    out: np.ndarray[Any, Any] = env.clf.predict_proba(features(env))
    return out


PROTOCOLS = ["v1", "v2", "grpc"]


@pytest.mark.parametrize("client", PROTOCOLS)
def test_fused(env: Env, client: str) -> None:
    got = predict(client, env.main, "fraud")
    np.testing.assert_allclose(got, expected(env), rtol=1e-5)


@pytest.mark.parametrize("predictor", ["v1", "v2", "grpc-v2"])
@pytest.mark.parametrize("client", PROTOCOLS)
def test_split_kserve_contract(env: Env, predictor: str, client: str) -> None:
    got = predict(client, env.split[predictor], "fraud")
    np.testing.assert_allclose(got, expected(env), rtol=1e-5)


@pytest.mark.parametrize("client", PROTOCOLS)
def test_remote_plain_oip_predictor(env: Env, client: str) -> None:
    got = predict(client, env.remote, "plain_oip")
    np.testing.assert_allclose(got, expected(env), rtol=1e-9)


@pytest.mark.parametrize("client", PROTOCOLS)
def test_features_from_remote_feature_server(env: Env, client: str) -> None:
    got = predict(client, env.remote, "remote_features")
    np.testing.assert_allclose(got, expected(env), rtol=1e-5)


def test_transformer_metadata_comes_from_the_registry(env: Env) -> None:
    md = httpx.get(f"{env.main.url}/v2/models/fraud").json()
    assert md["inputs"] == [{"name": "account_id", "datatype": "INT64", "shape": [-1]},
                            {"name": "amount", "datatype": "FP64", "shape": [-1]}]
    md = httpx.get(f"{env.remote.url}/v2/models/plain_oip").json()
    assert md["outputs"] == [{"name": "probabilities", "datatype": "FP64", "shape": [-1, 2]}]


# ---- missing entities and null features ----------------------------------------------------

@pytest.mark.parametrize("client", ["v1", "v2"])
def test_reject_names_the_missing_entity(env: Env, client: str) -> None:
    call = v1 if client == "v1" else v2
    r = call(env.main, "echo_reject", [1001, 999_999], [1.0, 2.0])
    assert r.status_code == 404, r.text
    assert "account_id=999999" in r.json()["error"]
    for server in (env.split["v2"], env.remote):
        model = "fraud" if server is env.split["v2"] else "plain_oip"
        r = call(server, model, [999_998], [1.0])
        assert r.status_code == 404 and "account_id=999998" in r.json()["error"]


def test_reject_over_grpc_is_not_found(env: Env) -> None:
    with pytest.raises(InferenceServerException) as info:
        grpc(env.main, "echo_reject", [999_999], [1.0])
    assert info.value.status() == "StatusCode.NOT_FOUND"
    assert "999999" in str(info.value.message())


def test_reject_names_a_null_feature(env: Env) -> None:
    now = datetime.now(UTC).isoformat()  # only stats exist for this account: profile is null
    r = httpx.post(f"{env.main.url}/push", json={
        "push_source_name": "transaction_stats_push",
        "df": {"account_id": [777_777], "num_transactions_7d": [3], "total_amount_7d": [30.0],
               "has_fraud_7d": [False], "event_timestamp": [now], "created": [now]}})
    assert r.status_code == 200, r.text
    r = v1(env.main, "echo_reject", [777_777], [1.0])
    assert r.status_code == 400, r.text
    msg = r.json()["error"]
    assert "credit_score" in msg and "account_id=777777" in msg


@pytest.mark.parametrize("client", PROTOCOLS)
def test_default_policy_fills_declared_defaults(env: Env, client: str) -> None:
    got = predict(client, env.main, "echo_default", [1001, 999_999], [10.0, 10.0])
    np.testing.assert_allclose(got[0], features(env, [1001], [10.0])[0])
    assert got[1].tolist() == [-1, -2, 1, -3, -4.5, 0, -6.5]


def test_null_policy_passes_nulls(env: Env) -> None:
    r = v1(env.main, "echo_null", [1001, 999_999], [10.0, 10.0])
    assert r.status_code == 200, r.text
    rows = r.json()["predictions"]
    assert rows[1] == [None] * len(FEATURES)
    got = predict("v2", env.main, "echo_null", [999_999], [1.0])
    assert all(math.isnan(v) for v in got[0])


# ---- scripts ------------------------------------------------------------------------------

def test_script_before_features_and_postprocess(env: Env) -> None:
    r = httpx.post(f"{env.main.url}/v1/models/scripted:predict", json={"instances": [
        {"user": f"acct-{a}", "amount": m} for a, m in zip(IDS, AMOUNTS, strict=True)]})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["predictions"], expected(env)[:, 1], rtol=1e-5)


def test_script_after_features(env: Env) -> None:
    got = predict("v1", env.main, "after")
    want = features(env)
    want[:, 0] = 1.0
    np.testing.assert_allclose(got, want)


# ---- a predictor that is down, slow or flaky --------------------------------------------------

def test_predictor_down_is_502(env: Env) -> None:
    r = v1(env.remote, "down", IDS, AMOUNTS)
    assert r.status_code == 502, r.text
    assert "3 attempts" in r.json()["error"]


def test_predictor_slow_is_504(env: Env) -> None:
    r = v1(env.remote, "slow", IDS, AMOUNTS)
    assert r.status_code == 504, r.text
    assert "slow" in r.json()["error"]


def test_retries_actually_retry(env: Env) -> None:
    before = httpx.get(f"{env.oip_url}/calls").json()["flaky"]
    got = predict("v1", env.remote, "flaky")
    np.testing.assert_allclose(got, expected(env), rtol=1e-9)
    assert httpx.get(f"{env.oip_url}/calls").json()["flaky"] - before == 3


# ---- client mistakes -----------------------------------------------------------------------

@pytest.mark.parametrize(("body", "needle"), [
    ({"instances": [{"account_id": "abc", "amount": 1.0}]}, "account_id"),
    ({"instances": [{"amount": 1.0}]}, "account_id"),
    ({"instances": [{"account_id": 1001}]}, "amount"),
    ({"instances": []}, "instance"),
    ({"rows": [1]}, "instances"),
])
def test_bad_requests_are_400(env: Env, body: Any, needle: str) -> None:
    for server in (env.main, env.split["v1"]):
        r = httpx.post(f"{server.url}/v1/models/fraud:predict", json=body)
        assert r.status_code == 400, r.text
        assert needle in r.json()["error"]


# ---- concurrent requests share batches without mixing answers ------------------------------

async def test_concurrent_requests_get_their_own_rows_and_errors(env: Env) -> None:
    import asyncio

    ids = [1001 + i for i in range(40)]
    want = {a: row for a, row in zip(ids, features(env, ids, [5.0] * len(ids)), strict=True)}
    async with httpx.AsyncClient(base_url=env.main.url, timeout=30) as client:
        async def one(i: int) -> tuple[int, httpx.Response]:
            acct = 900_000 + i if i % 7 == 3 else ids[i]
            return acct, await client.post("/v1/models/echo_reject:predict", json={
                "instances": [{"account_id": acct, "amount": 5.0}]})

        for _ in range(3):
            results = await asyncio.gather(*(one(i) for i in range(len(ids))))
            for acct, r in results:
                if acct >= 900_000:
                    assert r.status_code == 404 and f"account_id={acct}" in r.json()["error"]
                else:
                    assert r.status_code == 200, r.text
                    np.testing.assert_allclose(r.json()["predictions"][0], want[acct])


@pytest.mark.parametrize("predictor", ["v1", "v2", "grpc-v2"])
async def test_split_concurrent_requests_are_batched_correctly(env: Env, predictor: str) -> None:
    import asyncio

    ids = [1001 + i for i in range(48)]
    probs = env.clf.predict_proba(features(env, ids, [5.0] * len(ids)))
    want = dict(zip(ids, probs, strict=True))
    async with httpx.AsyncClient(base_url=env.split[predictor].url, timeout=30) as client:
        async def one(i: int) -> tuple[int, httpx.Response]:
            acct = 800_000 + i if i % 11 == 5 else ids[i]
            return acct, await client.post("/v1/models/fraud:predict", json={
                "instances": [{"account_id": acct, "amount": 5.0}]})

        results = await asyncio.gather(*(one(i) for i in range(len(ids))))
    for acct, r in results:
        if acct >= 800_000:
            assert r.status_code == 404 and f"account_id={acct}" in r.json()["error"]
        else:
            assert r.status_code == 200, r.text
            np.testing.assert_allclose(r.json()["predictions"][0], want[acct], rtol=1e-5)
