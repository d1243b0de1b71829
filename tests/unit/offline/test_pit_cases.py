"""Named point-in-time cases: the edges peers get wrong, one test each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tureen.definitions import Entity, FeatureView, Field, FileSource
from tureen.offline.protocol import OfflineEngine
from tureen.offline.retrieval import get_historical_features
from tureen.registry.snapshot import RegistrySnapshot
from tureen.types import Float32, Int64, String

T0 = datetime(2026, 3, 1, tzinfo=UTC)
US = pa.timestamp("us", tz="UTC")
DRIVER = Entity("driver", dtype=Int64)


def t(hours: float = 0, us: int = 0) -> datetime:
    return T0 + timedelta(hours=hours, microseconds=us)


def write(path: Path, **cols: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), path)


def driver_view(path: Path, ttl: timedelta = timedelta(0), created: str = "created") -> FeatureView:
    return FeatureView(
        "stats", [DRIVER], [Field("trips", Int64), Field("rating", Float32)],
        FileSource(str(path), created_timestamp_column=created), ttl=ttl,
    )


def write_driver_rows(path: Path, rows: list[tuple[int, datetime, datetime | None, int]]) -> None:
    write(
        path,
        driver=pa.array([r[0] for r in rows], pa.int64()),
        trips=pa.array([r[3] for r in rows], pa.int64()),
        rating=pa.array([r[3] / 2 for r in rows], pa.float64()),
        event_timestamp=pa.array([r[1] for r in rows], US),
        created=pa.array([r[2] for r in rows], US),
    )


def snap(*views: FeatureView) -> RegistrySnapshot:
    ents = {e.name: e for v in views for e in v.entities}
    return RegistrySnapshot(project="p", entities=ents, feature_views={v.name: v for v in views})


def trips(engine: OfflineEngine, view: FeatureView, entity: pd.DataFrame) -> list[Any]:
    out = get_historical_features(engine, snap(view), entity, ["stats:trips"]).to_arrow()
    values: list[Any] = out.column("trips").to_pylist()
    return values


def test_entity_row_before_any_data_is_null(engine: OfflineEngine, repo: Path) -> None:
    write_driver_rows(repo / "s.parquet", [(1, t(5), t(5), 10)])
    df = pd.DataFrame({"driver": [1, 1], "event_timestamp": [t(4), t(6)]})
    assert trips(engine, driver_view(repo / "s.parquet"), df) == [None, 10]


def test_past_the_ttl_is_null_even_if_older_rows_exist(engine: OfflineEngine, repo: Path) -> None:
    write_driver_rows(repo / "s.parquet", [(1, t(0), t(0), 1), (1, t(1), t(1), 2)])
    view = driver_view(repo / "s.parquet", ttl=timedelta(hours=2))
    df = pd.DataFrame({"driver": [1, 1, 1], "event_timestamp": [t(2.5), t(3), t(3, us=1)]})
    assert trips(engine, view, df) == [2, 2, None]


def test_both_ttl_bounds_are_inclusive(engine: OfflineEngine, repo: Path) -> None:
    write_driver_rows(repo / "s.parquet", [(1, t(10), t(10), 7)])
    view = driver_view(repo / "s.parquet", ttl=timedelta(hours=1))
    df = pd.DataFrame({
        "driver": [1] * 5,
        "event_timestamp": [t(10, us=-1), t(10), t(11), t(11, us=1), t(10, us=1)],
    })
    assert trips(engine, view, df) == [None, 7, 7, None, 7]


def test_equal_event_time_takes_the_newest_created(engine: OfflineEngine, repo: Path) -> None:
    write_driver_rows(repo / "s.parquet", [
        (1, t(1), t(3), 30), (1, t(1), t(5), 50), (1, t(1), t(4), 40),  # max created wins
        (2, t(1), None, 1), (2, t(1), t(2), 2),  # a known created beats an unknown one
        (3, t(1), t(9), 9), (3, t(2), t(2), 20),  # event time first, created second
    ])
    df = pd.DataFrame({"driver": [1, 2, 3, 3], "event_timestamp": [t(8)] * 3 + [t(1.5)]})
    assert trips(engine, driver_view(repo / "s.parquet"), df) == [50, 2, 20, 9]


def test_duplicate_entity_rows_are_all_kept_in_order(engine: OfflineEngine, repo: Path) -> None:
    write_driver_rows(repo / "s.parquet", [(1, t(0), t(0), 1), (2, t(0), t(0), 2)])
    df = pd.DataFrame({
        "driver": [2, 1, 2, 1, 1],
        "event_timestamp": [t(1)] * 5,
        "label": ["a", "b", "c", "d", "d"],
    })
    out = get_historical_features(engine, snap(driver_view(repo / "s.parquet")), df,
                                  ["stats:trips"]).to_df()
    assert out["label"].tolist() == ["a", "b", "c", "d", "d"]
    assert out["trips"].tolist() == [2, 1, 2, 1, 1]


def test_input_order_is_kept_for_many_shuffled_rows(engine: OfflineEngine, repo: Path) -> None:
    n = 5000
    write_driver_rows(repo / "s.parquet", [(d, t(0), t(0), d) for d in range(50)])
    keys = [(i * 37) % 60 for i in range(n)]  # 50..59 have no data
    df = pd.DataFrame({"driver": keys, "event_timestamp": [t(1 + (i % 7))for i in range(n)],
                       "row": range(n)})
    out = get_historical_features(engine, snap(driver_view(repo / "s.parquet")), df,
                                  ["stats:trips"]).to_arrow()
    assert out.column("row").to_pylist() == list(range(n))
    assert out.column("trips").to_pylist() == [k if k < 50 else None for k in keys]


def test_timestamps_naive_aware_and_mixed_offsets_mean_the_same_instant(
    engine: OfflineEngine, repo: Path
) -> None:
    # Source timestamps are naive (UTC): rows at 00:00 and 02:00 UTC.
    write(repo / "s.parquet", driver=[1, 1], trips=[0, 2], rating=[0.0, 0.0],
          event_timestamp=pa.array([datetime(2026, 3, 1, 0), datetime(2026, 3, 1, 2)],
                                   pa.timestamp("ns")),
          created=pa.array([None, None], pa.timestamp("us")))
    view = driver_view(repo / "s.parquet")
    plus2 = timezone(timedelta(hours=2))
    minus5 = timezone(timedelta(hours=-5))
    # 01:59:59.999999 UTC and 02:00 UTC written five ways.
    strings = pd.DataFrame({"driver": [1] * 3, "event_timestamp": [
        "2026-03-01T03:59:59.999999+02:00", "2026-03-01T02:00:00Z", "2026-02-28 21:00:00-05:00"]})
    objects = pd.DataFrame({"driver": [1] * 3, "event_timestamp": [
        datetime(2026, 3, 1, 3, 59, 59, 999999, tzinfo=plus2), datetime(2026, 3, 1, 2, tzinfo=UTC),
        datetime(2026, 2, 28, 21, tzinfo=minus5)]})
    naive = pd.DataFrame({"driver": [1] * 3, "event_timestamp": pd.to_datetime([
        "2026-03-01 01:59:59.999999", "2026-03-01 02:00:00.000000",
        "2026-03-01 02:00:00.000000"])})
    paris = naive.assign(event_timestamp=naive["event_timestamp"].dt.tz_localize("UTC")
                         .dt.tz_convert("Europe/Paris"))
    arrow = pa.table({"driver": [1, 1, 1], "event_timestamp": pa.array(
        naive["event_timestamp"].tolist(), pa.timestamp("ns", tz="America/New_York"))})
    for entity in (strings, objects, naive, paris, arrow):
        out = get_historical_features(engine, snap(view), entity, ["stats:trips"]).to_arrow()
        assert out.column("trips").to_pylist() == [0, 2, 2]
        assert out.schema.field("event_timestamp").type == US
    assert out.column("event_timestamp")[0].as_py() == datetime(2026, 3, 1, 1, 59, 59, 999999,
                                                                tzinfo=UTC)


def test_field_mapping_renames_source_columns(engine: OfflineEngine, repo: Path) -> None:
    write(repo / "m.parquet", driver_key=[1], n_trips=pa.array([4], pa.int32()),
          rating=[1.5], ts=pa.array([t(0)], US))
    view = FeatureView(
        "stats", [DRIVER], [Field("trips", Int64), Field("rating", Float32)],
        FileSource(str(repo / "m.parquet"), timestamp_field="ts",
                   field_mapping={"n_trips": "trips", "driver_key": "driver"}),
    )
    df = pd.DataFrame({"driver": [1], "event_timestamp": [t(1)]})
    table = get_historical_features(engine, snap(view), df, ["stats:trips", "stats:rating"]
                                    ).to_arrow()
    assert table.column("trips").to_pylist() == [4]
    assert table.schema.field("trips").type == pa.int64()
    assert table.schema.field("rating").type == pa.float32()
    assert isinstance(view.source, FileSource)
    assert engine.source_schema(view.source).names == ["driver", "trips", "rating", "ts"]


def test_two_views_on_different_join_keys(engine: OfflineEngine, repo: Path) -> None:
    write_driver_rows(repo / "d.parquet", [(1, t(0), None, 11), (2, t(0), None, 22)])
    write(repo / "z.parquet", city=["paris", "paris", "oslo"], zone=[1, 1, 2],
          demand=[0.5, 0.9, 0.1], event_timestamp=pa.array([t(0), t(2), t(0)], US))
    zone = Entity("zone", join_keys=["city", "zone"], dtype={"city": String, "zone": Int64})
    zv = FeatureView("zones", [zone], [Field("demand", Float32)],
                     FileSource(str(repo / "z.parquet")))
    dv = driver_view(repo / "d.parquet")
    df = pd.DataFrame({
        "driver": [1, 2, 1, 3],
        "city": ["paris", "oslo", "paris", "paris"],
        "zone": [1, 2, 2, 1],
        "event_timestamp": [t(1), t(1), t(3), t(3)],
    })
    out = get_historical_features(engine, snap(dv, zv), df, ["zones:demand", "stats:trips"],
                                  full_feature_names=True).to_arrow()
    assert out.column_names[-2:] == ["zones__demand", "stats__trips"]
    assert out.column("stats__trips").to_pylist() == [11, 22, 11, None]
    demand = [None if v is None else round(v, 5) for v in out.column("zones__demand").to_pylist()]
    assert demand == [0.5, 0.1, None, 0.9]


def test_microseconds_are_kept(engine: OfflineEngine, repo: Path) -> None:
    write_driver_rows(repo / "s.parquet", [(1, t(0, us=1), None, 1), (1, t(0, us=3), None, 3)])
    df = pd.DataFrame({"driver": [1, 1, 1], "event_timestamp": [t(0), t(0, us=2), t(0, us=3)]})
    assert trips(engine, driver_view(repo / "s.parquet"), df) == [None, 1, 3]
