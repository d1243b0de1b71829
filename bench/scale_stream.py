"""``bench_engine_scale.py --stream``: training sets streamed to Parquet under a memory limit.

Same feature data as the rest of the scale benchmark (bench/workload.py: 2M feature rows,
100k accounts, ten Float32 features, TTL 2 days); entity files of 1M-256M rows, written
8M rows at a time (never whole in memory) under ``--data``. Each point is one cold run in its
own subprocess, its whole process tree's memory sampled (``bench_engine_scale.watch``):

- ``tureen``: ``get_historical_features(engine, snapshot, entity_file, refs).to_parquet(dir)``
  with ``DuckDBEngine(memory_limit=--memory-limit, temp_directory=<data>/spill-tureen)``;
- ``bare``: the bare lower bound, one DuckDB statement under the same memory limit and spill
  folder: ``COPY (entity rows ASOF LEFT JOIN feature rows on (event, created) with the TTL,
  ORDER BY the entity file's row number) TO 'out.parquet'`` (the fastest bare form of
  bench_offline.py, writing instead of collecting).

Rounds interleave the variants (load from the shared machine hits both alike); medians of
``--rounds``; a variant that fails or passes a cap at one size is not run at larger sizes.
Output and spill folders are deleted after every point; ``--cleanup`` removes the entity
files at the end. One JSON line per point, then a summary with seconds per 1M rows and the
ratio tureen / bare (median over paired rounds) where the bare statement finished.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from bench.workload import START, Workload, ensure_workload, feature_refs, make_snapshot

_US = 1_000_000
_CHUNK = 8_000_000
VARIANTS = ("tureen", "bare")


def entity_file(data: Path, millions: int) -> Path:
    """account_id, event_timestamp, label: ``millions`` x 1M rows, written in chunks."""
    path = data / f"entities_{millions}m.parquet"
    if path.exists():
        return path
    data.mkdir(parents=True, exist_ok=True)
    w = Workload(root=data)
    rng = np.random.default_rng(1000 + millions)
    base = int(START.timestamp()) * _US
    span = (w.days + 2) * 86_400 * _US
    schema = pa.schema([("account_id", pa.int64()), ("event_timestamp",
                                                     pa.timestamp("us", tz="UTC")),
                        ("label", pa.int64())])
    tmp = path.with_suffix(".tmp")
    n = millions * _US
    with pq.ParquetWriter(tmp, schema) as writer:
        for start in range(0, n, _CHUNK):
            m = min(_CHUNK, n - start)
            writer.write_table(pa.table({
                "account_id": rng.integers(0, w.entities, m, dtype=np.int64),
                "event_timestamp": pa.array(base + rng.integers(0, span, m, dtype=np.int64),
                                            pa.timestamp("us", tz="UTC")),
                "label": rng.integers(0, 2, m, dtype=np.int64),
            }, schema=schema), row_group_size=1_000_000)
    tmp.rename(path)
    return path


def bare_sql(w: Workload, entity: Path, out: Path) -> str:
    src = f"read_parquet('{w.source_dir}/*.parquet')"
    ttl = f"INTERVAL {w.ttl_days} DAY"
    feats = ", ".join(
        f"CASE WHEN f.event_timestamp >= e.event_timestamp - {ttl} THEN f.{c} END AS {c}"
        for c in w.feature_names)
    keyed = ("SELECT *, {'t': event_timestamp, 'c': coalesce(created_timestamp, "
             f"'-infinity'::TIMESTAMPTZ)}} AS k FROM {src}")
    query = (
        f"SELECT e.account_id, e.event_timestamp, e.label, {feats} FROM "
        f"read_parquet('{entity}', file_row_number = true) e ASOF LEFT JOIN ({keyed}) f "
        "ON e.account_id = f.account_id AND {'t': e.event_timestamp, "
        "'c': 'infinity'::TIMESTAMPTZ} >= f.k ORDER BY e.file_row_number")
    return f"COPY ({query}) TO '{out}' (FORMAT parquet)"


def worker(args: argparse.Namespace) -> None:
    """One run of ``args.stream_worker`` (tureen or bare); prints JSON lines."""
    data = Path(args.data)
    w = ensure_workload(data / "features")
    entity = Path(args.entity)
    out = data / f"out-{args.stream_worker}"
    spill = data / f"spill-{args.stream_worker}"
    t = time.perf_counter()
    if args.stream_worker == "tureen":
        from tureen.offline.duckdb_engine import DuckDBEngine, DuckDBOptions
        from tureen.offline.retrieval import get_historical_features

        engine = DuckDBEngine(data, DuckDBOptions(memory_limit=args.memory_limit,
                                                  temp_directory=str(spill)))
        print(json.dumps({"startup_s": round(time.perf_counter() - t, 2)}), flush=True)
        t = time.perf_counter()
        job = get_historical_features(engine, make_snapshot(w), entity, feature_refs(w))
        rows = job.to_parquet(out)
        engine.close()
    else:
        import duckdb

        con = duckdb.connect(config={"memory_limit": args.memory_limit,
                                     "temp_directory": str(spill)})
        con.execute("SET TimeZone = 'UTC'")
        print(json.dumps({"startup_s": round(time.perf_counter() - t, 2)}), flush=True)
        t = time.perf_counter()
        out.mkdir(parents=True, exist_ok=True)
        con.execute(bare_sql(w, entity, out / "part.parquet"))
        con.close()
        rows = sum(pq.read_metadata(f).num_rows for f in out.glob("*.parquet"))
    print(json.dumps({"retrieval_s": round(time.perf_counter() - t, 2), "rows": rows}),
          flush=True)


def _clear(data: Path, variant: str) -> None:
    for name in (f"out-{variant}", f"spill-{variant}"):
        shutil.rmtree(data / name, ignore_errors=True)


def run(args: argparse.Namespace) -> None:
    from bench.bench_engine_scale import watch

    data = Path(args.data)
    sizes = [int(s) for s in args.sizes.split(",")]
    ensure_workload(data / "features")
    began = time.monotonic()
    points: list[dict[str, Any]] = []
    stopped: set[str] = set()
    for millions in sizes:
        entity = entity_file(data, millions)
        for rnd in range(args.rounds):
            for variant in VARIANTS:
                point: dict[str, Any] = {"variant": variant, "entity_rows": millions * _US,
                                         "round": rnd}
                free_gib = shutil.disk_usage(data).free / 2**30
                # output ~45 MB per 1M rows; the bare sort spills ~70 MB more per 1M rows
                need_gib = millions * (0.12 if variant == "bare" else 0.05) + 5
                if variant in stopped:
                    point.update(ok=False, skipped="failed or capped at a smaller size")
                elif time.monotonic() - began > args.budget:
                    point.update(ok=False, skipped="whole-run budget spent")
                elif free_gib < need_gib:
                    point.update(ok=False, skipped=f"{free_gib:.0f} GiB disk free, "
                                 f"{need_gib:.0f} needed")
                else:
                    point["load_average_before"] = [round(x, 2) for x in os.getloadavg()]
                    cmd = [sys.executable, str(Path(__file__).parent / "bench_engine_scale.py"),
                           "--stream-worker", variant, "--entity", str(entity), "--data",
                           str(data), "--memory-limit", args.memory_limit]
                    try:
                        point = watch(cmd, point, args)
                    finally:
                        _clear(data, variant)
                    point["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
                    if point["ok"]:
                        point["s_per_million_rows"] = round(point["retrieval_s"] / millions, 3)
                    else:
                        stopped.add(variant)
                points.append(point)
                print(json.dumps(point), flush=True)
    if args.cleanup:
        for millions in sizes:
            (data / f"entities_{millions}m.parquet").unlink(missing_ok=True)
    print(json.dumps(summary(points, sizes, args), indent=2))


def summary(points: list[dict[str, Any]], sizes: list[int],
            args: argparse.Namespace) -> dict[str, Any]:
    by_size: dict[str, Any] = {}
    for millions in sizes:
        row: dict[str, Any] = {}
        runs: dict[str, list[dict[str, Any]]] = {}
        for variant in VARIANTS:
            mine = [p for p in points if p["variant"] == variant
                    and p["entity_rows"] == millions * _US]
            ok = [p for p in mine if p.get("ok")]
            runs[variant] = mine
            if ok and len(ok) == len(mine):
                secs = [p["retrieval_s"] for p in ok]
                row[variant] = {"median_s": statistics.median(secs),
                                "s_per_million_rows": round(statistics.median(secs) / millions,
                                                            3),
                                "runs_s": secs,
                                "peak_memory_mib": max(p["peak_memory_mib"] for p in ok)}
            elif mine:
                failed = next((p for p in mine if not p.get("ok")), mine[0])
                row[variant] = {"finished": False,
                                "why": failed.get("failure") or failed.get("skipped"),
                                "peak_memory_mib": failed.get("peak_memory_mib")}
        if "median_s" in row.get("tureen", {}) and "median_s" in row.get("bare", {}):
            pairs = [t["retrieval_s"] / b["retrieval_s"]
                     for t, b in zip(runs["tureen"], runs["bare"], strict=True)]
            row["ratio_tureen_vs_bare"] = round(statistics.median(pairs), 2)
        by_size[f"{millions}M"] = row
    return {
        "benchmark": "training set streamed to Parquet under a memory limit (DuckDB)",
        "machine": {"cpus": os.cpu_count(), "mem_total_gib": round(
            os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30, 1)},
        "settings": {"memory_limit": args.memory_limit, "rounds": args.rounds,
                     "memory_cap_gib": args.cap_gib, "time_cap_s": args.time_cap,
                     "feature_rows": 2_000_000, "features": 10},
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "by_size": by_size,
        "targets": {"rows_256m_peak_rss_gib_max": 8.0},
    }
