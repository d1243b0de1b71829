"""Materialized-until is kept per view AND online store, and a store that lost its data is
noticed (issue 10: switching SQLite → Redis loaded 0 entities; issue 11 #14: a Redis
restarted empty was not noticed). Real SQLite files; the Redis case is in
tests/integration/redis/test_redis_lost_data.py."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tureen.config import load_config
from tureen.store import FeatureStore

NOW = datetime.now(UTC).replace(microsecond=0)

DEFS = '''
from datetime import timedelta
from tureen import Entity, FeatureView, Field, FileSource, Float64

account = Entity(name="account", join_keys=["account_id"])
stats = FeatureView(name="stats", entities=[account], schema=[Field("x", Float64)],
                    source=FileSource(path="data/stats.parquet"), ttl=timedelta(0))
'''


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "tureen.yaml").write_text("project: wm\nonline_store: {type: sqlite, path: a.db}\n")
    (tmp_path / "features.py").write_text(DEFS)
    ts = pa.timestamp("us", tz="UTC")
    pq.write_table(pa.table({
        "account_id": [1, 2, 3],
        "x": [1.0, 2.0, 3.0],
        "event_timestamp": pa.array([NOW - timedelta(days=3)] * 3, ts),
    }), tmp_path / "data" / "stats.parquet")
    with FeatureStore(tmp_path) as fs:
        fs.apply()
    return tmp_path


def store_at(repo: Path, db: str) -> FeatureStore:
    return FeatureStore(repo, load_config(repo, {"TUREEN_ONLINE_STORE__PATH": db}))


def xs(fs: FeatureStore) -> list[object]:
    return fs.get_online_features(["stats:x"], {"account_id": [1, 2, 3]}).to_dict()["x"]


def test_switching_the_online_store_reloads_it_and_says_so(repo: Path) -> None:
    with store_at(repo, "a.db") as a:
        [first] = a.materialize_incremental(NOW)
        assert first.rows == 3 and first.note is None
    with store_at(repo, "b.db") as b:
        [done] = b.materialize_incremental(NOW + timedelta(seconds=1))
        assert done.rows == 3  # was 0: the watermark of a.db was taken for b.db's
        assert done.note is not None and "a.db" in done.note and "b.db" in done.note
        assert xs(b) == [1.0, 2.0, 3.0]


def test_switching_back_resumes_where_that_store_stopped(repo: Path) -> None:
    with store_at(repo, "a.db") as a:
        a.materialize_incremental(NOW)
    with store_at(repo, "b.db") as b:
        b.materialize_incremental(NOW + timedelta(seconds=1))
    with store_at(repo, "a.db") as a:
        [done] = a.materialize_incremental(NOW + timedelta(seconds=2))
        assert done.start == NOW and done.rows == 0 and done.note is None


def test_a_store_that_lost_its_data_is_reported_and_repaired(repo: Path) -> None:
    with store_at(repo, "a.db") as a:
        a.materialize_incremental(NOW)
        assert [s.status for s in a.online_state()] == ["ok"]
    for suffix in ("", "-wal", "-shm"):  # the store comes back empty
        p = repo / f"a.db{suffix}"
        if p.exists():
            os.remove(p)
    with store_at(repo, "a.db") as a:
        [state] = a.online_state()
        assert state.status == "lost" and "materialize-incremental" in state.message
        assert xs(a) == [None, None, None]
        [done] = a.materialize_incremental(NOW + timedelta(seconds=1))
        assert done.rows == 3 and done.note is not None and "lost" in done.note
        assert xs(a) == [1.0, 2.0, 3.0]
        assert [s.status for s in a.online_state()] == ["ok"]


def test_never_materialized_views_are_reported_as_such(repo: Path) -> None:
    with store_at(repo, "a.db") as a:
        [state] = a.online_state()
        assert state.status == "never" and state.until is None


def test_full_materialize_records_the_store_too(repo: Path) -> None:
    with store_at(repo, "a.db") as a:
        a.materialize(NOW - timedelta(days=10), NOW)
        [state] = a.online_state()
        assert state.status == "ok" and state.until == NOW
        [done] = a.materialize_incremental(NOW + timedelta(seconds=1))
        assert done.start == NOW
