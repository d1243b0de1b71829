"""Training sets larger than memory: chunked joins that spill, streamed output, progress,
staging and cleanup (DuckDB engine)."""

from __future__ import annotations

import os
import signal
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from tests.offline_oracle import OracleView, expected

from tureen.definitions import Entity, FeatureView, Field, FileSource
from tureen.errors import BackendUnavailableError, InvalidRequestError, NotFoundError
from tureen.offline.duckdb_engine import DuckDBEngine
from tureen.offline.entity_rows import entity_rows
from tureen.offline.retrieval import get_historical_features
from tureen.offline.training_output import write_chunks
from tureen.registry.snapshot import RegistrySnapshot
from tureen.types import Float64, Int64

US = pa.timestamp("us", tz="UTC")
T0 = 1_767_225_600_000_000  # 2026-01-01 UTC, µs
DRIVER = Entity("driver", dtype=Int64)
REFS = ["s:v", "s:w"]


def engine(repo: Path, **options: Any) -> DuckDBEngine:
    return DuckDBEngine.from_config({"threads": 2, **options}, repo, "test")


def random_repo(repo: Path, entity_rows_n: int, feature_rows_n: int,
                keys: int = 5000) -> RegistrySnapshot:
    """A view of random rows (two float features, created timestamps, TTL 3 days) and an
    entity file ``e.parquet`` of random (driver, time) rows in row groups of 50k."""
    rng = np.random.default_rng(3)
    span = 10**12  # ~11.6 days
    pq.write_table(pa.table({
        "driver": rng.integers(0, keys, feature_rows_n),
        "v": rng.random(feature_rows_n), "w": rng.random(feature_rows_n),
        "event_timestamp": pa.array(T0 + rng.integers(0, span, feature_rows_n), US),
        "created": pa.array(T0 + rng.integers(0, span, feature_rows_n), US),
    }), repo / "f.parquet")
    pq.write_table(pa.table({
        "driver": rng.integers(0, keys, entity_rows_n),
        "event_timestamp": pa.array(T0 + rng.integers(0, span, entity_rows_n), US),
        "row": np.arange(entity_rows_n),
    }), repo / "e.parquet", row_group_size=50_000)
    view = FeatureView("s", [DRIVER], [Field("v", Float64), Field("w", Float64)],
                       FileSource(str(repo / "f.parquet"), created_timestamp_column="created"),
                       ttl=timedelta(days=3))
    return RegistrySnapshot(project="p", entities={"driver": DRIVER}, feature_views={"s": view})


def test_spill_path_is_taken_and_stays_exact(repo: Path) -> None:
    """200k entity rows x 200k feature rows under a 24 MB limit: without a spill folder the
    join runs out of memory (so the data really exceeds the limit); with one it completes,
    equals the unlimited in-memory join, and matches the brute-force oracle."""
    snap = random_repo(repo, 200_000, 200_000)
    tight = {"memory_limit": "24MB", "chunk_rows": 50_000}
    with pytest.raises(BackendUnavailableError, match=r"ran out of memory.*temp_directory"):
        get_historical_features(engine(repo, **tight, temp_directory=""), snap,
                                repo / "e.parquet", REFS).to_parquet(repo / "no.parquet")
    assert not (repo / "no.parquet").exists()
    assert [p.name for p in repo.iterdir() if p.name.startswith(".")] == []

    spilling = engine(repo, **tight, temp_directory="spill")
    written = get_historical_features(spilling, snap, repo / "e.parquet", REFS).to_parquet(
        repo / "out.parquet")
    got = pq.read_table(repo / "out.parquet")
    assert written == got.num_rows == 200_000
    whole = get_historical_features(engine(repo), snap, pq.read_table(repo / "e.parquet"),
                                    REFS).to_arrow()
    assert got.equals(whole)

    feats = pq.read_table(repo / "f.parquet").to_pylist()
    by_key: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in feats:
        by_key[r["driver"]].append({**r, "event": r["event_timestamp"]})
    out = got.to_pylist()
    for i in np.random.default_rng(9).choice(len(out), 400, replace=False):
        row = out[i]
        assert row["row"] == i
        oracle = OracleView("s", ("driver",), ("v", "w"), by_key[row["driver"]],
                            timedelta(days=3))
        assert (row["v"], row["w"]) in {a or (None, None) for a in
                                        expected(oracle, row, row["event_timestamp"])}


def small_repo(repo: Path) -> RegistrySnapshot:
    pq.write_table(pa.table({
        "driver": pa.array([1, 2, 3], pa.int64()), "v": [1.0, 2.0, 3.0], "w": [0.1, 0.2, 0.3],
        "event_timestamp": pa.array([T0] * 3, US), "created": pa.array([T0] * 3, US),
    }), repo / "f.parquet")
    view = FeatureView("s", [DRIVER], [Field("v", Float64), Field("w", Float64)],
                       FileSource(str(repo / "f.parquet"), created_timestamp_column="created"))
    return RegistrySnapshot(project="p", entities={"driver": DRIVER}, feature_views={"s": view})


