"""Reading sources (CSV, hive folders, globs, fsspec URLs), appending pushed rows, and the
latest-row read that materialization uses."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tureen.definitions import Entity, FeatureView, Field, FileSource
from tureen.errors import InvalidRequestError, NotFoundError
from tureen.offline.protocol import OfflineEngine
from tureen.offline.retrieval import get_historical_features
from tureen.registry.snapshot import RegistrySnapshot
from tureen.types import Array, Float64, Int64, String

T0 = datetime(2026, 3, 1, tzinfo=UTC)
US = pa.timestamp("us", tz="UTC")
DRIVER = Entity("driver", dtype=Int64)


def t(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def view_of(source: FileSource, *fields: Field) -> FeatureView:
    return FeatureView("stats", [DRIVER], list(fields) or [Field("trips", Int64)], source)


def fetch(engine: OfflineEngine, view: FeatureView, entity: pd.DataFrame,
          refs: list[str] | None = None) -> pa.Table:
    snap = RegistrySnapshot(project="p", entities={"driver": DRIVER},
                            feature_views={view.name: view})
    return get_historical_features(engine, snap, entity, refs or ["stats:trips"]).to_arrow()


def test_csv_source_with_typed_columns(engine: OfflineEngine, repo: Path) -> None:
    (repo / "stats.csv").write_text(
        "driver,trips,zip,event_timestamp\n"
        "1,3,00701,2026-03-01T00:00:00\n"
        "1,5,00702,2026-03-01T04:00:00+02:00\n"  # 02:00 UTC
        "2,7,10001,2026-03-01 01:00:00Z\n"
    )
    view = view_of(FileSource("stats.csv"), Field("trips", Int64), Field("zip", String))
    df = pd.DataFrame({"driver": [1, 1, 2], "event_timestamp": [t(1), t(2), t(1)]})
    out = fetch(engine, view, df, ["stats:trips", "stats:zip"])
    assert out.column("trips").to_pylist() == [3, 5, 7]
    assert out.column("zip").to_pylist() == ["00701", "00702", "10001"]  # not parsed as ints


def test_hive_partitioned_folder_source(engine: OfflineEngine, repo: Path) -> None:
    for day, rows in {"2026-03-01": [(1, 0, 10), (2, 0, 20)], "2026-03-02": [(1, 24, 11)]}.items():
        folder = repo / "stats" / f"day={day}"
        folder.mkdir(parents=True)
        pq.write_table(pa.table({
            "driver": pa.array([r[0] for r in rows], pa.int64()),
            "trips": pa.array([r[2] for r in rows], pa.int64()),
            "event_timestamp": pa.array([t(r[1]) for r in rows], US),
        }), folder / "part-0.parquet")
    (repo / "stats" / "_SUCCESS").write_text("")
    (repo / "stats" / "day=2026-03-02" / ".part-1.parquet.tmp").write_text("half a file")
    source = FileSource("stats")
    df = pd.DataFrame({"driver": [1, 1, 2], "event_timestamp": [t(1), t(25), t(25)]})
    assert fetch(engine, view_of(source), df).column("trips").to_pylist() == [10, 11, 20]
    assert "day" in engine.source_schema(source).names


def test_glob_source(engine: OfflineEngine, repo: Path) -> None:
    for i in range(3):
        pq.write_table(pa.table({"driver": [i], "trips": [i * 10],
                                 "event_timestamp": pa.array([t(0)], US)}),
                       repo / f"stats-{i}.parquet")
    df = pd.DataFrame({"driver": [0, 1, 2], "event_timestamp": [t(1)] * 3})
    out = fetch(engine, view_of(FileSource(str(repo / "stats-*.parquet"))), df)
    assert out.column("trips").to_pylist() == [0, 10, 20]


def test_fsspec_url_source(engine: OfflineEngine) -> None:
    fs = fsspec.filesystem("memory")
    root = f"/tureen-{uuid.uuid4().hex}"
    with fs.open(f"{root}/stats/part-0.parquet", "wb") as fh:
        pq.write_table(pa.table({"driver": [1], "trips": [42],
                                 "event_timestamp": pa.array([t(0)], US)}), fh)
    source = FileSource(f"memory://{root}/stats")
    df = pd.DataFrame({"driver": [1], "event_timestamp": [t(1)]})
    assert fetch(engine, view_of(source), df).column("trips").to_pylist() == [42]
    engine.append(source, pa.table({"driver": [1], "trips": [43],
                                    "event_timestamp": pa.array([t(0.5)], US)}))
    assert fetch(engine, view_of(source), df).column("trips").to_pylist() == [43]
    fs.rm(root, recursive=True)


def test_missing_source_file_is_a_clear_error(engine: OfflineEngine, repo: Path) -> None:
    view = view_of(FileSource("data/nope.parquet"))
    df = pd.DataFrame({"driver": [1], "event_timestamp": [t(0)]})
    with pytest.raises(NotFoundError, match=r"missing source file.*data/nope\.parquet"):
        fetch(engine, view, df)
    with pytest.raises(NotFoundError, match=r"nope\.parquet"):
        engine.source_schema(FileSource("data/nope.parquet"))
    (repo / "empty").mkdir()
    with pytest.raises(NotFoundError, match="no parquet file"):
        engine.source_schema(FileSource("empty"))


def test_missing_source_column_names_the_view(engine: OfflineEngine, repo: Path) -> None:
    pq.write_table(pa.table({"driver": [1], "event_timestamp": pa.array([t(0)], US)}),
                   repo / "s.parquet")
    df = pd.DataFrame({"driver": [1], "event_timestamp": [t(0)]})
    with pytest.raises(InvalidRequestError, match=r"'stats'.*no column 'trips'"):
        fetch(engine, view_of(FileSource("s.parquet")), df)


def test_values_that_do_not_fit_the_declared_type(engine: OfflineEngine, repo: Path) -> None:
    pq.write_table(pa.table({"driver": [1], "trips": ["many"],
                             "event_timestamp": pa.array([t(0)], US)}), repo / "s.parquet")
    df = pd.DataFrame({"driver": [1], "event_timestamp": [t(1)]})
    with pytest.raises(InvalidRequestError, match=r"'stats'.*many"):
        fetch(engine, view_of(FileSource("s.parquet")), df)
    with pytest.raises(InvalidRequestError, match=r"'stats'.*many"):
        list(engine.latest_rows(view_of(FileSource("s.parquet")), None, t(2)))
    (repo / "bad.parquet").write_text("not parquet")
    with pytest.raises(InvalidRequestError, match=r"bad\.parquet"):
        engine.source_schema(FileSource("bad.parquet"))


def test_append_writes_a_new_file_that_reads_back(engine: OfflineEngine, repo: Path) -> None:
    source = FileSource("pushed", created_timestamp_column="created",
                        field_mapping={"n_trips": "trips"})
    for i, hours in enumerate([0, 1]):
        engine.append(source, pa.table({
            "driver": [1], "trips": [i],
            "event_timestamp": pd.to_datetime([t(hours)]),
            "created": pa.array([t(hours)], pa.timestamp("ns", tz="UTC")),
        }))
    files = sorted(p.name for p in (repo / "pushed").iterdir())
    assert len(files) == 2 and all(f.startswith("part-") and f.endswith(".parquet") for f in files)
    assert "n_trips" in pq.read_schema(repo / "pushed" / files[0]).names
    df = pd.DataFrame({"driver": [1, 1], "event_timestamp": [t(0.5), t(2)]})
    assert fetch(engine, view_of(source), df).column("trips").to_pylist() == [0, 1]


def test_append_to_a_single_file_source_is_refused(engine: OfflineEngine, repo: Path) -> None:
    pq.write_table(pa.table({"driver": [1]}), repo / "one.parquet")
    rows = pa.table({"driver": [1], "event_timestamp": pa.array([t(0)], US)})
    with pytest.raises(InvalidRequestError, match=r"single file.*folder"):
        engine.append(FileSource("one.parquet"), rows)
    with pytest.raises(InvalidRequestError, match="no 'event_timestamp' column"):
        engine.append(FileSource("folder"), pa.table({"driver": [1]}))


def test_latest_rows_per_entity_in_window(engine: OfflineEngine, repo: Path) -> None:
    pq.write_table(pa.table({
        "driver": pa.array([1, 1, 1, 2, 2, 3], pa.int32()),
        "trips": [1, 2, 3, 4, 5, 6],
        "tags": [["a"], ["b"], None, [], ["c", "d"], ["e"]],
        "event_timestamp": pa.array([t(0), t(5), t(5), t(1), t(9), t(10)], US),
        "created": pa.array([t(0), t(6), t(5), None, t(9), t(10)], US),
    }), repo / "s.parquet")
    view = FeatureView("stats", [DRIVER], [Field("trips", Float64), Field("tags", Array(String))],
                       FileSource("s.parquet", created_timestamp_column="created"))
    rows = pa.Table.from_batches(list(engine.latest_rows(view, t(0), t(10))))
    assert rows.schema == pa.schema([
        ("driver", pa.int64()), ("trips", pa.float64()), ("tags", pa.list_(pa.string())),
        ("event_timestamp", US), ("created_timestamp", US),
    ])
    got = sorted(rows.to_pylist(), key=lambda r: r["driver"])
    assert [(r["driver"], r["trips"], r["tags"]) for r in got] == [(1, 2.0, ["b"]),
                                                                   (2, 5.0, ["c", "d"])]
    assert got[0]["event_timestamp"] == t(5) and got[0]["created_timestamp"] == t(6)
    # start is inclusive, end exclusive; start=None reads from the beginning.
    assert pa.Table.from_batches(list(engine.latest_rows(view, t(9), t(10.5)))).num_rows == 2
    assert pa.Table.from_batches(list(engine.latest_rows(view, None, t(1)))).to_pylist()[0][
        "trips"] == 1.0


def test_latest_rows_without_created_column_and_in_batches(repo: Path) -> None:
    from tureen.offline.duckdb_engine import DuckDBEngine

    n = 2500
    pq.write_table(pa.table({
        "driver": pa.array(range(n), pa.int64()), "trips": pa.array(range(n), pa.int64()),
        "event_timestamp": pa.array([t(0)] * n, US),
    }), repo / "s.parquet")
    engine = DuckDBEngine.from_config({"batch_rows": 1000}, repo, "p")
    batches = list(engine.latest_rows(view_of(FileSource("s.parquet")), None, t(1)))
    assert sum(b.num_rows for b in batches) == n and max(b.num_rows for b in batches) <= 1000
    assert pa.Table.from_batches(batches).column("created_timestamp").null_count == n
    engine.close()
