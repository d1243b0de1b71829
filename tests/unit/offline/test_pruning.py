"""Source files whose footers show no event time in the window are not read: an incremental
materialization reads only the new files (or partitions), a training set only the files its
entity times (minus the TTL) can reach. Results are the same as reading everything."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tureen.definitions import Entity, FeatureView, Field, FileSource
from tureen.offline.duckdb_engine import DuckDBEngine
from tureen.offline.retrieval import get_historical_features
from tureen.online.encoding import decode_row
from tureen.online.keys import encoder_for
from tureen.registry.snapshot import RegistrySnapshot
from tureen.store import FeatureStore
from tureen.types import Int64

DAY0 = datetime(2026, 3, 1, tzinfo=UTC)
US = pa.timestamp("us", tz="UTC")
DRIVER = Entity("driver", dtype=Int64)


def day_partitions(repo: Path, days: int) -> FeatureView:
    """One hive partition per day (``trips/date=YYYY-MM-DD/part.parquet``): driver d has
    trips 10 * day + d at noon of each day."""
    for day in range(days):
        when = DAY0 + timedelta(days=day, hours=12)
        folder = repo / "trips" / f"date={when:%Y-%m-%d}"
        folder.mkdir(parents=True)
        pq.write_table(pa.table({
            "driver": pa.array([1, 2], pa.int64()), "trips": [10 * day + 1, 10 * day + 2],
            "event_timestamp": pa.array([when, when], US),
        }), folder / "part.parquet")
    return FeatureView("stats", [DRIVER], [Field("trips", Int64)],
                       FileSource(str(repo / "trips")), ttl=timedelta(days=1))


def files_read(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "files (the others" in r.getMessage()]


DEFINITIONS = """
from datetime import timedelta
from tureen import Entity, FeatureView, Field, FileSource, Int64

driver = Entity(name="driver", join_keys=["driver"], dtype=Int64)
stats = FeatureView(name="stats", entities=[driver], schema=[Field("trips", Int64)],
                    source=FileSource(path="trips"), ttl=timedelta(days=1))
"""


def test_incremental_materialization_reads_only_new_partitions(
    repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    day_partitions(repo, 3)
    (repo / "tureen.yaml").write_text("project: p\noffline_store: {type: duckdb, threads: 1}\n")
    (repo / "features.py").write_text(DEFINITIONS)
    caplog.set_level(logging.DEBUG, logger="tureen.offline.duckdb_engine")
    with FeatureStore(repo) as store:
        store.apply()
        store.materialize_incremental(DAY0 + timedelta(days=3))  # starts at end - TTL
        assert files_read(caplog)[-1].startswith("feature view stats: reading 1 of 3 files")
        for day in (3, 4):  # two new daily partitions arrive
            when = DAY0 + timedelta(days=day, hours=12)
            (repo / "trips" / f"date={when:%Y-%m-%d}").mkdir()
            pq.write_table(pa.table({
                "driver": pa.array([1, 2], pa.int64()), "trips": [10 * day + 1, 10 * day + 2],
                "event_timestamp": pa.array([when, when], US),
            }), repo / "trips" / f"date={when:%Y-%m-%d}" / "part.parquet")
        done = store.materialize_incremental(DAY0 + timedelta(days=5))
        assert [r.rows for r in done] == [2]
        assert files_read(caplog)[-1].startswith("feature view stats: reading 2 of 5 files")
        view = store.get_feature_view("stats")
        keys = encoder_for(view.key_fields).encode_columns({"driver": [1, 2]})
        [stored] = store.online.read([(view, keys)])
        assert [decode_row(r).values["trips"] for r in stored if r] == [41, 42]


def test_latest_rows_and_training_sets_skip_files_outside_the_window(
    repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    view = day_partitions(repo, 6)
    snap = RegistrySnapshot(project="p", entities={"driver": DRIVER},
                            feature_views={"stats": view})
    engine = DuckDBEngine.from_config({"threads": 1}, repo, "p")
    caplog.set_level(logging.DEBUG, logger="tureen.offline.duckdb_engine")
    latest = pa.Table.from_batches(list(engine.latest_rows(
        view, DAY0 + timedelta(days=1), DAY0 + timedelta(days=3))))
    assert sorted(latest.column("trips").to_pylist()) == [21, 22]
    assert files_read(caplog)[-1].startswith("feature view stats: reading 2 of 6 files")
    entities = pd.DataFrame({"driver": [1, 2],
                             "event_timestamp": [DAY0 + timedelta(days=4, hours=13)] * 2})
    out = get_historical_features(engine, snap, entities, ["stats:trips"]).to_arrow()
    assert out.column("trips").to_pylist() == [41, 42]
    # Entity times minus the 1-day TTL reach back to day 3, 13:00: only day 4's file holds
    # rows in that window (day 3's are at noon), the other five are skipped.
    assert files_read(caplog)[-1].startswith("feature view stats: reading 1 of 6 files")
    # A file whose timestamps are strings has no usable statistics: it is always read.
    (repo / "trips" / "date=2026-03-09").mkdir()
    pq.write_table(pa.table({"driver": pa.array([1], pa.int64()), "trips": [99],
                             "event_timestamp": ["2026-03-05T13:00:00Z"]}),
                   repo / "trips" / "date=2026-03-09" / "part.parquet")
    out = get_historical_features(engine, snap, entities, ["stats:trips"]).to_arrow()
    assert out.column("trips").to_pylist() == [99, 42]
    assert files_read(caplog)[-1].startswith("feature view stats: reading 2 of 7 files")
    engine.close()
