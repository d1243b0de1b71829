"""SqliteOnlineStore specifics: configuration through the backend table, connections."""

from __future__ import annotations

import gc
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tureen.backends import load_backend
from tureen.config import BackendConfig
from tureen.definitions import Entity, FeatureView, Field, FileSource
from tureen.errors import ConfigError
from tureen.online.encoding import decode_row
from tureen.online.keys import encoder_for
from tureen.online.sqlite_store import SqliteOnlineStore
from tureen.types import Int32, Int64, String


def test_default_path_is_relative_to_the_repo_and_uses_wal(tmp_path: Path) -> None:
    store = load_backend("online_store", BackendConfig(type="sqlite"), tmp_path, "proj")
    try:
        assert isinstance(store, SqliteOnlineStore)
        assert store.path == tmp_path / "data" / "online.db"
        mode = store._conn().execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
    finally:
        store.close()


def test_absolute_path_and_option_typos(tmp_path: Path) -> None:
    cfg = BackendConfig.model_validate({"type": "sqlite", "path": str(tmp_path / "x" / "o.db")})
    store = load_backend("online_store", cfg, Path("/nonexistent"), "proj")
    assert store.path == tmp_path / "x" / "o.db"
    store.close()
    with pytest.raises(ConfigError, match="pth"):
        load_backend("online_store", BackendConfig.model_validate({"type": "sqlite", "pth": "o"}),
                     tmp_path, "p")
    with pytest.raises(ConfigError, match="mmap_size_mb"):
        load_backend("online_store",
                     BackendConfig.model_validate({"type": "sqlite", "mmap_size_mb": -1}),
                     tmp_path, "p")


