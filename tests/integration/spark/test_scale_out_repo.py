"""One feature repo, two tureen.yaml settings: the embedded defaults (file registry, DuckDB,
SQLite) and the scale-out backends (PostgreSQL registry, Spark, Redis) chosen only through
TUREEN_* environment overrides. Every answer must be the same."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from tests.services import redis_project, require_postgres, require_redis

from tureen.config import load_config
from tureen.examples.fraud import create_repo
from tureen.offline.spark_engine import SparkEngine
from tureen.online.redis_store import RedisOnlineStore
from tureen.registry.sql_store import SqlRegistryStore
from tureen.store import FeatureStore

pytestmark = [pytest.mark.services, pytest.mark.slow]

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def _store(repo: Path, environ: dict[str, str]) -> FeatureStore:
    return FeatureStore(repo, config=load_config(repo, environ=environ))


def test_switching_backends_in_config_changes_no_answer(spark: Any, tmp_path: Path) -> None:
    project = redis_project(f"scale_{uuid.uuid4().hex[:10]}")
    scaled_env = {
        "TUREEN_PROJECT": project,
        "TUREEN_REGISTRY__TYPE": "sql", "TUREEN_REGISTRY__URL": require_postgres(),
        "TUREEN_OFFLINE_STORE__TYPE": "spark", "TUREEN_OFFLINE_STORE__MASTER": "local[2]",
        "TUREEN_ONLINE_STORE__TYPE": "redis", "TUREEN_ONLINE_STORE__URL": require_redis(),
    }
    default = _store(create_repo(tmp_path / "default", accounts=120, now=NOW),
                     {"TUREEN_PROJECT": project})
    scaled = _store(create_repo(tmp_path / "scaled", accounts=120, now=NOW), scaled_env)
    try:
        assert isinstance(scaled.offline, SparkEngine)
        assert isinstance(scaled.online, RedisOnlineStore)
        assert isinstance(scaled.registry.store, SqlRegistryStore)
        for s in (default, scaled):
            s.apply()
            s.materialize(NOW - timedelta(days=40), NOW)
        rows = [{"account_id": i, "amount": 7.5 * i} for i in range(1001, 1041)]
        rows.append({"account_id": 5, "amount": 1.0})  # unknown account

        def online() -> list[dict[str, Any]]:
            return [s.get_online_features(feature_service="fraud_detection_v2",
                                          entity_rows=rows).to_feast_json()
                    for s in (default, scaled)]

        a, b = online()
        assert a == b
        assert "PRESENT" in str(a) and "NOT_FOUND" in str(a)

        entity_df = pd.DataFrame({
            "account_id": [1001 + (i * 7) % 130 for i in range(300)],
            "event_timestamp": [NOW - timedelta(hours=5 * i, minutes=i) for i in range(300)],
            "amount": [float(i) for i in range(300)],
        })
        ta, tb = (s.get_historical_features(entity_df, feature_service="fraud_detection_v2")
                  .to_arrow() for s in (default, scaled))
        assert ta.equals(tb)

        pushed = pd.DataFrame({
            "account_id": [1001, 1002], "num_transactions_7d": [99, 98],
            "total_amount_7d": [1.5, 2.5], "has_fraud_7d": [True, False],
            "event_timestamp": [NOW + timedelta(minutes=1)] * 2,
            "created": [NOW + timedelta(minutes=1)] * 2,
        })
        for s in (default, scaled):
            s.push("transaction_stats_push", pushed, to="online_and_offline")
        a, b = online()
        assert a == b
        later = pd.DataFrame({"account_id": [1001, 1002],
                              "event_timestamp": [NOW + timedelta(hours=1)] * 2,
                              "amount": [1.0, 2.0]})
        ta, tb = (s.get_historical_features(later, feature_service="fraud_detection_v2")
                  .to_arrow() for s in (default, scaled))
        assert ta.equals(tb)
        assert ta.column("num_transactions_7d").to_pylist() == [99, 98]
    finally:
        scaled.teardown()
        scaled.close()
        default.close()
