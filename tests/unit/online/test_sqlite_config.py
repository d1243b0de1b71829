"""SqliteOnlineStore configuration through the backend table, as tureen.yaml reaches it."""

from __future__ import annotations

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
