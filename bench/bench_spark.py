"""Point-in-time retrieval of the 1M-row entity frame on Spark next to DuckDB, as JSON.

Workload (bench/workload.py): 2M feature rows (100k accounts x 20, ten Float32 features,
unsorted files, created timestamps), 1M entity rows at random times, TTL 2 days. Each engine
runs in its own subprocess: ``get_historical_features(engine, snapshot, entity_path, refs)
.to_arrow()`` ``--reps`` times (the median is reported; the first run, which also warms
Spark's JIT, is reported apart). Spark also writes the same training set as a Parquet
dataset from its executors (``historical_features_to_parquet``). Peak memory is the largest
sum of resident memory over the worker's whole process tree (Python, and for Spark its JVM
and Python workers), sampled every 50 ms from /proc. The run ends by checking the two
engines' tables are equal.

    python bench/bench_spark.py [--root /tmp/tureen-bench] [--reps 3] [--master local[2]]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workload import ensure_workload, feature_refs, make_snapshot


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, []))
    return out


def run_worker(engine: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", engine, "--root", args.root,
           "--reps", str(args.reps), "--master", args.master]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, sum(_rss_kib(p) for p in _tree(proc.pid)))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{engine} worker failed with exit code {proc.returncode}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["peak_memory_mib"] = round(peak / 1024)
    return result


def worker(engine_name: str, args: argparse.Namespace) -> None:
    import pyarrow.parquet as pq

    from tureen.offline.retrieval import get_historical_features

    w = ensure_workload(Path(args.root))
    snap = make_snapshot(w)
    refs = feature_refs(w)
    t = time.perf_counter()
    engine: Any
    if engine_name == "spark":
        from tureen.offline.spark_engine import SparkEngine
        from tureen.offline.spark_session import SparkOptions

        engine = SparkEngine(w.root, SparkOptions(master=args.master, conf={
            "spark.driver.memory": "4g", "spark.ui.enabled": "false",
            "spark.sql.shuffle.partitions": "8"}))
        engine.spark.sparkContext.setLogLevel("ERROR")
    else:
        from tureen.offline.duckdb_engine import DuckDBEngine

        engine = DuckDBEngine(w.root)
    startup = time.perf_counter() - t
    times = []
    table = None
    for _ in range(args.reps + 1):
        t = time.perf_counter()
        table = get_historical_features(engine, snap, w.entity_path, refs).to_arrow()
        times.append(time.perf_counter() - t)
    assert table is not None
    pq.write_table(table, w.root / f"result_{engine_name}.parquet")
    out: dict[str, Any] = {
        "startup_s": round(startup, 2),
        "first_run_s": round(times[0], 2),
        "retrieval_s": round(statistics.median(times[1:]), 2),
        "rows": table.num_rows,
    }
    if engine_name == "spark":
        from tureen.feature_refs import resolve

        target = w.root / "spark_training_set"
        t = time.perf_counter()
        engine.historical_features_to_parquet(
            w.entity_path, resolve(snap, refs), "event_timestamp", target, mode="overwrite")
        out["to_parquet_from_executors_s"] = round(time.perf_counter() - t, 2)
    engine.close()
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="/tmp/tureen-bench")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--worker", choices=["duckdb", "spark"])
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args)
        return
    import pyarrow.parquet as pq

    w = ensure_workload(Path(args.root))
    duck = run_worker("duckdb", args)
    spark = run_worker("spark", args)
    a = pq.read_table(w.root / "result_duckdb.parquet")
    b = pq.read_table(w.root / "result_spark.parquet")
    print(json.dumps({
        "benchmark": "offline_retrieval_spark_vs_duckdb",
        "machine": {"cpus": os.cpu_count(), "spark_master": args.master},
        "workload": {"feature_rows": w.entities * w.rows_per_entity, "entities": w.entities,
                     "entity_rows": w.entity_rows, "features": w.features,
                     "ttl_days": w.ttl_days, "reps": args.reps},
        "duckdb": duck,
        "spark": spark,
        "spark_over_duckdb": {
            "retrieval_time": round(spark["retrieval_s"] / duck["retrieval_s"], 1),
            "peak_memory": round(spark["peak_memory_mib"] / duck["peak_memory_mib"], 1),
        },
        "identical_results": a.equals(b),
    }, indent=2))


if __name__ == "__main__":
    main()
