"""DuckDB engine options from tureen.yaml, and use from several threads at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tureen.backends import load_backend
from tureen.config import BackendConfig
from tureen.definitions import Entity, FeatureView, Field, FileSource
from tureen.errors import ConfigError
from tureen.offline.duckdb_engine import DuckDBEngine
from tureen.offline.retrieval import get_historical_features
from tureen.registry.snapshot import RegistrySnapshot
from tureen.types import Int64

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def test_options_are_validated(repo: Path) -> None:
    cfg = BackendConfig.model_validate(
        {"type": "duckdb", "threads": 1, "memory_limit": "512MB", "temp_directory": "spill"}
    )
    engine = load_backend("offline_store", cfg, repo, "p")
    assert isinstance(engine, DuckDBEngine) and engine.options.threads == 1
    engine.close()
    with pytest.raises(ConfigError, match="thread"):
        load_backend("offline_store", BackendConfig.model_validate(
            {"type": "duckdb", "thread": 2}), repo, "p")
    with pytest.raises(ConfigError, match="threads"):
        load_backend("offline_store", BackendConfig.model_validate(
            {"type": "duckdb", "threads": 0}), repo, "p")


def test_concurrent_retrievals_agree_with_sequential_ones(repo: Path) -> None:
    n = 200
    pq.write_table(pa.table({
        "driver": pa.array(range(n), pa.int64()), "trips": pa.array(range(n), pa.int64()),
        "event_timestamp": pa.array([T0] * n, pa.timestamp("us", tz="UTC")),
    }), repo / "s.parquet")
    driver = Entity("driver", dtype=Int64)
    view = FeatureView("stats", [driver], [Field("trips", Int64)], FileSource("s.parquet"))
    snap = RegistrySnapshot(project="p", entities={"driver": driver},
                            feature_views={"stats": view})
    frames = [pd.DataFrame({"driver": [(i * 7 + j) % (n + 5) for j in range(50)],
                            "event_timestamp": [T0 + timedelta(hours=1)] * 50})
              for i in range(12)]
    engine = DuckDBEngine(repo)

    def run(df: pd.DataFrame) -> pa.Table:
        return get_historical_features(engine, snap, df, ["stats:trips"]).to_arrow()

    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(run, frames))
    assert all(a.equals(run(df)) for a, df in zip(together, frames, strict=True))
    engine.close()
