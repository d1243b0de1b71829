"""Materialization into SQLite and Redis, at 2M and 20M offline rows, printed as JSON.

Workloads (``bench/workload.py``, cached under ``--root``): ``entities`` accounts x
``rows_per_entity`` versions x 10 Float32 features in Parquet (default 1M x 20 = 20M rows, and
1M x 5 = 5M rows to show that memory does not grow with the number of rows). Every run is
``tureen.materialize.materialize`` over the whole period in its own subprocess (peak RSS =
that process's own VmHWM): DuckDB picks the newest row per account, tureen encodes keys and
rows and writes them in batches to a fresh store. Side by side in the same run, each in its
own subprocess, rounds interleaved:

- ``engine_only``: draining ``DuckDBEngine.latest_rows`` alone (the offline lower bound);
- ``raw_sqlite_insert``: a bare ``executemany`` of the same encoded (key, ts, ts, value)
  rows, in key order, into an empty integer-keyed table (no newer-wins condition; the rows
  are fetched and encoded before the clock starts);
- ``bare_redis_hset``: the same encoded rows as pipelined ``HSET``s of 5,000 (no newer-wins
  check) — the storage lower bound on Redis.

Redis is a private ``redis-server`` started on a spare port (``--url`` to use another).

    python bench/bench_materialize.py [--root /tmp/tureen-bench-mat] [--repeats 3]
        [--sizes 1000000x20,1000000x5] [--stores sqlite,redis]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workload import ensure_workload, make_snapshot, peak_rss_mib

FEAST_REFERENCE_S = {"2M rows / 100k entities, SQLite": 39.0}
TARGET_S = 15.0
VARIANTS = ("sqlite", "raw_sqlite_insert", "redis", "bare_redis_hset", "engine_only")


def _workload(root: Path, size: str) -> Any:
    entities, per = (int(x) for x in size.split("x"))
    return ensure_workload(root / size, entities=entities, rows_per_entity=per,
                           entity_rows=1000, files=8)


def child(args: argparse.Namespace) -> None:
    """One timed run of ``args.child``; prints {"s", "rows", "peak_rss_mb"}."""
    from tureen.materialize import materialize
    from tureen.offline.duckdb_engine import DuckDBEngine
    from tureen.online.encoding import encode_rows
    from tureen.online.keys import encoder_for

    w = _workload(Path(args.root), args.size)
    snap = make_snapshot(w)
    view = snap.feature_view("account_stats")
    engine = DuckDBEngine(w.root)
    tmp = tempfile.mkdtemp(prefix="tureen-bench-mat-")
    rows = 0
    if args.child in ("sqlite", "redis"):
        store: Any
        if args.child == "sqlite":
            from tureen.online.sqlite_store import SqliteOnlineStore

            store = SqliteOnlineStore(Path(tmp) / "online.db", snap.project)
        else:
            from tureen.online.redis_store import RedisOnlineStore

            store = RedisOnlineStore.from_config({"url": args.url}, Path(tmp), f"mat{os.getpid()}")
        t = time.perf_counter()
        [done] = materialize(snap, engine, store, w.start, w.end)
        elapsed = time.perf_counter() - t
        rows = done.rows
        if args.child == "redis":
            store.delete_views([view])
        store.close()
    elif args.child == "engine_only":
        t = time.perf_counter()
        rows = sum(b.num_rows for b in engine.latest_rows(view, w.start, w.end))
        elapsed = time.perf_counter() - t
    else:
        table = pa.Table.from_batches(list(engine.latest_rows(view, w.start, w.end)))
        keys = encoder_for(view.key_fields).encode_arrow(table)
        enc = encode_rows(view.features, table)
        rows = table.num_rows
        if args.child == "raw_sqlite_insert":
            ids = table.column("account_id").to_pylist()
            con = sqlite3.connect(Path(tmp) / "raw.db", isolation_level=None)
            con.execute("PRAGMA journal_mode = WAL")
            con.execute("PRAGMA synchronous = NORMAL")
            con.execute("CREATE TABLE t (entity_id INTEGER PRIMARY KEY, event_ts INTEGER, "
                        "created_ts INTEGER, value BLOB)")
            params = sorted(zip(ids, enc.event_us, enc.created_us, enc.values, strict=True))
            t = time.perf_counter()
            con.execute("BEGIN")
            con.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", params)
            con.execute("COMMIT")
            elapsed = time.perf_counter() - t
            con.close()
        else:
            import redis

            bare = redis.Redis.from_url(args.url)
            prefix = f"bare{os.getpid()}:".encode()
            field = view.name.encode()
            t = time.perf_counter()
            for start in range(0, len(keys), 5000):
                pipe = bare.pipeline(transaction=False)
                for k, v in zip(keys[start:start + 5000], enc.values[start:start + 5000],
                                strict=True):
                    pipe.hset(prefix + k, field, v)
                pipe.execute()
            elapsed = time.perf_counter() - t
            for key in bare.scan_iter(match=prefix + b"*", count=5000):
                bare.unlink(key)
            bare.close()
    engine.close()
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps({"s": elapsed, "rows": rows, "peak_rss_mb": round(peak_rss_mib())}))


def _run(args: argparse.Namespace, variant: str, size: str, url: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", variant, "--size", size, "--root", args.root,
         "--url", url], capture_output=True, text=True, check=True)
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=os.environ.get("TUREEN_BENCH_ROOT", "/tmp/tureen-bench-mat"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", default="1000000x20,1000000x5",
                    help="ENTITIESxROWS_PER_ENTITY, comma separated")
    ap.add_argument("--stores", default="sqlite,redis")
    ap.add_argument("--url", default=None, help="an existing Redis; default: a private one")
    ap.add_argument("--child", choices=VARIANTS)
    ap.add_argument("--size")
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    stores = args.stores.split(",")
    variants = ["engine_only"]
    if "sqlite" in stores:
        variants += ["sqlite", "raw_sqlite_insert"]
    if "redis" in stores:
        variants += ["redis", "bare_redis_hset"]
    sizes = args.sizes.split(",")
    t = time.perf_counter()
    for size in sizes:
        _workload(Path(args.root), size)
    generate_s = time.perf_counter() - t
    results: dict[str, dict[str, list[dict[str, Any]]]] = {s: {v: [] for v in variants}
                                                           for s in sizes}
    loads: list[float] = []
    with ExitStack() as stack:
        url = args.url
        if url is None and "redis" in stores:
            from bench.bench_redis import private_redis

            url = stack.enter_context(private_redis())
        for _ in range(args.repeats):
            for size in sizes:
                for variant in variants:
                    loads.append(os.getloadavg()[0])
                    results[size][variant].append(_run(args, variant, size, url or ""))
    report: dict[str, Any] = {}
    for size in sizes:
        entities, per = (int(x) for x in size.split("x"))
        row: dict[str, Any] = {"offline_rows": entities * per, "entities": entities}
        for variant, runs in results[size].items():
            row[variant] = {"median_s": round(statistics.median(r["s"] for r in runs), 2),
                            "runs_s": [round(r["s"], 2) for r in runs],
                            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                            "rows": runs[0]["rows"]}
        for store, bound in (("sqlite", "raw_sqlite_insert"), ("redis", "bare_redis_hset")):
            if store in row:
                row[f"{store}_meets_target"] = row[store]["median_s"] <= TARGET_S
                row[f"{store}_minus_engine_vs_{bound}"] = round(
                    (row[store]["median_s"] - row["engine_only"]["median_s"])
                    / row[bound]["median_s"], 2)
        report[size] = row
    print(json.dumps({
        "benchmark": "materialize: DuckDB latest rows -> SQLite / Redis",
        "machine": {"cpus": os.cpu_count(), "sqlite": sqlite3.sqlite_version},
        "repeats": args.repeats, "generate_or_reuse_s": round(generate_s, 1),
        "load_average_1m": {"min": round(min(loads), 2), "max": round(max(loads), 2),
                            "median": round(statistics.median(loads), 2)},
        "target_s": TARGET_S, "feast_reference_s": FEAST_REFERENCE_S,
        "results": report,
    }, indent=2))


if __name__ == "__main__":
    main()
