"""`tureen get-historical-features` on entity rows that come as a folder of Parquet files:
streamed to a dataset, and Ctrl-C (SIGINT) mid-run leaves nothing at the destination."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

US = pa.timestamp("us", tz="UTC")
T0 = 1_767_225_600_000_000

DEFINITIONS = textwrap.dedent('''
    from datetime import timedelta
    from tureen import Entity, FeatureView, Field, FileSource, Float64, Int64

    driver = Entity(name="driver", join_keys=["driver"], dtype=Int64)
    stats = FeatureView(
        name="stats", entities=[driver], ttl=timedelta(days=2),
        schema=[Field("v", Float64)],
        source=FileSource(path="data/stats.parquet", timestamp_field="event_timestamp"),
    )
''')


def make_repo(root: Path, entity_rows: int, files: int) -> Path:
    repo = root / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "features.py").write_text(DEFINITIONS)
    (repo / "tureen.yaml").write_text(
        "project: stream\noffline_store:\n  type: duckdb\n  threads: 1\n  chunk_rows: 20000\n"
        "  memory_limit: 256MB\n  temp_directory: spill\n")
    rng = np.random.default_rng(1)
    pq.write_table(pa.table({
        "driver": np.arange(1000), "v": np.arange(1000) / 2,
        "event_timestamp": pa.array(np.full(1000, T0), US),
    }), repo / "data" / "stats.parquet")
    per = entity_rows // files
    (repo / "entities").mkdir()
    for i in range(files):
        pq.write_table(pa.table({
            "driver": rng.integers(0, 1200, per),
            "event_timestamp": pa.array(T0 + rng.integers(0, 86_400_000_000, per), US),
            "row": np.arange(i * per, (i + 1) * per),
        }), repo / "entities" / f"part-{i}.parquet")
    subprocess.run([sys.executable, "-m", "tureen", "apply", "--repo", str(repo)], check=True,
                   capture_output=True, timeout=120)
    return repo


def test_entity_folder_to_dataset_folder_with_json_summary(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, 90_000, 3)
    out = tmp_path / "train"
    proc = subprocess.run(
        [sys.executable, "-m", "tureen", "get-historical-features", "--repo", str(repo),
         "--entities", str(repo / "entities"), "-f", "stats:v", "--out", str(out), "--json"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["rows"] == 90_000 and summary["features"] == 1
    table = pq.read_table(out)
    assert table.column("row").to_pylist() == list(range(90_000))
    drivers = table.column("driver").to_numpy()
    v = table.column("v").to_numpy(zero_copy_only=False)
    known = drivers < 1000
    assert np.array_equal(v[known], drivers[known] / 2)
    assert np.isnan(v[~known]).all()


def test_ctrl_c_leaves_no_partial_output(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, 2_000_000, 4)
    dest = tmp_path / "out"
    dest.mkdir()
    target = dest / "train.parquet"
    proc = subprocess.Popen(
        # -X faulthandler: a crash (a CI run once ended with SIGSEGV here) prints each
        # thread's stack into ``err``, which the asserts below show
        [sys.executable, "-X", "faulthandler", "-m", "tureen", "get-historical-features",
         "--repo", str(repo), "--entities", str(repo / "entities"), "-f", "stats:v",
         "--out", str(target), "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a terminal's Ctrl-C: a suite started in the background (`cmd &`) ignores SIGINT,
        # and its children would inherit that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not list(dest.glob(".train.parquet.staging-*")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no staging file appeared"
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Interrupted." in err, err
    assert list(dest.iterdir()) == [], err