def entity_folder(repo: Path, sizes: list[int]) -> tuple[Path, list[int]]:
    """A folder of Parquet files with ``sizes`` rows each (plus a hidden file that must be
    skipped); returns it and the expected ``row`` order."""
    folder = repo / "entities"
    folder.mkdir()
    row = 0
    order = []
    for i, n in enumerate(sizes):
        rows = list(range(row, row + n))
        pq.write_table(pa.table({
            "driver": pa.array([1 + r % 4 for r in rows], pa.int64()),
            "event_timestamp": pa.array([T0 + 1] * n, US),
            "row": pa.array(rows, pa.int64()),
        }), folder / f"part-{i:02d}.parquet")
        order += rows
        row += n
    pq.write_table(pa.table({"junk": [1]}), folder / ".hidden.parquet")
    return folder, order


def test_entity_folder_is_read_a_chunk_at_a_time_in_order(repo: Path) -> None:
    snap = small_repo(repo)
    folder, order = entity_folder(repo, [5, 0, 7, 1])
    rows = entity_rows(folder)
    assert rows.table is None and rows.num_rows == 13
    assert [c.num_rows for c in rows.chunks(4)] == [4, 4, 4, 1]
    seen: list[tuple[int, int]] = []
    job = get_historical_features(engine(repo, chunk_rows=4), snap, folder, ["s:v"])
    assert job.to_parquet(repo / "out.parquet", progress=lambda d, t: seen.append((d, t))) == 13
    assert seen == [(4, 13), (8, 13), (12, 13), (13, 13)]
    out = pq.read_table(repo / "out.parquet")
    assert out.column("row").to_pylist() == order
    assert out.column("v").to_pylist() == [[1.0, 2.0, 3.0, None][r % 4] for r in order]


def test_output_is_a_file_a_dataset_folder_or_csv(repo: Path) -> None:
    snap = small_repo(repo)
    folder, order = entity_folder(repo, [6, 6])
    job = get_historical_features(engine(repo, chunk_rows=5), snap, folder, ["s:v"])
    job.to_file(repo / "out" / "train")  # no suffix: a dataset folder
    assert sorted(p.name for p in (repo / "out" / "train").iterdir()) == ["part-00000.parquet"]
    assert pq.read_table(repo / "out" / "train").column("row").to_pylist() == order
    job.to_file(repo / "out" / "train.csv")
    assert pacsv.read_csv(repo / "out" / "train.csv").column("row").to_pylist() == order
    # Parts roll over; the rows stay in order across parts (by name).
    chunks = [pa.table({"x": [i, i + 1]}) for i in range(0, 10, 2)]
    assert write_chunks(chunks, repo / "parts", rows_per_part=4) == 10
    assert sorted(p.name for p in (repo / "parts").iterdir()) == [
        "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert pq.read_table(repo / "parts").column("x").to_pylist() == list(range(10))
    (repo / "taken.parquet").mkdir()
    with pytest.raises(InvalidRequestError, match="existing folder"):
        write_chunks(chunks, repo / "taken.parquet")


@pytest.mark.parametrize("dest", ["train.parquet", "train"])
def test_interrupt_leaves_the_destination_as_it_was(repo: Path, dest: str) -> None:
    snap = small_repo(repo)
    folder, _ = entity_folder(repo, [5, 5, 5])
    target = repo / "out" / dest
    job = get_historical_features(engine(repo, chunk_rows=5), snap, folder, ["s:v"])
    job.to_parquet(target)
    before = pq.read_table(target)

    def interrupt_after_first_chunk(done: int, total: int) -> None:
        if done >= 5:
            raise KeyboardInterrupt

    smaller, _ = entity_folder(repo / "out", [3, 3, 3])
    again = get_historical_features(engine(repo, chunk_rows=3), snap, smaller, ["s:v"])
    with pytest.raises(KeyboardInterrupt):
        again.to_parquet(target, progress=interrupt_after_first_chunk)
    assert pq.read_table(target).equals(before)
    assert sorted(p.name for p in (repo / "out").iterdir()) == sorted(["entities", dest])
    fresh = repo / "out" / f"new-{dest}"
    with pytest.raises(KeyboardInterrupt):
        again.to_parquet(fresh, progress=interrupt_after_first_chunk)
    assert not fresh.exists()
    assert not [p for p in (repo / "out").iterdir() if p.name.startswith(".")]


def test_entity_input_errors_are_clear_and_early(repo: Path) -> None:
    snap = small_repo(repo)
    (repo / "empty").mkdir()
    with pytest.raises(NotFoundError, match="holds no Parquet files"):
        get_historical_features(engine(repo), snap, repo / "empty", ["s:v"])
    nulls = repo / "nulls.parquet"
    pq.write_table(pa.table({"driver": [1, 2], "event_timestamp": pa.array([T0, None], US)}),
                   nulls)
    with pytest.raises(InvalidRequestError, match="1 rows without a value"):
        get_historical_features(engine(repo), snap, nulls, ["s:v"])  # from the footer
    bad = repo / "bad.parquet"
    pq.write_table(pa.table({"driver": [1], "event_timestamp": [1.5]}), bad)
    with pytest.raises(InvalidRequestError, match="must hold timestamps"):
        get_historical_features(engine(repo), snap, bad, ["s:v"])
    mixed = repo / "mixed"
    mixed.mkdir()
    pq.write_table(pa.table({"driver": [1], "event_timestamp": pa.array([T0], US)}),
                   mixed / "a.parquet")
    pq.write_table(pa.table({"driver": ["x"], "event_timestamp": pa.array([T0], US)}),
                   mixed / "b.parquet")
    job = get_historical_features(engine(repo, chunk_rows=1), snap, mixed, ["s:v"])
    with pytest.raises(InvalidRequestError, match=r"b\.parquet.*same schema"):
        job.to_parquet(repo / "mixed-out.parquet")
    assert not (repo / "mixed-out.parquet").exists()


def test_timestamp_bounds_come_from_footers(repo: Path) -> None:
    path = repo / "e.parquet"
    when = [datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 3, 0, 0, 0, 1, tzinfo=UTC)]
    for unit in ("ms", "us", "ns"):
        stamps = pa.array(when, US).cast(pa.timestamp(unit), safe=False)
        table = pa.table({"event_timestamp": stamps})
        pq.write_table(table, path)
        lo, hi = entity_rows(path).timestamp_bounds("event_timestamp") or (0, 0)
        assert lo <= T0 and hi >= T0 + 2 * 86_400_000_000
        assert hi - lo <= 2 * 86_400_000_000 + 1
    pq.write_table(pa.table({"event_timestamp": ["2026-01-01"]}), path)
    assert entity_rows(path).timestamp_bounds("event_timestamp") is None


