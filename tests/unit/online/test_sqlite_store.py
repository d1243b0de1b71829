"""SqliteOnlineStore specifics: configuration through the backend table, connections."""

from __future__ import annotations

import gc
import threading
from pathlib import Path

import pytest

from tureen.backends import load_backend
from tureen.config import BackendConfig
from tureen.errors import ConfigError
from tureen.online.sqlite_store import SqliteOnlineStore


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
