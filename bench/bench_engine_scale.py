"""The largest entity frame each offline engine retrieves within a memory cap, as JSON lines.

Same feature data as ``bench_spark.py`` (bench/workload.py: 2M feature rows, 100k accounts,
ten Float32 features, TTL 2 days); the entity frame grows (default 1M, 4M, 16M, 32M, 64M,
128M rows, generated with ``workload.entity_rows`` and cached under ``bench/data/scale/``). Each
point is one cold ``get_historical_features(engine, snapshot, entity_path, refs).to_arrow()``
in its own subprocess (engine start-up is timed apart). Peak memory is the largest sum of
resident memory over the subprocess's whole tree (Python, Spark's JVM and Python workers),
sampled every 50 ms. An engine stops growing at the first size that

* passes the memory cap (default 20 GiB; the tree is killed then, and also when the
  machine's ``MemAvailable`` drops under 2 GiB),
* takes longer than the time cap (default 240 s of retrieval; the tree is killed), or
* fails.

A whole-run budget (default 20 min) skips the sizes that would start after it. One JSON
line is printed per point as it completes, then a summary.

    python bench/bench_engine_scale.py [--sizes 1,4,16,32,64,128] [--engines duckdb,spark]
        [--cap-gib 20] [--time-cap 240] [--budget 1200] [--master local[2]]
        [--driver-memory 16g] [--max-result-size 0]

``--stream`` measures training sets written to Parquet instead (entity files up to 256M rows,
tureen's chunked join under ``--memory-limit`` next to a bare DuckDB COPY with the same
limit): see bench/scale_stream.py.

    python bench/bench_engine_scale.py --stream --sizes 1,16,64,256 --memory-limit 6GB \
        --rounds 3 --cap-gib 10 --time-cap 3600 --budget 14400 [--data /tmp/tureen-scale]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_spark import _rss_kib, _tree
from bench.workload import Workload, ensure_workload, entity_rows, feature_refs, make_snapshot

DATA = Path(__file__).resolve().parent / "data" / "scale"
_GIB_KIB = 1024 * 1024


def entity_file(millions: int) -> Path:
    """The cached entity frame of ``millions`` x 1M rows over the shared feature data."""
    path = DATA / f"entity_df_{millions}m.parquet"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        table = entity_rows(Workload(root=DATA, entity_rows=millions * 1_000_000))
        tmp = path.with_suffix(".tmp")
        pq.write_table(table, tmp, row_group_size=1_000_000)
        tmp.rename(path)
    return path


def _mem_available_kib() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


def _kill_tree(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_point(engine: str, millions: int, args: argparse.Namespace) -> dict[str, Any]:
    """One retrieval in a subprocess, watched for memory, time and failure."""
    path = entity_file(millions)
    cmd = [sys.executable, __file__, "--worker", engine, "--entity", str(path),
           "--master", args.master, "--driver-memory", args.driver_memory,
           "--max-result-size", args.max_result_size]
    return watch(cmd, {"engine": engine, "entity_rows": millions * 1_000_000}, args)


def watch(cmd: list[str], point: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Run ``cmd`` (a worker printing JSON lines; ``startup_s`` first), sampling the memory
    of its whole process tree; kill it past the memory or time cap or when the machine runs
    low on memory. ``point`` gets the worker's lines, ``peak_memory_mib``, ``wall_s``,
    ``ok`` and a ``failure`` reason."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None and proc.stderr is not None
    stdout, stderr = proc.stdout, proc.stderr
    err_tail: list[str] = []

    def read_out() -> None:
        for line in stdout:
            lines.put(line)

    def read_err() -> None:
        for line in stderr:
            err_tail.append(line)

    threading.Thread(target=read_out, daemon=True).start()
    threading.Thread(target=read_err, daemon=True).start()
    cap_kib = int(args.cap_gib * _GIB_KIB)
    peak = 0
    start = time.monotonic()
    ready_at: float | None = None
    failure: str | None = None
    while proc.poll() is None:
        peak = max(peak, sum(_rss_kib(p) for p in _tree(proc.pid)))
        while not lines.empty():
            msg = json.loads(lines.get())
            if "startup_s" in msg:
                ready_at = time.monotonic()
            point.update(msg)
        now = time.monotonic()
        if peak > cap_kib:
            failure = f"memory cap: tree passed {args.cap_gib} GiB"
        elif _mem_available_kib() < 2 * _GIB_KIB:
            failure = "memory cap: machine MemAvailable under 2 GiB"
        elif ready_at is not None and now - ready_at > args.time_cap:
            failure = f"time cap: retrieval not done within {args.time_cap:.0f} s"
        elif ready_at is None and now - start > args.time_cap:
            failure = f"time cap: engine not started within {args.time_cap:.0f} s"
        if failure:
            _kill_tree(proc)
            break
        time.sleep(0.05)
    time.sleep(0.2)  # let the reader threads drain
    while not lines.empty():
        line = lines.get()
        if line.strip().startswith("{"):
            point.update(json.loads(line))
    if failure is None and proc.returncode != 0:
        tail = "".join(err_tail).strip().splitlines()
        causes = [x for x in tail if x.startswith("Caused by:")]
        errors = [x for x in tail if not x.startswith(("\t", " ")) and "Error" in x]
        reason = (causes or errors or tail or [""])[-1]
        failure = f"error: exit code {proc.returncode}: {reason[:300]}"
    if failure is None and point.get("rows") != point.get("entity_rows"):
        failure = f"error: {point.get('rows')} rows returned for {point['entity_rows']}"
    point["peak_memory_mib"] = round(peak / 1024)
    point["wall_s"] = round(time.monotonic() - start, 1)
    point["ok"] = failure is None
    if failure:
        point["failure"] = failure
    return point


def worker(args: argparse.Namespace) -> None:
    from tureen.offline.retrieval import get_historical_features

    w = ensure_workload(DATA)
    snap = make_snapshot(w)
    refs = feature_refs(w)
    t = time.perf_counter()
    engine: Any
    if args.worker == "spark":
        from tureen.offline.spark_engine import SparkEngine
        from tureen.offline.spark_session import SparkOptions

        engine = SparkEngine(w.root, SparkOptions(master=args.master, conf={
            "spark.driver.memory": args.driver_memory,
            "spark.driver.maxResultSize": args.max_result_size, "spark.ui.enabled": "false",
            "spark.sql.shuffle.partitions": "8"}))
        engine.spark.sparkContext.setLogLevel("ERROR")
    else:
        from tureen.offline.duckdb_engine import DuckDBEngine

        engine = DuckDBEngine(w.root)
    print(json.dumps({"startup_s": round(time.perf_counter() - t, 2)}), flush=True)
    t = time.perf_counter()
    table = get_historical_features(engine, snap, Path(args.entity), refs).to_arrow()
    elapsed = time.perf_counter() - t
    print(json.dumps({"retrieval_s": round(elapsed, 2), "rows": table.num_rows}), flush=True)
    engine.close()


def summarize(points: list[dict[str, Any]], engine: str) -> dict[str, Any]:
    mine = [p for p in points if p["engine"] == engine]
    ok = [p for p in mine if p["ok"]]
    bad = [p for p in mine if not p["ok"] and not p.get("skipped")]
    out: dict[str, Any] = {"largest_ok": None, "first_failed": None}
    if ok:
        best = max(ok, key=lambda p: p["entity_rows"])
        out["largest_ok"] = {k: best.get(k) for k in
                             ("entity_rows", "retrieval_s", "startup_s", "peak_memory_mib")}
    if bad:
        out["first_failed"] = {k: bad[0].get(k) for k in
                               ("entity_rows", "failure", "peak_memory_mib", "wall_s")}
    skipped = [p["entity_rows"] for p in mine if p.get("skipped")]
    if skipped:
        out["not_run_budget"] = skipped
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1,4,16,32,64,128", help="entity rows, in millions")
    ap.add_argument("--engines", default="duckdb,spark")
    ap.add_argument("--cap-gib", type=float, default=20.0)
    ap.add_argument("--time-cap", type=float, default=240.0, help="seconds per retrieval")
    ap.add_argument("--budget", type=float, default=1200.0, help="seconds for the whole run")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--driver-memory", default="16g")
    ap.add_argument("--max-result-size", default="0",
                    help="spark.driver.maxResultSize; 0 = no limit (the default 1g stops "
                    "collecting about 30M rows)")
    ap.add_argument("--worker", choices=["duckdb", "spark"])
    ap.add_argument("--entity")
    ap.add_argument("--stream", action="store_true",
                    help="training sets streamed to Parquet under --memory-limit, tureen vs "
                    "a bare DuckDB COPY (bench/scale_stream.py)")
    ap.add_argument("--stream-worker", choices=["tureen", "bare"])
    ap.add_argument("--memory-limit", default="6GB", help="--stream: DuckDB memory_limit")
    ap.add_argument("--rounds", type=int, default=3, help="--stream: rounds per size")
    ap.add_argument("--data", default="/tmp/tureen-scale", help="--stream: data folder")
    ap.add_argument("--cleanup", action="store_true", help="--stream: delete entity files")
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    if args.stream_worker or args.stream:
        from bench import scale_stream

        (scale_stream.worker if args.stream_worker else scale_stream.run)(args)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    engines = args.engines.split(",")
    began = time.monotonic()
    ensure_workload(DATA)
    points: list[dict[str, Any]] = []
    for engine in engines:
        for millions in sizes:
            if time.monotonic() - began > args.budget:
                point = {"engine": engine, "entity_rows": millions * 1_000_000,
                         "ok": False, "skipped": True}
            else:
                point = run_point(engine, millions, args)
            points.append(point)
            print(json.dumps(point), flush=True)
            if not point["ok"]:
                break
    print(json.dumps({
        "benchmark": "offline_retrieval_scale_duckdb_vs_spark",
        "machine": {"cpus": os.cpu_count(), "mem_total_gib": round(
            os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30, 1)},
        "settings": {"memory_cap_gib": args.cap_gib, "time_cap_s": args.time_cap,
                     "spark_master": args.master, "spark_driver_memory": args.driver_memory,
                     "spark_driver_max_result_size": args.max_result_size,
                     "sizes_millions": sizes, "feature_rows": 2_000_000},
        "total_s": round(time.monotonic() - began, 1),
        **{engine: summarize(points, engine) for engine in engines},
    }, indent=2))


if __name__ == "__main__":
    main()
