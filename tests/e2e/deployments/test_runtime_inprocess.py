"""DeploymentModel in process: memory freed on idle unload, swaps under concurrent load,
exact canary split, stopped deployments, per-version stats and logging."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import weakref
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from tureen.deployments import Deployments
from tureen.deployments.serving import deployment_model
from tureen.errors import NotReadyError
from tureen.inference_log import LogMode
from tureen.inference_log.dataset import read_log
from tureen.models import ModelRegistry
from tureen.store import FeatureStore

X = np.array([[0.5, -1.0, 2.0]], dtype=np.float32)


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    from tureen.examples.fraud import create_repo

    d = create_repo(tmp_path / "repo", accounts=10)
    FeatureStore(d).apply()
    rng = np.random.default_rng(1)
    for v in (1, 2):
        x = rng.normal(size=(40, 3))
        joblib.dump(LogisticRegression().fit(x, x[:, v - 1] > 0), tmp_path / f"m{v}.joblib")
        ModelRegistry.for_repo(d).register("plain", tmp_path / f"m{v}.joblib", "sklearn")
    deps = Deployments.for_repo(d)
    deps.create("plain-d", "plain", 1, logging="ALL", idle_unload_seconds=3600)
    deps.set_state("plain-d", "started")
    return d


def _estimator(model: object) -> object:
    engines = model._engines  # type: ignore[attr-defined]
    return next(iter(engines.values())).model._estimator


async def test_idle_unload_frees_the_model_and_reloads(repo: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    m = deployment_model(FeatureStore(repo), "plain-d", refresh_seconds=3600)
    await asyncio.to_thread(m.load)
    body = {"instances": X.tolist()}
    first = await m.predict(body, {})
    ref = weakref.ref(_estimator(m))
    assert await m.idle_unload()
    gc.collect()
    assert ref() is None  # the estimator's memory is gone
    assert m.status()["loaded_versions"] == []
    caplog.set_level(logging.WARNING)
    again = await m.predict(body, {})  # the next request loads it again
    assert np.array_equal(first, again) and m.cold_starts == 1
    assert any("cold start" in r.getMessage() for r in caplog.records)
    await m.aclose()


async def test_idle_timer_unloads_without_requests(repo: Path) -> None:
    deps = Deployments.for_repo(repo)
    spec = dataclasses.replace(deps.get("plain-d"), idle_unload_seconds=0.2)
    from tureen.deployments.runtime import DeploymentModel

    m = DeploymentModel(spec, FeatureStore(repo), ModelRegistry.for_repo(repo),
                        refresh_seconds=3600)
    await asyncio.to_thread(m.load)
    await m.predict({"instances": X.tolist()}, {})
    for _ in range(200):  # bounded wait for the background timer
        if m.status()["loaded_versions"] == []:
            break
        await asyncio.sleep(0.05)
    assert m.status()["loaded_versions"] == []
    await m.aclose()


async def test_swap_under_concurrent_load_and_exact_canary(repo: Path) -> None:
    deps = Deployments.for_repo(repo)
    m = deployment_model(FeatureStore(repo), "plain-d", refresh_seconds=3600)
    await asyncio.to_thread(m.load)
    body = {"instances": X.tolist()}
    await m.predict(body, {})
    stop = asyncio.Event()

    async def client() -> None:
        while not stop.is_set():
            await m.predict(body, {})
            await asyncio.sleep(0)

    def served() -> dict[str, int]:
        return {v: int(s["requests"]) for v, s in m.status()["versions"].items()}

    tasks = [asyncio.create_task(client()) for _ in range(8)]
    await asyncio.sleep(0.2)
    await m.apply(deps.update("plain-d", 2))
    at_swap = served()
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*tasks)  # any failed request would raise here
    done = served()
    # after the swap only the requests already in flight (one per client) finish on 1
    assert at_swap["1"] > 0 and done["1"] - at_swap["1"] <= 8
    assert done["2"] > at_swap.get("2", 0) and m.swaps == 1

    await m.apply(deps.update("plain-d", canary_version=1, canary_percent=20))
    before = {v: s["requests"] for v, s in m.status()["versions"].items()}
    for _ in range(1000):
        await m.predict(body, {})
    after = {v: s["requests"] for v, s in m.status()["versions"].items()}
    assert after["1"] - before["1"] == 200 and after["2"] - before["2"] == 800

    await m.apply(deps.set_state("plain-d", "stopped"))
    with pytest.raises(NotReadyError, match="stopped"):
        await m.predict(body, {})
    await m.aclose()
    log = read_log(str(repo / "data" / "inference_log"), "plain-d")
    versions = log.column("model_version").to_pylist()
    assert {"1", "2"} == set(versions)
    assert log.num_rows == sum(after.values())  # every served request was logged on close
    assert "feature.input_0" in log.column_names and "prediction.predictions" in log.column_names


async def test_batching_merges_concurrent_requests_through_the_data_plane(repo: Path) -> None:
    from tureen.serving import DataPlane

    deps = Deployments.for_repo(repo)
    deps.create("batched", "plain", 1, batching="max_batch_size=64,max_latency_ms=50",
                logging="ALL")
    deps.set_state("batched", "started")
    m = deployment_model(FeatureStore(repo), "batched", refresh_seconds=3600)
    await asyncio.to_thread(m.load)
    dp = DataPlane()
    dp.register(m)
    body = {"instances": X.tolist()}
    single = await dp.predict_v1("batched", body, {})
    results = await asyncio.gather(*(dp.predict_v1("batched", body, {}) for _ in range(32)))
    assert all(r == single for r in results)
    calls = m.status()["versions"]["1"]["requests"]
    assert calls < 33  # merged: fewer model calls than requests
    await m.aclose()
    dp.close()
    log = read_log(str(repo / "data" / "inference_log"), "batched")
    assert log.num_rows == 33  # every row of every request was logged


async def test_logging_settings_change_while_serving(repo: Path, tmp_path: Path) -> None:
    deps = Deployments.for_repo(repo)
    m = deployment_model(FeatureStore(repo), "plain-d", refresh_seconds=3600)
    await asyncio.to_thread(m.load)
    body = {"instances": X.tolist()}
    await m.predict(body, {})
    spec = deps.get("plain-d")
    await m.apply(dataclasses.replace(spec, logging=LogMode.NONE))
    assert m.logger is None
    await m.predict(body, {})  # not logged
    other = tmp_path / "other-log"
    await m.apply(dataclasses.replace(spec, log_sink=str(other)))
    await m.predict(body, {})
    await m.aclose()
    assert read_log(str(repo / "data" / "inference_log"), "plain-d").num_rows == 1
    assert read_log(str(other), "plain-d").num_rows == 1
    assert m.swaps == 0  # same version: the engines were kept


async def test_merged_requests_log_their_own_features(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from tureen.examples.fraud import create_repo

    d = create_repo(tmp_path / "fused", accounts=30)
    with FeatureStore(d) as fs:
        fs.apply()
        now = datetime.now(UTC)
        fs.materialize(now - timedelta(days=40), now + timedelta(minutes=1))
    x = np.random.default_rng(2).normal(size=(50, 6))
    joblib.dump(LogisticRegression().fit(x, x[:, 0] > 0), tmp_path / "six.joblib")
    ModelRegistry.for_repo(d).register("six", tmp_path / "six.joblib", "sklearn",
                                       feature_service="fraud_detection_v1")
    deps = Deployments.for_repo(d)
    deps.create("fused-d", "six", 1, logging="ALL")
    deps.set_state("fused-d", "started")
    store = FeatureStore(d)
    m = deployment_model(store, "fused-d", refresh_seconds=3600)
    await asyncio.to_thread(m.load)
    accounts = list(range(1001, 1031))
    await m.predict({"instances": [{"account_id": 1001}]}, {})
    # concurrent requests: the fused transformer merges them into shared model calls
    await asyncio.gather(*(m.predict({"instances": [{"account_id": a}]}, {})
                           for a in accounts * 3))
    calls = m.status()["versions"]["1"]["requests"]
    transformer: Any = m._engines[1].transformer  # type: ignore[index]
    assert transformer.model_calls < calls  # requests were merged into fewer model calls
    await m.aclose()
    log = read_log(str(d / "data" / "inference_log"), "fused-d").to_pandas()
    assert len(log) == calls == 91 and log["request_id"].is_unique
    online = store.get_online_features(
        feature_service="fraud_detection_v1",
        entity_rows=[{"account_id": a} for a in accounts]).to_dict()
    score = dict(zip(online["account_id"], online["credit_score"], strict=True))
    for _, row in log.iterrows():  # every row carries its own entity's features
        assert row["feature.credit_score"] == score[int(row["entity.account_id"])]


async def test_a_spec_naming_a_missing_version_is_reported_once_and_keeps_serving(
    repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A version deleted with --force after `deploy update` used to log an ERROR every second
    while `deploy status` showed nothing wrong."""
    deps = Deployments.for_repo(repo)
    good = deps.get("plain-d")
    bad = dataclasses.replace(good, version=99)
    m = deployment_model(FeatureStore(repo), "plain-d", refresh_seconds=0.05)
    m.spec_source = lambda: bad
    await asyncio.to_thread(m.load)
    caplog.set_level(logging.ERROR)
    body = {"instances": X.tolist()}
    await m.predict(body, {})  # starts the watcher
    await asyncio.sleep(0.6)  # ~12 refreshes
    errors = [r for r in caplog.records if "cannot switch" in r.getMessage()]
    assert len(errors) == 1 and "still serving plain version 1" in errors[0].getMessage()
    assert m.status()["switch_error"] and m.status()["version"] == 1
    await m.predict(body, {})  # still serving
    await m.aclose()