def test_connections_of_finished_threads_are_freed(tmp_path: Path) -> None:
    store = SqliteOnlineStore(tmp_path / "o.db", "p")
    try:
        def read() -> None:
            store.read([])
            store._conn().execute("SELECT 1")

        for _ in range(3):
            threads = [threading.Thread(target=read) for _ in range(10)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        gc.collect()
        assert len(store._conns) <= 2  # this thread's, plus at most one not yet collected
    finally:
        store.close()


def _view(view_name: str, **keys: Any) -> FeatureView:
    entity = Entity(view_name + "_e", join_keys=list(keys), dtype=dict(keys))
    return FeatureView(view_name, [entity], [Field("v", Int64)], FileSource("unused.parquet"))


def _rows(values: list[int], hour: int = 0) -> pa.Table:
    when = datetime(2026, 1, 1, hour, tzinfo=UTC)
    return pa.table({"v": values, "event_timestamp": pa.array([when] * len(values),
                                                               pa.timestamp("us", tz="UTC"))})


def _values(store: SqliteOnlineStore, view: FeatureView, keys: list[bytes]) -> list[Any]:
    return [None if r is None else decode_row(r).values["v"]
            for r in store.read([(view, keys)])[0]]


def test_integer_keyed_views_get_integer_tables_and_others_blob_tables(tmp_path: Path) -> None:
    store = SqliteOnlineStore(tmp_path / "o.db", "p")
    by_int = _view("by_int", id=Int64)
    by_int32 = _view("by_int32", id=Int32)
    by_str = _view("by_str", label=String)
    by_two = _view("by_two", a=Int64, b=Int64)
    ints = [-(2**63), -1, 0, 7, 2**63 - 1, *range(100, 130)]
    cases: list[tuple[FeatureView, list[dict[str, Any]]]] = [
        (by_int, [{"id": i} for i in ints]),
        (by_int32, [{"id": i} for i in (-(2**31), 0, 2**31 - 1)]),
        (by_str, [{"label": s} for s in ("", "a", "é" * 3)]),
        (by_two, [{"a": i, "b": -i} for i in range(20)]),
    ]
    for view, entities in cases:
        enc = encoder_for(view.key_fields)
        keys = [enc.encode_mapping(e) for e in entities]
        store.write(view, keys, _rows(list(range(len(keys)))))
        missing = enc.encode_mapping({k: "zz" if k == "label" else 1 for k in entities[0]})
        assert _values(store, view, [*keys, keys[0], missing]) == [
            *range(len(keys)), 0, None]
        assert _values(store, view, keys[:1]) == [0]
    sql = dict(store._conn().execute("SELECT name, sql FROM sqlite_master").fetchall())
    assert "entity_id INTEGER PRIMARY KEY" in sql["p:by_int"]
    assert "entity_id INTEGER PRIMARY KEY" in sql["p:by_int32"]
    assert "entity_key BLOB PRIMARY KEY" in sql["p:by_str"]
    assert "entity_key BLOB PRIMARY KEY" in sql["p:by_two"]
    store.close()


def test_a_blob_table_written_before_integer_tables_keeps_working(tmp_path: Path) -> None:
    view = _view("old", id=Int64)
    enc = encoder_for(view.key_fields)
    keys = [enc.encode_one(i) for i in range(50)]
    old = SqliteOnlineStore(tmp_path / "o.db", "p")
    old._conn().execute(  # the layout every view had before
        'CREATE TABLE "p:old" (entity_key BLOB PRIMARY KEY, event_ts INTEGER NOT NULL, '
        "created_ts INTEGER NOT NULL, value BLOB NOT NULL) WITHOUT ROWID")
    old.write(view, keys, _rows(list(range(50)), hour=5))
    old.close()
    store = SqliteOnlineStore(tmp_path / "o.db", "p")
    assert _values(store, view, keys) == list(range(50))
    store.write(view, keys[:10], _rows([-1] * 10, hour=1))  # older: kept out
    store.write(view, keys[:5], _rows([99] * 5, hour=9))  # newer: stored
    assert _values(store, view, keys[:12]) == [99] * 5 + [5, 6, 7, 8, 9, 10, 11]
    # Another process drops the view and writes it anew (now as an integer table).
    other = SqliteOnlineStore(tmp_path / "o.db", "p")
    other.delete_views([view])
    other.write(view, keys[:3], _rows([7, 8, 9]))
    assert _values(store, view, keys[:4]) == [7, 8, 9, None]
    other.close()
    store.close()


def test_views_of_the_same_entities_are_read_in_one_statement(tmp_path: Path) -> None:
    store = SqliteOnlineStore(tmp_path / "o.db", "p")
    a, b, c = _view("a", id=Int64), _view("b", id=Int64), _view("c", id=Int64)
    enc = encoder_for(a.key_fields)
    store.write(a, [enc.encode_one(i) for i in range(5)], _rows([10, 11, 12, 13, 14]))
    store.write(b, [enc.encode_one(i) for i in (1, 3)], _rows([21, 23]))
    keys = [enc.encode_one(i) for i in (3, 1, 3, 9)]

    def both() -> list[list[Any]]:
        return [[None if r is None else decode_row(r).values["v"] for r in rows]
                for rows in store.read([(a, keys), (b, list(keys))])]

    assert both() == [[13, 11, 13, None], [23, 21, 23, None]]
    seen: list[str] = []
    store._conn().set_trace_callback(seen.append)
    assert both() == [[13, 11, 13, None], [23, 21, 23, None]]
    store._conn().set_trace_callback(None)
    assert len(seen) == 1 and seen[0].count("UNION ALL") == 1  # one statement, both views
    # A view never written (no table) among them: read view by view, Nones for it.
    assert [len(r) for r in store.read([(a, keys), (c, keys)])] == [4, 4]
    assert store.read([(a, keys), (c, keys)])[1] == [None] * 4
    # Dropped by another process after its layout was cached: still answered.
    other = SqliteOnlineStore(tmp_path / "o.db", "p")
    other.delete_views([b])
    other.close()
    assert both() == [[13, 11, 13, None], [None] * 4]
    store.close()


def _wal_frames(path: Path) -> int:
    """Frames in the WAL now (a probe from another connection; it checkpoints them)."""
    import sqlite3

    with sqlite3.connect(path) as probe:
        return int(probe.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])


@pytest.mark.parametrize("deferred", [False, True])
def test_deferred_log_checkpoints_leave_the_wal_to_checkpoint_log(tmp_path: Path,
                                                                  deferred: bool) -> None:
    """A streaming ingester's commits must not checkpoint the WAL (an fsync inside the
    commit on the event -> visible path): with ``defer_log_checkpoints`` writes past
    SQLite's 1,000-page autocheckpoint leave every frame to ``checkpoint_log``."""
    from tureen.online.protocol import DefersLogCheckpoints

    store = SqliteOnlineStore(tmp_path / "o.db", "p")
    try:
        assert isinstance(store, DefersLogCheckpoints)
        if deferred:
            store.defer_log_checkpoints()
        view = _view("big", id=Int64)
        enc = encoder_for(view.key_fields)
        for batch in range(100):  # 100 commits of 2,000 rows: ~3,000 pages in all
            ids = list(range(batch * 2000, (batch + 1) * 2000))
            store.write(view, enc.encode_arrow(pa.table({"id": ids})), _rows(ids))
        if deferred:
            frames, done = store.checkpoint_log()
            assert frames > 1000 and done == frames
        else:  # SQLite's own: the log was checkpointed and restarted along the way
            assert _wal_frames(store.path) < 1000
        assert _values(store, view, enc.encode_arrow(pa.table({"id": [0, 199_999]}))) == [
            0, 199_999]
    finally:
        store.close()
