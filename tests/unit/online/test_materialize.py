"""materialize / materialize_incremental from Parquet through DuckDB into SQLite."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tureen.definitions import Entity, FeatureView, Field, FileSource
from tureen.errors import InvalidRequestError
from tureen.ingest import write_to_online_store
from tureen.materialize import (
    BEGINNING,
    MaterializeResult,
    materialize,
    materialize_incremental,
)
from tureen.online.retrieval import OnlineRetrieval
from tureen.online.sqlite_store import SqliteOnlineStore
from tureen.registry.snapshot import MaterializedInterval, RegistrySnapshot
from tureen.types import Float64, Int64

duckdb_engine = pytest.importorskip("tureen.offline.duckdb_engine")

T0 = datetime(2026, 5, 1, tzinfo=UTC)
ACCOUNT = Entity("account", join_keys=["account_id"])
SRC = FileSource("data/stats.parquet", created_timestamp_column="created")
STATS = FeatureView("stats", [ACCOUNT], [Field("x", Float64), Field("n", Int64)], SRC,
                    ttl=timedelta(days=2))
FOREVER = dataclasses.replace(STATS, name="forever", ttl=timedelta(0))
ARCHIVE = dataclasses.replace(STATS, name="archive", online=False)


def snap(**mats: datetime) -> RegistrySnapshot:
    return RegistrySnapshot(
        project="unit", entities={"account": ACCOUNT},
        feature_views={v.name: v for v in (STATS, FOREVER, ARCHIVE)},
        materializations={k: (MaterializedInterval(T0, v, v),) for k, v in mats.items()},
    )


def recorded(done: list[MaterializeResult]) -> RegistrySnapshot:
    """The snapshot after the facade recorded ``done`` (with the store and its token)."""
    return dataclasses.replace(snap(), materializations={
        r.view: (MaterializedInterval(r.start, r.end, r.end, r.store, r.token),) for r in done})


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Any]:
    # Account 1: rows on day 0, 1, 5 (created tie-break on day 1); account 2: day 3 only.
    (tmp_path / "data").mkdir()
    ts = pa.timestamp("us", tz="UTC")
    pq.write_table(pa.table({
        "account_id": [1, 1, 1, 1, 2],
        "x": [0.0, 1.0, 1.5, 5.0, 3.0],
        "n": [0, 1, 1, 5, 3],
        "event_timestamp": pa.array([T0, T0 + timedelta(days=1), T0 + timedelta(days=1),
                                     T0 + timedelta(days=5), T0 + timedelta(days=3)], ts),
        "created": pa.array([T0, T0, T0 + timedelta(seconds=1), T0, T0], ts),
    }), tmp_path / "data" / "stats.parquet")
    e = duckdb_engine.DuckDBEngine(tmp_path)
    yield e
    e.close()


def values(store: SqliteOnlineStore, view: str = "stats") -> list[Any]:
    return OnlineRetrieval(store, snap, clock=lambda: T0.timestamp()).get_online_features(
        [f"{view}:x"], {"account_id": [1, 2]}).to_dict()["x"]


def test_materialize_takes_newest_row_in_range(store: SqliteOnlineStore, engine: Any) -> None:
    calls: list[tuple[str, int, int]] = []
    done = materialize(snap(), engine, store, T0, T0 + timedelta(days=4), ["stats"],
                       progress=lambda *a: calls.append(a))
    assert [r[:4] for r in done] == [("stats", T0, T0 + timedelta(days=4), 2)]
    assert values(store) == [1.5, 3.0]  # day 5 is outside [start, end); created breaks the tie
    assert calls[0] == ("stats", 0, 0)
    assert calls[-1] == ("stats", 2, 2)


def test_materializing_old_data_keeps_newer_pushed_rows(
    store: SqliteOnlineStore, engine: Any
) -> None:
    write_to_online_store(snap(), store, "stats", {
        "account_id": [1], "x": [9.0], "n": [9], "event_timestamp": [T0 + timedelta(days=9)]})
    materialize(snap(), engine, store, T0, T0 + timedelta(days=10), ["stats"])
    assert values(store) == [9.0, 3.0]


def test_default_views_are_the_online_ones(store: SqliteOnlineStore, engine: Any) -> None:
    done = materialize(snap(), engine, store, T0, T0 + timedelta(days=10))
    assert [r.view for r in done] == ["stats", "forever"]
    with pytest.raises(InvalidRequestError, match="online=False"):
        materialize(snap(), engine, store, T0, T0 + timedelta(days=10), ["archive"])
    with pytest.raises(InvalidRequestError, match="must be before"):
        materialize(snap(), engine, store, T0, T0)


def test_incremental_starts_at_last_run_else_ttl_else_beginning(
    store: SqliteOnlineStore, engine: Any
) -> None:
    end = T0 + timedelta(days=4)
    first = materialize_incremental(snap(), engine, store, end)
    done = {r.view: r for r in first}
    # stats: never materialized, ttl 2 days -> [day 2, day 4): only account 2 (day 3).
    assert done["stats"][:4] == ("stats", end - timedelta(days=2), end, 1)
    assert values(store) == [None, 3.0]
    # forever: ttl 0 -> from the beginning of the data.
    assert done["forever"][:4] == ("forever", BEGINNING, end, 2)
    assert values(store, "forever") == [1.5, 3.0]
    # Recorded up to day 4: the next run covers [day 4, day 6) and picks up day 5.
    second = materialize_incremental(recorded(first), engine, store, T0 + timedelta(days=6))
    later = {r.view: r for r in second}
    assert later["stats"][:4] == ("stats", end, T0 + timedelta(days=6), 1)
    assert values(store) == [5.0, 3.0]
    # Already materialized past the requested end: nothing to do.
    assert materialize_incremental(recorded(second), engine, store,
                                   T0 + timedelta(days=6), ["stats"]) == []


def test_naive_datetimes_are_utc(store: SqliteOnlineStore, engine: Any) -> None:
    naive = (T0 + timedelta(days=4)).replace(tzinfo=None)
    [done] = materialize(snap(), engine, store, T0.replace(tzinfo=None), naive, ["stats"])
    assert done.end == T0 + timedelta(days=4)


def test_rich_progress_draws_without_failing(store: SqliteOnlineStore, engine: Any) -> None:
    from tureen.materialize import rich_progress

    with rich_progress(transient=True) as progress:
        done = materialize(snap(), engine, store, T0, T0 + timedelta(days=10), ["stats"],
                           progress=progress)
    assert done[0].rows == 2
