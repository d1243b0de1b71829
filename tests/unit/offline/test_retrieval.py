"""The retrieval service: validation messages, naming, on-demand views, entity inputs, jobs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from tureen.definitions import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    RequestSource,
    on_demand_feature_view,
)
from tureen.errors import InvalidRequestError, NotFoundError
from tureen.offline.protocol import OfflineEngine
from tureen.offline.retrieval import get_historical_features
from tureen.registry.snapshot import RegistrySnapshot
from tureen.types import Float32, Float64, Int64, String

T0 = datetime(2026, 3, 1, tzinfo=UTC)
US = pa.timestamp("us", tz="UTC")
DRIVER = Entity("driver", dtype=Int64)
STATS = FeatureView(
    "stats", [DRIVER], [Field("trips", Int64), Field("rating", Float32), Field("name", String)],
    FileSource("stats.parquet"), ttl=timedelta(days=1),
)
OTHER = FeatureView("other", [DRIVER], [Field("trips", Int64)], FileSource("stats.parquet"))
TXN = RequestSource("txn", [Field("amount", Float64)])


@on_demand_feature_view(sources=[STATS[["trips", "rating"]], TXN],
                        schema=[Field("per_trip", Float64), Field("flag", Int64)])
def per_trip(df: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame()
    out["per_trip"] = df["amount"] / df["trips"]
    out["flag"] = (df["rating"] > 4).astype("int64")
    return out


@on_demand_feature_view(sources=[STATS[["trips"]]], schema=[Field("double_trips", Int64)],
                        mode="python")
def double_trips(d: dict[str, Any]) -> dict[str, Any]:
    return {"double_trips": [None if v is None else 2 * v for v in d["trips"]]}


SNAP = RegistrySnapshot(
    project="p", entities={"driver": DRIVER},
    feature_views={"stats": STATS, "other": OTHER},
    on_demand_views={"per_trip": per_trip, "double_trips": double_trips},
    feature_services={"svc": FeatureService("svc", [STATS[["rating"]], per_trip])},
)


@pytest.fixture(autouse=True)
def stats_file(repo: Path) -> None:
    pq.write_table(pa.table({
        "driver": [1, 2],
        "trips": [4, 10],
        "rating": [4.5, 3.0],
        "name": ["ann", "bob"],
        "event_timestamp": pa.array([T0, T0], US),
    }), repo / "stats.parquet")


def entity(**extra: list[Any]) -> pd.DataFrame:
    return pd.DataFrame({"driver": [1, 2, 3], "event_timestamp": [T0 + timedelta(hours=1)] * 3,
                         **extra})


def test_output_columns_and_types_in_requested_order(engine: OfflineEngine) -> None:
    out = get_historical_features(engine, SNAP, entity(label=[1, 0, 1]),
                                  ["stats:name", "stats:trips", "stats:rating"]).to_arrow()
    assert out.column_names == ["driver", "event_timestamp", "label", "name", "trips", "rating"]
    assert [out.schema.field(n).type for n in ("name", "trips", "rating")] == [
        pa.string(), pa.int64(), pa.float32()]
    assert out.column("name").to_pylist() == ["ann", "bob", None]


def test_full_feature_names(engine: OfflineEngine) -> None:
    with pytest.raises(InvalidRequestError, match="full_feature_names=True"):
        get_historical_features(engine, SNAP, entity(), ["stats:trips", "other:trips"])
    out = get_historical_features(engine, SNAP, entity(), ["stats:trips", "other:trips"],
                                  full_feature_names=True).to_arrow()
    assert out.column_names[-2:] == ["stats__trips", "other__trips"]


def test_on_demand_views_run_offline(engine: OfflineEngine) -> None:
    df = entity(amount=[8.0, 5.0, 1.0])
    out = get_historical_features(engine, SNAP, df, ["per_trip:per_trip", "stats:rating",
                                                     "double_trips:double_trips",
                                                     "per_trip:flag"]).to_arrow()
    assert out.column_names == ["driver", "event_timestamp", "amount", "per_trip", "rating",
                                "double_trips", "flag"]
    assert out.column("per_trip").to_pylist() == [2.0, 0.5, None]
    assert out.column("double_trips").to_pylist() == [8, 20, None]
    assert out.schema.field("flag").type == pa.int64()
    assert out.column("flag").to_pylist()[:2] == [1, 0]
    # A feature service works the same way.
    svc = get_historical_features(engine, SNAP, df, "svc").to_arrow()
    assert svc.column_names[-3:] == ["rating", "per_trip", "flag"]


def test_missing_request_field(engine: OfflineEngine) -> None:
    with pytest.raises(InvalidRequestError, match=r"request field.*'amount'.*per_trip.*columns"):
        get_historical_features(engine, SNAP, entity(), ["per_trip:per_trip"])


def test_missing_join_key_lists_columns(engine: OfflineEngine) -> None:
    df = pd.DataFrame({"driver_id": [1], "event_timestamp": [T0]})
    with pytest.raises(InvalidRequestError,
                       match=r"join key column\(s\) 'driver'.*columns: driver_id, event_timestamp"):
        get_historical_features(engine, SNAP, df, ["stats:trips"])


def test_timestamp_column_detection(engine: OfflineEngine) -> None:
    df = pd.DataFrame({"driver": [1], "ts": [T0 + timedelta(hours=1)]})
    out = get_historical_features(engine, SNAP, df, ["stats:trips"]).to_arrow()
    assert out.column("trips").to_pylist() == [4] and out.schema.field("ts").type == US
    with pytest.raises(InvalidRequestError, match=r"no 'event_timestamp'.*columns: driver, when"):
        get_historical_features(engine, SNAP, pd.DataFrame({"driver": [1], "when": ["x"]}),
                                ["stats:trips"])
    two = df.assign(other=df["ts"])
    with pytest.raises(InvalidRequestError, match=r"several timestamp columns \(ts, other\)"):
        get_historical_features(engine, SNAP, two, ["stats:trips"])
    assert get_historical_features(engine, SNAP, two, ["stats:trips"],
                                   timestamp_column="other").to_arrow().num_rows == 1


def test_bad_timestamps_and_nulls(engine: OfflineEngine) -> None:
    with pytest.raises(InvalidRequestError, match="not an ISO 8601 timestamp"):
        get_historical_features(engine, SNAP, pd.DataFrame(
            {"driver": [1], "event_timestamp": ["yesterday"]}), ["stats:trips"])
    with pytest.raises(InvalidRequestError, match="1 rows without a value"):
        get_historical_features(engine, SNAP, pd.DataFrame(
            {"driver": [1, 2], "event_timestamp": [T0, None]}), ["stats:trips"])


def test_unknown_feature_and_clashing_column(engine: OfflineEngine) -> None:
    with pytest.raises(NotFoundError, match="Did you mean"):
        get_historical_features(engine, SNAP, entity(), ["stats:trip"])
    with pytest.raises(InvalidRequestError, match=r"already has column.*'trips'"):
        get_historical_features(engine, SNAP, entity(trips=[0, 0, 0]), ["stats:trips"])


def test_job_is_lazy_and_cached(engine: OfflineEngine, repo: Path) -> None:
    job = get_historical_features(engine, SNAP, entity(), ["stats:trips"])
    (repo / "stats.parquet").rename(repo / "moved.parquet")  # not read yet: no error so far
    with pytest.raises(NotFoundError):
        job.to_arrow()
    (repo / "moved.parquet").rename(repo / "stats.parquet")
    first = job.to_arrow()
    assert job.to_arrow() is first
    job.to_parquet(repo / "out.parquet")
    assert pq.read_table(repo / "out.parquet").equals(first)
    assert job.to_df()["trips"].tolist()[:2] == [4, 10]
    assert job.feature_names == ["trips"]


def test_entity_rows_from_files(engine: OfflineEngine, repo: Path) -> None:
    table = pa.Table.from_pandas(entity(), preserve_index=False)
    pq.write_table(table, repo / "entities.parquet")
    pacsv.write_csv(table, repo / "entities.csv")
    for path in (repo / "entities.parquet", str(repo / "entities.csv")):
        job = get_historical_features(engine, SNAP, path, ["stats:trips"])
        job.to_file(repo / "out" / "train.csv")
        assert job.to_arrow().column("trips").to_pylist() == [4, 10, None]
        assert pacsv.read_csv(repo / "out" / "train.csv").num_rows == 3
    with pytest.raises(NotFoundError, match="entity file"):
        get_historical_features(engine, SNAP, repo / "missing.parquet", ["stats:trips"])
