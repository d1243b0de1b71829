"""Logged requests + labels → training set; served features vs. offline → skew."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from tureen.cli.main import cli
from tureen.errors import InvalidRequestError
from tureen.inference_log import InferenceLogger, InferenceRecord, LogMode
from tureen.inference_log.dataset import read_log
from tureen.inference_log.sinks.parquet import ParquetSink
from tureen.inference_log.training_set import build_training_set
from tureen.store import FeatureStore

T0 = datetime(2026, 5, 1, 12, tzinfo=UTC)


def _write_log(root: Path, records: list[InferenceRecord]) -> None:
    logger = InferenceLogger(ParquetSink(root), LogMode.ALL)
    for r in records:
        logger.log(r)
    logger.close()


def _rec(rid: str, account: int, at: datetime, amount: float, score: float) -> InferenceRecord:
    return InferenceRecord(rid, "fraud", "m", "1", {"amount": [amount]}, np.array([score]),
                           {"account_id": [account]}, timestamp=at.timestamp())


def test_join_by_request_id_and_row(tmp_path: Path) -> None:
    two_rows = InferenceRecord("r2", "fraud", "m", "1", {"amount": [5.0, 6.0]},
                               np.array([0.2, 0.3]), {"account_id": [2, 3]},
                               timestamp=T0.timestamp())
    _write_log(tmp_path, [_rec("r1", 1, T0, 1.0, 0.1), two_rows])
    log = read_log(str(tmp_path), "fraud")
    labels = pd.DataFrame({"request_id": ["r2", "r1", "nope"], "row": [1, 0, 0],
                           "is_fraud": [True, False, True]})
    res = build_training_set(log, labels)
    assert (res.method, res.matched, res.unmatched) == ("request_id", 2, 1)
    got = res.frame.set_index("request_id")
    assert got.loc["r2", "amount"] == 6.0 and got.loc["r2", "account_id"] == 3
    assert bool(got.loc["r2", "is_fraud"]) and got.loc["r1", "prediction__predictions"] == 0.1
    with pytest.raises(InvalidRequestError, match="duplicate"):
        build_training_set(log, pd.concat([labels, labels]))


def test_asof_join_by_entity_picks_latest_prediction_before_label(tmp_path: Path) -> None:
    _write_log(tmp_path, [
        _rec("a", 1, T0, 10.0, 0.1),
        _rec("b", 1, T0 + timedelta(hours=2), 20.0, 0.2),
        _rec("c", 2, T0 + timedelta(hours=1), 30.0, 0.3),
    ])
    log = read_log(str(tmp_path), "fraud")
    labels = pd.DataFrame({
        "account_id": [1, 1, 2, 3, 1],
        "event_timestamp": [T0 + timedelta(hours=1), T0 + timedelta(hours=2),
                            T0 + timedelta(days=3), T0, T0 - timedelta(minutes=1)],
        "is_fraud": [1, 0, 1, 1, 0],
    })
    res = build_training_set(log, labels)
    assert (res.method, res.matched, res.unmatched) == ("asof", 3, 2)
    assert list(res.frame["request_id"]) == ["a", "b", "c"]  # label order kept
    assert list(res.frame["amount"]) == [10.0, 20.0, 30.0]  # exact timestamp matches (b)
    tight = build_training_set(log, labels, tolerance=timedelta(hours=1))
    assert list(tight.frame["request_id"]) == ["a", "b"]  # c is 3 days old at label time
    with pytest.raises(InvalidRequestError, match="request_id"):
        build_training_set(log, pd.DataFrame({"user": [1], "y": [0]}))


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    from tureen.examples.fraud import create_repo

    d = create_repo(tmp_path / "repo", accounts=40)
    FeatureStore(d).apply()
    return d


def test_skew_and_training_set_cli_on_a_real_repo(repo: Path) -> None:
    labels = pd.read_parquet(repo / "data" / "labels.parquet").head(20)
    entity_df = labels[["account_id", "event_timestamp"]]
    with FeatureStore(repo) as store:
        offline = store.get_historical_features(
            entity_df, feature_service="fraud_detection_v1").to_df()
    features = [c for c in offline.columns if c not in ("account_id", "event_timestamp")]
    records = []
    for i, row in offline.iterrows():
        served = {f: [None if pd.isna(row[f]) else row[f]] for f in features}
        if int(str(i)) < 5:  # the first five were served a stale credit score
            served["credit_score"] = [int(row["credit_score"]) + 1]
        ts = pd.Timestamp(row["event_timestamp"]).to_pydatetime()
        records.append(InferenceRecord(f"q{i}", "fraud", "m", "1", served, np.array([0.5]),
                                       {"account_id": [int(row["account_id"])]},
                                       timestamp=ts.timestamp()))
    _write_log(repo / "data" / "inference_log", records)

    run = CliRunner().invoke
    r = run(cli, ["logs", "skew", "fraud", "--feature-service", "fraud_detection_v1",
                  "--repo", str(repo), "--json"])
    assert r.exit_code == 0, r.output
    report = {f["feature"]: f for f in json.loads(r.output)["features"]}
    assert set(report) == set(features)
    assert report["credit_score"]["mismatches"] == 5
    assert report["credit_score"]["mismatch_rate"] == pytest.approx(0.25)
    assert all(report[f]["mismatches"] == 0 for f in features if f != "credit_score")
    r = run(cli, ["logs", "skew", "fraud", "--feature-service", "fraud_detection_v1",
                  "--repo", str(repo)])
    assert r.exit_code == 0 and "25.00%" in r.output

    later = labels.assign(event_timestamp=labels["event_timestamp"] + pd.Timedelta(minutes=5))
    later.to_parquet(repo / "late_labels.parquet")
    out = repo / "out" / "train.parquet"
    r = run(cli, ["logs", "training-set", "fraud", "--labels", str(repo / "late_labels.parquet"),
                  "--out", str(out), "--repo", str(repo), "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert summary["matched"] == 20 and summary["method"] == "asof"
    train = pd.read_parquet(out)
    assert {"is_fraud", "credit_score", "request_id", "prediction__predictions"} <= set(train)
    r = run(cli, ["logs", "skew", "nothing-here", "--feature-service", "fraud_detection_v1",
                  "--repo", str(repo)])
    assert r.exit_code == 1 and "no inference log" in r.output


def test_skew_recomputes_on_demand_features_from_logged_request_fields(repo: Path) -> None:
    labels = pd.read_parquet(repo / "data" / "labels.parquet").head(15)
    with FeatureStore(repo) as store:
        offline = store.get_historical_features(
            labels[["account_id", "event_timestamp", "amount"]],
            feature_service="fraud_detection_v2").to_df()
    features = [c for c in offline.columns
                if c not in ("account_id", "event_timestamp", "amount")]
    assert "amount_vs_avg_7d" in features  # an on-demand feature that needs `amount`
    records = []
    for i, row in offline.iterrows():
        ts = pd.Timestamp(row["event_timestamp"]).to_pydatetime()
        ctx = {"account_id": [int(row["account_id"])], "amount": [float(row["amount"])]}
        records.append(InferenceRecord(
            f"v2-{i}", "fraud2", "m", "1",
            {f: [None if pd.isna(row[f]) else row[f]] for f in features}, np.array([0.1]),
            entities_fn=lambda c=ctx: c, entity_keys=("account_id",),  # type: ignore[misc]
            timestamp=ts.timestamp()))
    _write_log(repo / "data" / "inference_log", records)
    log = read_log(str(repo / "data" / "inference_log"), "fraud2")
    assert "request.amount" in log.column_names and "entity.amount" not in log.column_names
    r = CliRunner().invoke(cli, ["logs", "skew", "fraud2", "--feature-service",
                                 "fraud_detection_v2", "--repo", str(repo), "--json"])
    assert r.exit_code == 0, r.output
    report = {f["feature"]: f for f in json.loads(r.output)["features"]}
    assert report["amount_vs_avg_7d"]["compared"] == 15
    assert all(f["mismatches"] == 0 for f in report.values()), report