def _df(n: int) -> pd.DataFrame:
    return pd.DataFrame({"driver": [1] * n, "event_timestamp": [pd.Timestamp(T0, unit="us",
                                                                            tz="UTC")] * n})


def test_in_memory_frames_larger_than_a_chunk_are_chunked(repo: Path) -> None:
    snap = small_repo(repo)
    seen: list[int] = []
    progress: Callable[[int, int], None] = lambda d, t: seen.append(d)  # noqa: E731
    job = get_historical_features(engine(repo, chunk_rows=4), snap, _df(10), ["s:v"])
    job.to_parquet(repo / "o.parquet", progress=progress)
    assert seen == [4, 8, 10]
    assert pq.read_table(repo / "o.parquet").column("v").to_pylist() == [1.0] * 10


def _chunks_of(n: int) -> list[pa.Table]:
    return [pa.table({"x": list(range(i * 3, i * 3 + 3))}) for i in range(n)]


@pytest.fixture(params=["python", "library"])
def sigint_handler(request: pytest.FixtureRequest) -> Any:
    """Python's own SIGINT handler, or one a library installed (PySpark's SparkContext sets
    one that cancels its jobs and raises KeyboardInterrupt): the writer notes Ctrl-C and
    still runs it."""
    calls: list[int] = []

    def library_handler(signum: int, frame: Any) -> None:
        calls.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, signal.default_int_handler
                             if request.param == "python" else library_handler)
    yield calls
    signal.signal(signal.SIGINT, previous)
    if request.param == "library":
        assert calls == [signal.SIGINT]


def test_ctrl_c_swallowed_by_the_engine_never_renames_a_partial_output(
    tmp_path: Path, sigint_handler: Any
) -> None:
    """DuckDB catches SIGINT itself: a scan of Python data may end early, as if the input
    were done. A Ctrl-C during the write must still leave nothing at the destination."""

    def engine_that_swallows_ctrl_c() -> Any:
        yield from _chunks_of(1)
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the signal is delivered here
        except KeyboardInterrupt:
            return  # what an engine that stops reading on an interrupt looks like
        yield from _chunks_of(2)

    target = tmp_path / "train.parquet"
    with pytest.raises(KeyboardInterrupt):
        write_chunks(engine_that_swallows_ctrl_c(), target)
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_turned_into_an_engine_error_is_an_interrupt(
    tmp_path: Path, sigint_handler: Any
) -> None:
    """DuckDB reports a query stopped by Ctrl-C as RuntimeError('Query interrupted'): the
    user pressed Ctrl-C, so it is a KeyboardInterrupt (no traceback), not a failure."""

    def engine_that_reports_an_error() -> Any:
        yield from _chunks_of(1)
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except KeyboardInterrupt:
            raise RuntimeError("Query interrupted") from None

    with pytest.raises(KeyboardInterrupt):
        write_chunks(engine_that_reports_an_error(), tmp_path / "t")
    assert list(tmp_path.iterdir()) == []
