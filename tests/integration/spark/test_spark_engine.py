"""What only the Spark engine does: writing a training set from Spark, configuration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.offline_oracle import OracleView, assert_matches, write_rows

from tureen.backends import load_backend
from tureen.config import BackendConfig
from tureen.definitions import (
    Entity,
    FeatureView,
    Field,
    FileSource,
    RequestSource,
    on_demand_feature_view,
)
from tureen.feature_refs import resolve
from tureen.offline.duckdb_engine import DuckDBEngine
from tureen.offline.retrieval import get_historical_features
from tureen.registry.snapshot import RegistrySnapshot
from tureen.types import Float64, Int64

pytestmark = pytest.mark.slow

T0 = datetime(2026, 3, 1, tzinfo=UTC)
US = pa.timestamp("us", tz="UTC")
DRIVER = Entity("driver", dtype=Int64)
TXN = RequestSource("txn", [Field("amount", Float64)])


def _setup(repo: Path) -> tuple[RegistrySnapshot, OracleView, list[dict[str, Any]]]:
    rows = [{"driver": d, "event": T0 + timedelta(hours=h), "created": None,
             "trips": d * 100 + h} for d in range(5) for h in range(0, 10, 2)]
    oracle = OracleView("stats", ("driver",), ("trips",), rows, timedelta(hours=3))
    write_rows(repo / "stats" / "part-0.parquet", oracle,
               {"driver": pa.int64(), "trips": pa.int64()})
    view = FeatureView("stats", [DRIVER], [Field("trips", Int64)],
                       FileSource("stats", created_timestamp_column="created"),
                       ttl=timedelta(hours=3))

    @on_demand_feature_view(sources=[view[["trips"]], TXN],
                            schema=[Field("per_trip", Float64)])
    def per_trip(df: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"per_trip": df["amount"] / df["trips"]})

    snap = RegistrySnapshot(project="p", entities={"driver": DRIVER},
                            feature_views={"stats": view}, on_demand_views={"per_trip": per_trip})
    entities = [{"driver": (i * 7) % 6, "event_timestamp": T0 + timedelta(minutes=37 * i),
                 "amount": float(i)} for i in range(200)]
    return snap, oracle, entities


def test_training_set_to_parquet_matches_the_in_memory_one(engine: Any, repo: Path) -> None:
    snap, oracle, entities = _setup(repo)
    table = pa.Table.from_pylist(entities, schema=pa.schema(
        [("driver", pa.int64()), ("event_timestamp", US), ("amount", pa.float64())]))
    features = ["stats:trips", "per_trip:per_trip"]
    plan = resolve(snap, features)
    engine.historical_features_to_parquet(table, plan, "event_timestamp", repo / "out")
    written = pq.read_table(repo / "out")  # a folder of part files, read back in name order
    expected = get_historical_features(engine, snap, table, features).to_arrow()
    duck = DuckDBEngine(repo)
    try:
        by_duckdb = get_historical_features(duck, snap, table, features).to_arrow()
    finally:
        duck.close()
    assert written.column_names == ["driver", "event_timestamp", "amount", "trips", "per_trip"]
    assert written.schema.field("event_timestamp").type == US  # not Spark's INT96 default
    assert written.cast(expected.schema).equals(expected)
    assert expected.equals(by_duckdb)
    assert_matches(written, entities, "event_timestamp", [oracle],
                   names={("stats", "trips"): "trips"})


def test_retrieval_job_to_parquet_is_written_by_spark(engine: Any, repo: Path) -> None:
    """`FeatureStore.get_historical_features(...).to_parquet()` (and the CLI) use the
    engine's own writer: the output is Spark's dataset folder, not one driver-side file."""
    snap, oracle, entities = _setup(repo)
    job = get_historical_features(engine, snap, pd.DataFrame(entities), ["stats:trips"])
    job.to_parquet(repo / "train")
    assert (repo / "train").is_dir() and any((repo / "train").glob("part-*.parquet"))
    assert_matches(pq.read_table(repo / "train"), entities, "event_timestamp", [oracle],
                   names={("stats", "trips"): "trips"})


def test_training_set_from_a_parquet_dataset_keeps_file_then_row_order(
    engine: Any, repo: Path
) -> None:
    snap, oracle, entities = _setup(repo)
    folder = repo / "entities"
    folder.mkdir()
    schema = pa.schema([("driver", pa.int64()), ("event_timestamp", pa.timestamp("us")),
                        ("amount", pa.float64())])
    for part in range(3):  # naive timestamps: UTC
        chunk = entities[part * 70:(part + 1) * 70]
        rows = [{**e, "event_timestamp": e["event_timestamp"].replace(tzinfo=None)}
                for e in chunk]
        pq.write_table(pa.Table.from_pylist(rows, schema=schema),
                       folder / f"part-{part}.parquet")
    plan = resolve(snap, ["stats:trips"], full_feature_names=True)
    engine.historical_features_to_parquet(folder, plan, "event_timestamp", repo / "out")
    written = pq.read_table(repo / "out")
    assert written.column_names == ["driver", "event_timestamp", "amount", "stats__trips"]
    assert written.column("amount").to_pylist() == [e["amount"] for e in entities]
    assert_matches(written, entities, "event_timestamp", [oracle])


def test_latest_rows_match_duckdb(engine: Any, repo: Path) -> None:
    snap, _, _ = _setup(repo)
    view = snap.feature_view("stats")
    duck = DuckDBEngine(repo)
    try:
        for start, end in [(None, T0 + timedelta(hours=5)), (T0 + timedelta(hours=3),
                                                              T0 + timedelta(hours=9))]:
            a = pa.Table.from_batches(list(engine.latest_rows(view, start, end)))
            b = pa.Table.from_batches(list(duck.latest_rows(view, start, end)))
            assert a.schema == b.schema
            assert a.sort_by("driver").equals(b.sort_by("driver"))
    finally:
        duck.close()


def test_latest_rows_stream_back_in_bounded_batches_and_leave_no_staging(
        spark: Any, repo: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    from tureen.offline.spark_engine import SparkEngine
    from tureen.offline.spark_session import SparkOptions

    snap, _, _ = _setup(repo)
    view = snap.feature_view("stats")
    staging = tmp_path_factory.mktemp("staging")
    engine = SparkEngine(repo, SparkOptions(batch_rows=2, staging_dir=str(staging)),
                         spark=spark)
    duck = DuckDBEngine(repo)
    try:
        end = T0 + timedelta(hours=9)
        batches = list(engine.latest_rows(view, None, end))
        assert len(batches) > 1 and all(b.num_rows <= 2 for b in batches)
        a, b = pa.Table.from_batches(batches), pa.Table.from_batches(
            list(duck.latest_rows(view, None, end)))
        assert a.schema == b.schema and a.sort_by("driver").equals(b.sort_by("driver"))
        assert list(staging.iterdir()) == []  # the staged Parquet is removed afterwards
    finally:
        duck.close()
        engine.close()


def test_backend_table_builds_it_and_shares_the_running_session(spark: Any, repo: Path) -> None:
    engine = load_backend("offline_store", BackendConfig.model_validate(
        {"type": "spark", "master": "local[2]", "conf": {"spark.sql.shuffle.partitions": 2}}),
        repo, "p")
    try:
        assert engine.spark is spark  # one SparkSession per JVM: reused, and not stopped
        assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    finally:
        engine.close()
    assert spark.range(1).count() == 1
