"""Training sets without an entity frame: every feature row version in [start, end), each with
the requested features as of its own time, checked against the brute-force oracle."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.offline_oracle import OracleView, expected, utc, write_rows

from tureen.definitions import Entity, FeatureView, Field, FileSource, RequestSource
from tureen.definitions import on_demand_feature_view as odfv
from tureen.errors import InvalidRequestError
from tureen.offline.protocol import OfflineEngine
from tureen.offline.retrieval import get_historical_features
from tureen.registry.snapshot import RegistrySnapshot
from tureen.types import Float64, Int64, String

T0 = datetime(2026, 3, 1, tzinfo=UTC)
TTLS = [timedelta(0), timedelta(hours=1), timedelta(hours=3)]
EVENT = st.integers(0, 16).map(lambda q: T0 + timedelta(minutes=30 * q))
CREATED = st.one_of(st.none(), st.integers(0, 3).map(lambda h: T0 + timedelta(hours=h)))
rows_of = st.lists(
    st.fixed_dictionaries({"driver": st.integers(0, 3), "event": EVENT, "created": CREATED}),
    max_size=20,
)
DRIVER = Entity("driver", dtype=Int64)


def _views(tmp: Path, a_rows: list[dict[str, Any]], c_rows: list[dict[str, Any]],
           ttls: tuple[timedelta, timedelta]) -> tuple[RegistrySnapshot, list[OracleView]]:
    for i, r in enumerate(a_rows):
        r["a_val"] = float(i)
    for i, r in enumerate(c_rows):
        r["c_val"] = f"c{i}"
    oa = OracleView("a", ("driver",), ("a_val",), a_rows, ttls[0])
    oc = OracleView("c", ("driver",), ("c_val",), c_rows, ttls[1])
    write_rows(tmp / "a" / "part-0.parquet", oa, {"driver": pa.int64(), "a_val": pa.float64()})
    write_rows(tmp / "c.parquet", oc, {"driver": pa.int64(), "c_val": pa.string()})
    va = FeatureView("a", [DRIVER], [Field("a_val", Float64)],
                     FileSource(str(tmp / "a"), created_timestamp_column="created"), ttl=ttls[0])
    vc = FeatureView("c", [DRIVER], [Field("c_val", String)],
                     FileSource(str(tmp / "c.parquet"), created_timestamp_column="created"),
                     ttl=ttls[1])
    snap = RegistrySnapshot(project="p", entities={"driver": DRIVER},
                            feature_views={"a": va, "c": vc})
    return snap, [oa, oc]


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a_rows=rows_of, c_rows=rows_of, ttls=st.tuples(st.sampled_from(TTLS),
                                                      st.sampled_from(TTLS)),
       start=st.one_of(st.none(), EVENT), length=st.one_of(st.none(), st.integers(1, 12)),
       only=st.one_of(st.none(), st.sets(st.integers(0, 4), max_size=3)),
       streamed=st.booleans())
def test_every_row_version_as_of_its_own_time(
    engine: OfflineEngine, repo: Path, a_rows: list[dict[str, Any]],
    c_rows: list[dict[str, Any]], ttls: tuple[timedelta, timedelta], start: datetime | None,
    length: int | None, only: set[int] | None, streamed: bool,
) -> None:
    end = None if length is None else (start or T0) + timedelta(minutes=30 * length)
    if start is None and end is None:
        end = T0 + timedelta(hours=4)
    tmp = repo / uuid.uuid4().hex
    snap, (oa, oc) = _views(tmp, a_rows, c_rows, ttls)
    job = get_historical_features(
        engine, snap, None, ["a:a_val", "c:c_val"], start_date=start, end_date=end,
        entity_filter=None if only is None else {"driver": sorted(only)})
    if streamed:
        job.to_parquet(tmp / "train.parquet")
        table = pq.read_table(tmp / "train.parquet")
    else:
        table = job.to_arrow()
    assert table.column_names == ["driver", "event_timestamp", "a_val", "c_val"]
    assert table.schema.field("event_timestamp").type == pa.timestamp("us", tz="UTC")

    def keep(r: dict[str, Any]) -> bool:
        ev = utc(r["event"])
        return ((start is None or ev >= start) and (end is None or ev < end)
                and (only is None or r["driver"] in only))

    spine = sorted({(utc(r["event"]), r["driver"]) for r in [*a_rows, *c_rows] if keep(r)})
    got = table.to_pylist()
    assert [(utc(g["event_timestamp"]), g["driver"]) for g in got] == spine
    for g in got:
        for view, col in ((oa, "a_val"), (oc, "c_val")):
            allowed = {None if a is None else a[0] for a in
                       expected(view, g, g["event_timestamp"])}
            assert g[col] in allowed, (g, view.name, allowed)


def zone_repo(repo: Path) -> RegistrySnapshot:
    us = pa.timestamp("us", tz="UTC")
    pq.write_table(pa.table({
        "city": ["paris", "paris", "oslo", "paris"], "zone": [1, 2, 1, 1],
        "demand": [0.1, 0.2, 0.3, 0.4],
        "event_timestamp": pa.array([T0, T0, T0 + timedelta(hours=1),
                                     T0 + timedelta(hours=2)], us),
    }), repo / "z.parquet")
    pq.write_table(pa.table({
        "city": ["paris", "oslo", "paris"], "rain": [1.0, 2.0, 3.0],
        "event_timestamp": pa.array([T0 - timedelta(hours=1), T0, T0 + timedelta(hours=1)], us),
    }), repo / "w.parquet")
    zone = Entity("zone", join_keys=["city", "zone"], dtype={"city": String, "zone": Int64})
    city = Entity("city", join_keys=["city"], dtype=String)
    zv = FeatureView("zones", [zone], [Field("demand", Float64)],
                     FileSource(str(repo / "z.parquet")))
    wv = FeatureView("weather", [city], [Field("rain", Float64)],
                     FileSource(str(repo / "w.parquet")))
    return RegistrySnapshot(project="p", entities={"zone": zone, "city": city},
                            feature_views={"zones": zv, "weather": wv})


def test_views_keyed_by_fewer_keys_are_looked_up_as_of_each_row(
    engine: OfflineEngine, repo: Path
) -> None:
    snap = zone_repo(repo)
    out = get_historical_features(engine, snap, None, ["zones:demand", "weather:rain"],
                                  start_date=T0 - timedelta(days=1),
                                  end_date=T0 + timedelta(days=1)).to_arrow()
    assert out.column_names == ["city", "zone", "event_timestamp", "demand", "rain"]
    # The weather view's own rows are not entity rows: it lacks the zone key.
    assert out.to_pylist() == [
        {"city": "paris", "zone": 1, "event_timestamp": T0, "demand": 0.1, "rain": 1.0},
        {"city": "paris", "zone": 2, "event_timestamp": T0, "demand": 0.2, "rain": 1.0},
        {"city": "oslo", "zone": 1, "event_timestamp": T0 + timedelta(hours=1),
         "demand": 0.3, "rain": 2.0},
        {"city": "paris", "zone": 1, "event_timestamp": T0 + timedelta(hours=2),
         "demand": 0.4, "rain": 3.0},
    ]
    only_paris = get_historical_features(
        engine, snap, None, ["zones:demand"], end_date=T0 + timedelta(hours=2),
        entity_filter={"city": "paris"}).to_arrow()
    assert only_paris.column("zone").to_pylist() == [1, 2]


def test_entity_free_requests_that_cannot_work_say_why(engine: OfflineEngine, repo: Path) -> None:
    snap = zone_repo(repo)
    drivers = FeatureView("d", [DRIVER], [Field("rain", Float64)],
                          FileSource(str(repo / "w.parquet")))
    mixed = RegistrySnapshot(project="p", entities={**snap.entities, "driver": DRIVER},
                             feature_views={**snap.feature_views, "d": drivers})
    with pytest.raises(InvalidRequestError, match=r"keyed by all the join keys \(city, driver\)"):
        get_historical_features(engine, mixed, None, ["weather:rain", "d:rain"], start_date=T0,
                                full_feature_names=True)
    with pytest.raises(InvalidRequestError, match="start_date and/or end_date"):
        get_historical_features(engine, snap, None, ["zones:demand"])
    with pytest.raises(InvalidRequestError, match="not before"):
        get_historical_features(engine, snap, None, ["zones:demand"], start_date=T0,
                                end_date=T0)
    with pytest.raises(InvalidRequestError, match="without entity_df"):
        get_historical_features(engine, snap, pa.table({"city": ["x"]}), ["zones:demand"],
                                start_date=T0)
    with pytest.raises(InvalidRequestError, match=r"'town'.*not a join key"):
        get_historical_features(engine, snap, None, ["zones:demand"], start_date=T0,
                                entity_filter={"town": ["paris"]})
    with pytest.raises(InvalidRequestError, match="must be Int64"):
        get_historical_features(engine, snap, None, ["zones:demand"], start_date=T0,
                                entity_filter={"zone": ["one"]})
    txn = RequestSource("txn", [Field("amount", Float64)])

    @odfv(sources=[snap.feature_views["zones"], txn], schema=[Field("x", Float64)])
    def scaled(df: Any) -> Any:
        return df.assign(x=df["demand"] * df["amount"])[["x"]]

    with_odfv = RegistrySnapshot(project="p", entities=snap.entities,
                                 feature_views=snap.feature_views,
                                 on_demand_views={"scaled": scaled})
    with pytest.raises(InvalidRequestError, match=r"request field\(s\) amount"):
        get_historical_features(engine, with_odfv, None, ["scaled:x"], start_date=T0)
