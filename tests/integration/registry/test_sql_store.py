"""What only the SQL registry store does: URLs, options, secrets, and an unreachable server."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tureen.backends import load_backend
from tureen.config import BackendConfig
from tureen.errors import BackendUnavailableError, ConfigError
from tureen.registry.sql_store import SqlRegistryStore, normalize_url


def test_postgresql_url_uses_psycopg3() -> None:
    assert normalize_url("postgresql://u@h:5432/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"


def test_relative_sqlite_path_is_in_the_repo(tmp_path: Path) -> None:
    store = SqlRegistryStore.from_config({"url": "sqlite:///data/reg.db"}, tmp_path, "p")
    assert store.url.database == str(tmp_path / "data" / "reg.db")


def test_options_are_validated_and_exposed(tmp_path: Path) -> None:
    store = load_backend(
        "registry", BackendConfig.model_validate(
            {"type": "sql", "url": "sqlite:///r.db", "cache_ttl_seconds": 2.5}
        ),
        tmp_path, "p",
    )
    assert isinstance(store, SqlRegistryStore)
    assert store.cache_ttl_seconds == 2.5
    with pytest.raises(ConfigError, match="cache_ttl_secs"):
        load_backend("registry", BackendConfig.model_validate(
            {"type": "sql", "url": "sqlite://", "cache_ttl_secs": 1}), tmp_path, "p")
    with pytest.raises(ConfigError, match="not a database URL"):
        SqlRegistryStore.from_config({"url": "nonsense"}, tmp_path, "p")


def test_describe_never_shows_the_password(tmp_path: Path) -> None:
    store = SqlRegistryStore.from_config(
        {"url": "postgresql://alice:s3cr3t-pw@db.example:5432/feat"}, tmp_path, "proj"
    )
    text = store.describe()
    assert "s3cr3t-pw" not in text
    assert "alice" in text and "db.example" in text and "proj" in text


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_server_is_backend_unavailable_naming_the_host(tmp_path: Path) -> None:
    port = _closed_port()
    store = SqlRegistryStore.from_config(
        {"url": f"postgresql://postgres:pw@127.0.0.1:{port}/test", "connect_timeout_seconds": 2},
        tmp_path, "p",
    )
    for call in (store.load, store.history, lambda: store.save({}, 0, "x")):
        with pytest.raises(BackendUnavailableError) as info:
            call()
        msg = str(info.value)
        assert f"127.0.0.1:{port}" in msg
        assert "TUREEN_REGISTRY__URL" in msg
        assert ":pw@" not in msg
