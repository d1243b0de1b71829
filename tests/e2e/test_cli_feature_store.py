"""The feature-store half of the product, driven through the real `tureen` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd


def tureen(repo: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "tureen", *args, "--repo", str(repo)]
        if args[0] not in ("init",) else [sys.executable, "-m", "tureen", *args],
        capture_output=True, text=True, timeout=120,
    )
    if ok:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


def test_init_apply_materialize_read_train_teardown(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    tureen(repo, "init", str(repo), "--accounts", "200")
    assert "will create feature view account_profile" in tureen(repo, "plan").stdout
    assert "created feature service fraud_detection_v1" in tureen(repo, "apply").stdout
    assert "No changes" in tureen(repo, "plan").stdout

    listed = json.loads(tureen(repo, "features", "list", "--json").stdout)
    assert {r["name"] for r in listed} >= {"account_profile", "transaction_stats",
                                           "transaction_risk", "fraud_detection_v1"}

    tureen(repo, "materialize-incremental", "now", "--no-progress")
    out = json.loads(tureen(repo, "get-online-features", "--service", "fraud_detection_v1",
                            "--entity", "account_id=1001", "--entity", "account_id=7",
                            "--json").stdout)
    names = out["metadata"]["feature_names"]
    assert names[0] == "account_id"
    assert names[1:] == ["credit_score", "account_age_days", "has_2fa_installed",
                         "num_transactions_7d", "total_amount_7d", "has_fraud_7d"]
    statuses = {n: r["statuses"] for n, r in zip(names, out["results"], strict=True)}
    assert statuses["credit_score"] == ["PRESENT", "NOT_FOUND"]

    train = tmp_path / "train.parquet"
    tureen(repo, "get-historical-features", "--entities", str(repo / "data/labels.parquet"),
           "--service", "fraud_detection_v2", "--out", str(train))
    labels = pd.read_parquet(repo / "data/labels.parquet")
    df = pd.read_parquet(train)
    assert len(df) == len(labels)
    assert list(df["account_id"]) == list(labels["account_id"])  # input order kept
    assert df["credit_score"].notna().all()
    assert "amount_vs_avg_7d" in df.columns

    history = json.loads(tureen(repo, "registry-dump", "--history").stdout)
    assert history[0]["version"] == 1
    tureen(repo, "teardown", "--yes")
    assert not (repo / "data" / "registry.json").exists()


def test_failures_exit_non_zero_with_one_line_error(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    tureen(repo, "init", str(repo), "--accounts", "50")
    tureen(repo, "apply")
    bad = tureen(repo, "get-online-features", "-f", "account_profile:credit_scor",
                 "--entity", "account_id=1001", ok=False)
    assert bad.returncode == 1
    assert "Did you mean 'account_profile:credit_score'" in bad.stderr
    assert "Traceback" not in bad.stderr
    bad = tureen(repo, "get-historical-features", "--entities", str(repo / "data/labels.parquet"),
                 "--service", "fraud_detection_v1", "--out", str(tmp_path / "x.json"), ok=False)
    assert bad.returncode == 1 and "not .json" in bad.stderr  # was a Parquet folder x.json
    assert not (tmp_path / "x.json").exists()
    bad = tureen(repo, "materialize", "2026-02-01", "2026-01-01", ok=False)
    assert bad.returncode == 1 and "not before" in bad.stderr
    bad = tureen(tmp_path / "nowhere", "apply", ok=False)
    assert bad.returncode == 1 and "tureen init" in bad.stderr
    again = tureen(repo, "init", str(repo), ok=False)
    assert again.returncode == 1 and "not empty" in again.stderr


def test_online_features_table_shows_statuses_and_whole_values(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    tureen(repo, "init", str(repo), "--accounts", "50")
    tureen(repo, "apply")
    tureen(repo, "materialize-incremental", "now", "--no-progress")
    args = ("get-online-features", "--service", "fraud_detection_v1",
            "--entity", "account_id=1001", "--entity", "account_id=7")
    doc = json.loads(tureen(repo, *args, "--json").stdout)
    names = doc["metadata"]["feature_names"]
    total = doc["results"][names.index("total_amount_7d")]["values"][0]
    out = tureen(repo, *args).stdout
    assert "…" not in out  # nothing is cut
    assert "total_amount_7d" in out and str(total) in out
    lines = [line for line in out.splitlines() if "credit_score" in line]
    assert len(lines) == 1 and "NOT_FOUND" in lines[0]  # entity 7 is unknown: said so


def test_entity_rows_with_another_time_column(tmp_path: Path) -> None:
    """The error for entity rows without an event_timestamp names --timestamp-column, and the
    option exists (it did not)."""
    repo = tmp_path / "repo"
    tureen(repo, "init", str(repo), "--accounts", "50")
    tureen(repo, "apply")
    labels = pd.read_parquet(repo / "data/labels.parquet")
    labels["scored_at"] = labels.pop("event_timestamp")
    labels["created"] = labels["scored_at"]  # two time columns: which one is ambiguous
    rows = tmp_path / "rows.parquet"
    labels.to_parquet(rows)
    args = ("get-historical-features", "--entities", str(rows), "--service",
            "fraud_detection_v1")
    bad = tureen(repo, *args, "--out", str(tmp_path / "a.parquet"), ok=False)
    assert bad.returncode == 1 and "--timestamp-column" in bad.stderr
    tureen(repo, *args, "--timestamp-column", "scored_at", "--out", str(tmp_path / "b.parquet"))
    got = pd.read_parquet(tmp_path / "b.parquet")
    assert len(got) == len(labels) and got["credit_score"].notna().all()
