"""Property: the point-in-time join equals the brute-force oracle on random small data."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.offline_oracle import OracleView, assert_matches, expected_latest, utc, write_rows

from tureen.definitions import Entity, FeatureView, Field, FileSource
from tureen.offline.protocol import OfflineEngine
from tureen.offline.retrieval import get_historical_features
from tureen.registry.snapshot import RegistrySnapshot
from tureen.types import Float64, Int64, String

T0 = datetime(2026, 3, 1, tzinfo=UTC)
TTLS = [timedelta(0), timedelta(hours=1), timedelta(hours=2), timedelta(hours=5)]
CREATED = st.one_of(st.none(), st.integers(0, 3).map(lambda h: T0 + timedelta(hours=h)))
EVENT = st.integers(0, 16).map(lambda q: T0 + timedelta(minutes=30 * q))

driver_rows = st.lists(
    st.fixed_dictionaries({"driver": st.integers(0, 3), "event": EVENT, "created": CREATED}),
    max_size=25,
)
rider_rows = st.lists(
    st.fixed_dictionaries(
        {"rider": st.sampled_from(["r0", "r1", "r2"]), "event": EVENT, "created": CREATED}
    ),
    max_size=15,
)
entity_rows = st.lists(
    st.fixed_dictionaries({
        "driver": st.one_of(st.none(), st.integers(0, 4)),  # None: a missing key
        "rider": st.sampled_from(["r0", "r1", "r2", "r3"]),
        "event_timestamp": st.integers(-2, 20).map(lambda q: T0 + timedelta(minutes=30 * q)),
        "label": st.integers(0, 1),
    }),
    min_size=1,
    max_size=20,
)
# How the entity timestamps arrive: naive UTC, aware UTC, or another offset.
ENTITY_TZ = st.sampled_from([None, UTC, timezone(timedelta(hours=2)),
                             timezone(timedelta(hours=-7, minutes=-30))])
SOURCE_TS = st.sampled_from([pa.timestamp("us", tz="UTC"), pa.timestamp("us"),
                             pa.timestamp("ns", tz="UTC")])


def _views(tmp: Path, d_rows: list[dict[str, Any]], r_rows: list[dict[str, Any]],
           ttls: tuple[timedelta, timedelta], ts_type: pa.DataType
           ) -> tuple[RegistrySnapshot, list[OracleView]]:
    for i, r in enumerate(d_rows):
        r["a_val"], r["a_str"] = float(i), f"a{i}"
    for i, r in enumerate(r_rows):
        r["b_val"] = 100 + i
    oa = OracleView("a", ("driver",), ("a_val", "a_str"), d_rows, ttls[0])
    ob = OracleView("b", ("rider",), ("b_val",), r_rows, ttls[1])
    write_rows(tmp / "a" / "part-0.parquet", oa,
               {"driver": pa.int64(), "a_val": pa.float64(), "a_str": pa.string()}, ts_type)
    write_rows(tmp / "b.parquet", ob, {"rider": pa.string(), "b_val": pa.int64()}, ts_type)
    driver = Entity("driver", dtype=Int64)
    rider = Entity("rider", dtype=String)
    va = FeatureView("a", [driver], [Field("a_val", Float64), Field("a_str", String)],
                     FileSource(str(tmp / "a"), created_timestamp_column="created"),
                     ttl=ttls[0])
    vb = FeatureView("b", [rider], [Field("b_val", Int64)],
                     FileSource(str(tmp / "b.parquet"), created_timestamp_column="created"),
                     ttl=ttls[1])
    snap = RegistrySnapshot(project="p", entities={"driver": driver, "rider": rider},
                            feature_views={"a": va, "b": vb})
    return snap, [oa, ob]


def _shown(ts: datetime, tz: timezone | None) -> datetime:
    """``ts`` as the caller writes it: naive (meaning UTC) or at offset ``tz``."""
    return ts.replace(tzinfo=None) if tz is None else ts.astimezone(tz)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(d_rows=driver_rows, r_rows=rider_rows, ents=entity_rows,
       ttls=st.tuples(st.sampled_from(TTLS), st.sampled_from(TTLS)),
       entity_tz=ENTITY_TZ, ts_type=SOURCE_TS)
def test_matches_oracle(
    engine: OfflineEngine, repo: Path, d_rows: list[dict[str, Any]],
    r_rows: list[dict[str, Any]], ents: list[dict[str, Any]],
    ttls: tuple[timedelta, timedelta], entity_tz: timezone | None, ts_type: pa.DataType,
) -> None:
    tmp = repo / uuid.uuid4().hex
    snap, oracle = _views(tmp, d_rows, r_rows, ttls, ts_type)
    df = pd.DataFrame([{**e, "event_timestamp": _shown(e["event_timestamp"], entity_tz)}
                       for e in ents])
    job = get_historical_features(engine, snap, df, ["a:a_val", "a:a_str", "b:b_val"],
                                  full_feature_names=True)
    table = job.to_arrow()
    assert table.column_names == [*df.columns, "a__a_val", "a__a_str", "b__b_val"]
    assert table.schema.field("event_timestamp").type == pa.timestamp("us", tz="UTC")
    assert_matches(table, ents, "event_timestamp", oracle)
    # The same training set streamed to a file, its entity rows read from a folder of two
    # Parquet files (a chunk at a time on engines that join in chunks).
    half = len(df) // 2
    (tmp / "entities").mkdir()
    df.iloc[:half].to_parquet(tmp / "entities" / "part-0.parquet", index=False)
    df.iloc[half:].to_parquet(tmp / "entities" / "part-1.parquet", index=False)
    streamed = get_historical_features(engine, snap, tmp / "entities",
                                       ["a:a_val", "a:a_str", "b:b_val"],
                                       full_feature_names=True)
    assert streamed.to_parquet(tmp / "train.parquet") == len(ents)
    assert_matches(pq.read_table(tmp / "train.parquet"), ents, "event_timestamp", oracle)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(d_rows=driver_rows, start=st.one_of(st.none(), EVENT), end=EVENT, ts_type=SOURCE_TS)
def test_latest_rows_match_oracle(
    engine: OfflineEngine, repo: Path, d_rows: list[dict[str, Any]],
    start: datetime | None, end: datetime, ts_type: pa.DataType,
) -> None:
    tmp = repo / uuid.uuid4().hex
    snap, (oracle, _) = _views(tmp, d_rows, [], (timedelta(0), timedelta(0)), ts_type)
    batches = list(engine.latest_rows(snap.feature_view("a"), start, end))
    got = pa.Table.from_batches(batches).to_pylist() if batches else []
    want = expected_latest(oracle, start, end)
    assert sorted(r["driver"] for r in got) == sorted(k[0] for k in want)
    for r in got:
        created = utc(r["created_timestamp"]) if r["created_timestamp"] is not None else None
        row = (r["a_val"], r["a_str"], utc(r["event_timestamp"]), created)
        assert row in want[(r["driver"],)], (r, want[(r["driver"],)])
