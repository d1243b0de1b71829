"""Engines start only when a command needs them (issue 10): with the Spark offline store,
`tureen plan` and a push to the online store used to start Spark (10-15 s)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tureen.examples.fraud import create_repo
from tureen.store import FeatureStore


@pytest.fixture
def spark_repo(tmp_path: Path) -> Path:
    repo = create_repo(tmp_path / "repo", accounts=5, days=2)
    text = (repo / "tureen.yaml").read_text().replace("type: duckdb", "type: spark")
    (repo / "tureen.yaml").write_text(text)
    return repo


def test_plan_and_apply_check_sources_without_starting_spark(spark_repo: Path) -> None:
    with FeatureStore(spark_repo) as fs:
        assert fs.config.offline_store.type == "spark"
        assert fs.plan().has_changes
        fs.apply()
        assert "offline" not in fs.__dict__  # the Spark engine was never built


def test_plan_still_reports_a_schema_mismatch(spark_repo: Path) -> None:
    defs = (spark_repo / "features.py").read_text()
    (spark_repo / "features.py").write_text(defs.replace('Field("credit_score", Int64',
                                                         'Field("credit_scor", Int64'))
    with FeatureStore(spark_repo) as fs, pytest.raises(Exception, match="credit_scor"):
        fs.plan()


def test_push_to_the_online_store_does_not_start_spark(spark_repo: Path) -> None:
    with FeatureStore(spark_repo) as fs:
        fs.apply()
        now = datetime.now(UTC)
        n = fs.push("transaction_stats_push", {
            "account_id": [1001], "num_transactions_7d": [3], "total_amount_7d": [10.0],
            "has_fraud_7d": [False], "event_timestamp": [now], "created": [now]}, to="online")
        assert n == 1
        assert "offline" not in fs.__dict__
