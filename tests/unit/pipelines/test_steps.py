"""What tureen's components do, called as plain steps (no kfp needed)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tureen.errors import ConflictError, InvalidRequestError, NotFoundError
from tureen.examples.fraud import create_repo
from tureen.pipelines.compile import local_paths
from tureen.pipelines.steps.evaluate import evaluate
from tureen.pipelines.steps.gate import Decision, compare
from tureen.pipelines.steps.repo import overrides_env, repo_config
from tureen.pipelines.steps.train import train
from tureen.pipelines.steps.training_set import build, snapshot
from tureen.store import FeatureStore


def _frame(n: int = 600, seed: int = 0, classes: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    x2[::17] = np.nan  # missing values must not break any estimator
    score = 2 * x1 - np.nan_to_num(x2)
    label = score > 0 if classes == 2 else np.digitize(score, [-1.0, 1.0])
    return pd.DataFrame({"event_timestamp": pd.date_range("2026-01-01", periods=n, freq="h",
                                                          tz="UTC"),
                         "x1": x1, "x2": x2, "flag": rng.random(n) < 0.5, "label": label,
                         "target": score + rng.normal(scale=0.1, size=n)})


@pytest.fixture
def data(tmp_path: Path) -> Path:
    p = tmp_path / "train.parquet"
    _frame().to_parquet(p, index=False)
    return p


@pytest.mark.parametrize(("estimator", "params", "framework", "file"), [
    ("gradient_boosting", {"max_iter": 30}, "sklearn", "model.joblib"),
    ("logistic_regression", {"max_iter": 500}, "sklearn", "model.joblib"),
    ("xgboost", {"n_estimators": 20, "max_depth": 3}, "xgboost", "model.ubj"),
    ("lightgbm", {"n_estimators": 20, "verbose": -1}, "lightgbm", "model.txt"),
])
def test_train_and_evaluate_each_framework_through_the_serving_runtime(
        tmp_path: Path, data: Path, estimator: str, params: dict[str, object], framework: str,
        file: str) -> None:
    meta = train(str(data), str(tmp_path / "model"), str(tmp_path / "test.parquet"),
                 label="label", features=["x1", "x2", "flag"], estimator=estimator,
                 params=params, test_size=0.25)
    assert meta["framework"] == framework and meta["task"] == "classification"
    assert (meta["train_rows"], meta["test_rows"]) == (450, 150)
    assert (tmp_path / "model" / file).is_file()
    held_out = pd.read_parquet(tmp_path / "test.parquet")
    assert held_out["event_timestamp"].min() > pd.read_parquet(data)["event_timestamp"].iloc[449]
    ev = evaluate(str(tmp_path / "model"), str(tmp_path / "test.parquet"), label="label",
                  features=meta["features"])
    assert ev.metrics["auc"] > 0.85, ev.metrics
    assert ev.labels == ["False", "True"] and sum(map(sum, ev.confusion)) == 150
    assert ev.metrics["test_rows"] == 150
    assert 2 <= len(ev.fpr) <= 200 and all(0 <= t <= 1 for t in ev.thresholds)
    json.dumps(ev.thresholds)  # finite: the JSON Kubeflow stores has no Infinity


def test_a_user_function_trains_the_model(tmp_path: Path, data: Path) -> None:
    (tmp_path / "my_model.py").write_text(
        "from sklearn.tree import DecisionTreeClassifier\n"
        "def fit(X, y, params):\n"
        "    import numpy as np\n"
        "    return DecisionTreeClassifier(**params).fit(np.nan_to_num(X), y)\n")
    meta = train(str(data), str(tmp_path / "m"), str(tmp_path / "t.parquet"), label="label",
                 features=["x1"], function="my_model.py:fit", params={"max_depth": 2},
                 repo=str(tmp_path))
    assert meta["estimator"] == "my_model.py:fit" and meta["framework"] == "sklearn"
    with pytest.raises(InvalidRequestError, match="must return a fitted model"):
        (tmp_path / "bad.py").write_text("def fit(X, y, params):\n    return None\n")
        train(str(data), str(tmp_path / "m2"), str(tmp_path / "t2.parquet"), label="label",
              features=["x1"], function="bad.py:fit", repo=str(tmp_path))


def test_regression_and_multiclass(tmp_path: Path) -> None:
    p = tmp_path / "d.parquet"
    _frame(classes=3).to_parquet(p, index=False)
    meta = train(str(p), str(tmp_path / "r"), str(tmp_path / "rt.parquet"), label="target",
                 features=["x1", "x2"],
                 estimator="sklearn.ensemble.HistGradientBoostingRegressor")
    assert meta["task"] == "regression"
    ev = evaluate(str(tmp_path / "r"), str(tmp_path / "rt.parquet"), label="target",
                  features=["x1", "x2"], task="regression")
    assert set(ev.metrics) == {"rmse", "mae", "r2", "test_rows"} and ev.metrics["r2"] > 0.8
    train(str(p), str(tmp_path / "c"), str(tmp_path / "ct.parquet"), label="label",
          features=["x1", "x2"], estimator="random_forest", params={"n_estimators": 20})
    ev = evaluate(str(tmp_path / "c"), str(tmp_path / "ct.parquet"), label="label",
                  features=["x1", "x2"])
    assert ev.labels == ["0", "1", "2"] and len(ev.confusion) == 3 and "auc" not in ev.metrics


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"label": "lable"}, "label column 'lable' is not in the training set. Did you mean "
                         "'label'?"),
    ({"label": "label", "estimator": "sklearn.nope.Thing"}, "module 'sklearn.nope'"),
    ({"label": "label", "estimator": "sklearn.linear_model.LogisticRegresion"},
     "has no 'LogisticRegresion'. Did you mean 'LogisticRegression'"),
    ({"label": "label", "params": {"bogus": 1}}, "rejects params {'bogus': 1}"),
    ({"label": "label", "test_size": 1.5}, "test_size 1.5 must be between 0 and 1"),
    ({"label": "label", "how": "time", "timestamp_column": "ts"}, "split='time' needs column"),
    ({"label": "label", "features": ["x9"]}, "no column(s) ['x9']"),
])
def test_train_errors_say_what_to_fix(tmp_path: Path, data: Path, kwargs: dict[str, object],
                                      message: str) -> None:
    with pytest.raises((InvalidRequestError, NotFoundError)) as err:
        train(str(data), str(tmp_path / "m"), str(tmp_path / "t.parquet"), **kwargs)  # type: ignore[arg-type]
    assert message in str(err.value)


def test_the_training_set_is_pinned_to_its_snapshot(tmp_path: Path) -> None:
    repo = create_repo(tmp_path / "repo", accounts=40, days=3)
    FeatureStore(repo).apply()
    args = {"repo": str(repo), "feature_service": "fraud_detection_v2",
            "entities": "data/labels.parquet"}
    first = snapshot(**args)
    # an artifact path as KFP gives it: no suffix; the set is still one Parquet file there
    meta = build(str(tmp_path / "a" / "dataset"), **args)
    meta2 = build(str(tmp_path / "b" / "dataset"), **args)
    assert (tmp_path / "a" / "dataset").is_file()
    assert (tmp_path / "a" / "dataset").read_bytes() == (tmp_path / "b" / "dataset").read_bytes()
    assert os.listdir(tmp_path / "a") == ["dataset"]
    assert meta == meta2  # a rerun on the same snapshot builds the identical set
    assert meta["rows"] == len(pd.read_parquet(repo / "data" / "labels.parquet"))
    assert meta["tureen.entities_sha256"] == first["entities_sha256"]
    assert meta["tureen.definitions_sha256"] == first["definitions_sha256"]
    assert "amount_vs_avg_7d" in meta["tureen.features"]
    assert snapshot(**args) == first
    src = repo / "data" / "account_profile.parquet"
    pd.read_parquet(src).iloc[:-1].to_parquet(src, index=False)
    assert snapshot(**args)["sources"] != first["sources"]
    with pytest.raises(ConflictError, match="pinned to version 7"):
        build(str(tmp_path / "c.parquet"), pin_registry_version=7, **args)
    with pytest.raises(InvalidRequestError, match="not both"):
        build(str(tmp_path / "d.parquet"), features=["account_profile:credit_score"], **args)


def test_config_overrides_become_tureen_env_without_touching_the_process(
        tmp_path: Path) -> None:
    env = overrides_env(
        "registry: {type: sql, url: 'postgresql://db/x'}\n"
        "offline_store: {type: spark, conf: {spark.executor.memory: 4g}}\n"
        "models: {path: 's3://b/models'}\nproject: other\n"
        "online_store: {path: 'true'}\n")
    assert env == {"TUREEN_REGISTRY__TYPE": "sql", "TUREEN_REGISTRY__URL": "postgresql://db/x",
                   "TUREEN_OFFLINE_STORE__TYPE": "spark",
                   "TUREEN_OFFLINE_STORE__CONF": "{spark.executor.memory: 4g}",
                   "TUREEN_MODELS__PATH": "s3://b/models", "TUREEN_PROJECT": "other",
                   "TUREEN_ONLINE_STORE__PATH": "'true'"}
    for text in env.values():  # each parses back (as YAML) to what was written
        yaml.safe_load(text)
    repo = create_repo(tmp_path / "repo", accounts=5, days=3)
    _, cfg = repo_config(str(repo), "models: {path: 's3://b/m'}\nproject: p2\n")
    assert cfg.project == "p2" and cfg.models.options["path"] == "s3://b/m"
    assert "TUREEN_PROJECT" not in __import__("os").environ
    with pytest.raises(InvalidRequestError, match="YAML mapping"):
        overrides_env("- a\n- b\n")


@pytest.mark.parametrize(("args", "why"), [
    ((0.70, 0.75, "max", None, 0.0), "auc 0.7 is below the threshold 0.75"),
    ((0.80, 0.75, "max", 0.82, 0.0), "does not beat the champion m:1 (0.82)"),
    ((0.80, 0.75, "max", 0.80, 0.0), "does not beat the champion m:1 (0.8)"),
    ((0.80, 0.75, "max", 0.79, 0.02), "does not beat the champion m:1 (0.79 + 0.02)"),
    ((0.30, 0.25, "min", None, 0.0), "auc 0.3 is above the threshold 0.25"),
])
def test_the_gate_says_why_not(args: tuple[float, float, str, float | None, float],
                               why: str) -> None:
    value, threshold, direction, champion, improve = args
    reason = compare(value, threshold, direction, champion, improve, "auc", "m:1")
    assert reason is not None and why in reason


def test_the_gate_passes_better_models() -> None:
    assert compare(0.83, 0.75, "max", 0.82, 0.0, "auc", "m:1") is None
    assert compare(0.20, 0.25, "min", 0.22, 0.01, "log_loss", "m:1") is None
    assert compare(0.80, 0.0, "max", None, 0.0, "auc", None) is None
    md = Decision(True, "canary", "auc 0.83 passes", "auc", 0.83, "m:1", 0.82).markdown(
        "m:2", "fraud")
    assert "| decision | canary |" in md and "| champion | m:1 (0.82) |" in md


def test_compile_finds_local_paths(tmp_path: Path) -> None:
    f = tmp_path / "labels.csv"
    f.write_text("x")
    doc = {"root": {"inputDefinitions": {"parameters": {
        "entities": {"defaultValue": str(f)}, "rel": {"defaultValue": "data/x.csv"}}},
        "dag": {"tasks": {"t": {"inputs": {"parameters": {
            "p": {"runtimeValue": {"constant": {"paths": [str(tmp_path / "gone")]}}}}}}}}}}
    found = local_paths(doc, tmp_path)
    assert found == [f"pipeline parameter 'entities' is the local path {f}",
                     f"input 'p' of task 't' is the local path {tmp_path / 'gone'}"]


def test_the_training_set_reads_entity_rows_with_another_time_column(tmp_path: Path) -> None:
    repo = create_repo(tmp_path / "repo", accounts=30)
    with FeatureStore(repo) as fs:
        fs.apply()
    labels = pd.read_parquet(repo / "data/labels.parquet")
    labels["scored_at"] = labels.pop("event_timestamp")
    labels["created"] = labels["scored_at"]
    labels.to_parquet(repo / "data/rows.parquet")
    meta = build(str(tmp_path / "ds"), repo=str(repo), feature_service="fraud_detection_v1",
                 entities="data/rows.parquet", timestamp_column="scored_at")
    assert meta["rows"] == len(labels)
