"""Spark against the oracle and against DuckDB, row for row, on the same inputs."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bench.workload import ensure_workload, feature_refs, make_snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.offline_oracle import OracleView, assert_matches, expected
from tests.unit.offline import test_entity_free as free
from tests.unit.offline import test_pit_property as prop

from tureen.offline.duckdb_engine import DuckDBEngine
from tureen.offline.protocol import OfflineEngine
from tureen.offline.retrieval import get_historical_features

pytestmark = pytest.mark.slow

# Spark answers in 1-3 s per query, so fewer examples than DuckDB's 150.
SPARK_EXAMPLES = settings(max_examples=15, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture])
COMPARE_EXAMPLES = settings(SPARK_EXAMPLES, max_examples=10)

# The offline engineer's hypothesis oracle test, unchanged, with fewer examples.
_handle: Any = getattr(prop.test_matches_oracle, "hypothesis")  # noqa: B009 - set by @given
test_matches_oracle = SPARK_EXAMPLES(given(**_handle._given_kwargs)(_handle.inner_test))
# ... and the entity-free one (every feature row version as of its own time).
_free: Any = getattr(free.test_every_row_version_as_of_its_own_time, "hypothesis")  # noqa: B009
test_every_row_version_as_of_its_own_time = settings(SPARK_EXAMPLES, max_examples=8)(
    given(**_free._given_kwargs)(_free.inner_test))


@pytest.fixture
def duckdb_engine(repo: Path) -> Any:
    eng = DuckDBEngine.from_config({"threads": 1}, repo, "test")
    yield eng
    eng.close()


def _unique(views: list[OracleView], row: dict[str, Any]) -> bool:
    return all(len(expected(v, row, row["event_timestamp"])) == 1 for v in views)


@COMPARE_EXAMPLES
@given(d_rows=prop.driver_rows, r_rows=prop.rider_rows, ents=prop.entity_rows,
       ttls=st.tuples(st.sampled_from(prop.TTLS), st.sampled_from(prop.TTLS)),
       entity_tz=prop.ENTITY_TZ, ts_type=prop.SOURCE_TS)
def test_spark_and_duckdb_agree_row_for_row(
    engine: OfflineEngine, duckdb_engine: OfflineEngine, repo: Path,
    d_rows: list[dict[str, Any]], r_rows: list[dict[str, Any]], ents: list[dict[str, Any]],
    ttls: tuple[timedelta, timedelta], entity_tz: Any, ts_type: pa.DataType,
) -> None:
    snap, oracle = prop._views(repo / uuid.uuid4().hex, d_rows, r_rows, ttls, ts_type)
    df = pd.DataFrame([{**e, "event_timestamp": prop._shown(e["event_timestamp"], entity_tz)}
                       for e in ents])
    refs = ["a:a_val", "a:a_str", "b:b_val"]
    spark = get_historical_features(engine, snap, df, refs, full_feature_names=True).to_arrow()
    duck = get_historical_features(duckdb_engine, snap, df, refs,
                                   full_feature_names=True).to_arrow()
    assert spark.schema == duck.schema
    assert_matches(spark, ents, "event_timestamp", oracle)
    for i, (s_row, d_row) in enumerate(zip(spark.to_pylist(), duck.to_pylist(), strict=True)):
        if _unique(oracle, ents[i]):  # where rows tie exactly, either answer is right
            assert s_row == d_row, f"row {i}"


def test_bench_workload_slice_is_identical(
    engine: OfflineEngine, duckdb_engine: OfflineEngine, tmp_path: Path
) -> None:
    """A small slice of the benchmark workload (unsorted files, created timestamps, a TTL,
    random microsecond times so nothing ties): both engines return the same table."""
    w = ensure_workload(tmp_path / "w", entities=500, rows_per_entity=20, entity_rows=20_000,
                        files=3)
    snap = make_snapshot(w)
    entity = pq.read_table(w.entity_path)
    spark = get_historical_features(engine, snap, entity, feature_refs(w)).to_arrow()
    duck = get_historical_features(duckdb_engine, snap, entity, feature_refs(w)).to_arrow()
    assert spark.num_rows == entity.num_rows
    assert spark.equals(duck)
    assert 0 < spark.column("f0").null_count < spark.num_rows  # the TTL bites, matches exist
