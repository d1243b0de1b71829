"""`apply` checks definitions against the real source files (DuckDB engine)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd
import pytest

from tureen import FeatureStore
from tureen.errors import ConfigError


def make_repo(tmp_path: Path, schema: str, data: pd.DataFrame | None) -> FeatureStore:
    (tmp_path / "tureen.yaml").write_text("project: p\n")
    (tmp_path / "data").mkdir()
    if data is not None:
        data.to_parquet(tmp_path / "data" / "a.parquet")
    (tmp_path / "defs.py").write_text(textwrap.dedent(f"""
        from tureen import *
        account = Entity("account", join_keys=["account_id"], dtype=Int64)
        view = FeatureView(name="v", entities=[account], source=FileSource("data/a.parquet"),
                           schema=[{schema}])
    """))
    return FeatureStore(tmp_path)


ROWS = pd.DataFrame({"account_id": [1, 2], "score": [1.5, 2.5], "name": ["a", "b"],
                     "event_timestamp": pd.to_datetime(["2026-01-01", "2026-01-02"], utc=True)})


def test_matching_schema_applies(tmp_path: Path) -> None:
    store = make_repo(tmp_path, 'Field("score", Float32), Field("name", String)', ROWS)
    assert store.apply().has_changes


def test_type_mismatch_names_column_and_types(tmp_path: Path) -> None:
    store = make_repo(tmp_path, 'Field("name", Float32)', ROWS)
    with pytest.raises(ConfigError, match=r"column 'name' is string but the schema says Float32"):
        store.apply()
    assert not (tmp_path / "data" / "registry.json").exists()


def test_missing_column_lists_what_the_source_has(tmp_path: Path) -> None:
    store = make_repo(tmp_path, 'Field("scor", Float32)', ROWS)
    with pytest.raises(ConfigError, match=r"column 'scor' is missing.*account_id, score"):
        store.apply()


def test_missing_source_file_is_named(tmp_path: Path) -> None:
    store = make_repo(tmp_path, 'Field("score", Float32)', None)
    with pytest.raises(ConfigError, match=r"a\.parquet"):
        store.apply()


def test_failed_apply_keeps_previous_registry(tmp_path: Path) -> None:
    store = make_repo(tmp_path, 'Field("score", Float32)', ROWS)
    store.apply()
    before = (tmp_path / "data" / "registry.json").read_text()
    broken = (tmp_path / "defs.py").read_text().replace('"score"', '"nope"')
    (tmp_path / "defs.py").write_text(broken)
    with pytest.raises(ConfigError):
        FeatureStore(tmp_path).apply()
    assert (tmp_path / "data" / "registry.json").read_text() == before
