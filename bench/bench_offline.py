"""Point-in-time retrieval: tureen vs a bare DuckDB ASOF JOIN, side by side, in one run.

Workload (bench/workload.py): 2M feature rows (100k accounts x 20, ten Float32 features),
an entity file of 1M rows at random times, TTL 2 days. Every variant starts from the same
Parquet files and ends with an Arrow table of the entity columns + f0..f9 in input order:

- ``bare_qualify``: what a DuckDB user writes: dedupe equal event times to the newest created
  row (QUALIFY), ASOF LEFT JOIN, null features older than the TTL, ORDER BY input row.
- ``bare_struct``: the fastest bare query we know: ASOF on (event, created) as a struct, no
  dedupe pass. The lower bound the ratio is computed against.
- ``bare_count``: the join counting rows only (no tie-break, TTL or output), for context.
- ``tureen``: ``get_historical_features(engine, snapshot, entity_path, refs).to_arrow()``.

Each variant lives in its own subprocess (peak RSS = that process's own VmHWM, imports
included); after one warm-up each, rounds run every variant once in turn, so load from other
processes on the machine hits all variants alike; time is the median over ``--reps`` rounds.
The run ends by checking that tureen's table equals both bare tables. Prints JSON.

    python bench/bench_offline.py [--root /tmp/tureen-bench] [--reps 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workload import Workload, ensure_workload, feature_refs, make_snapshot, peak_rss_mib

VARIANTS = ("bare_count", "bare_qualify", "bare_struct", "tureen")


def _bare_sql(w: Workload, variant: str) -> str:
    src = f"read_parquet('{w.source_dir}/*.parquet')"
    ent = f"read_parquet('{w.entity_path}', file_row_number = true)"
    ttl = f"INTERVAL {w.ttl_days} DAY"
    feats = ", ".join(
        f"CASE WHEN f.event_timestamp >= e.event_timestamp - {ttl} THEN f.{c} END AS {c}"
        for c in w.feature_names
    )
    cols = f"e.account_id, e.event_timestamp, e.label, {feats}"
    if variant == "bare_count":
        return (
            f"SELECT count(*) FROM {ent} e ASOF LEFT JOIN {src} f "
            "ON e.account_id = f.account_id AND e.event_timestamp >= f.event_timestamp"
        )
    if variant == "bare_qualify":
        latest = (
            f"SELECT * FROM {src} QUALIFY row_number() OVER (PARTITION BY account_id, "
            "event_timestamp ORDER BY created_timestamp DESC NULLS LAST) = 1"
        )
        return (
            f"SELECT {cols} FROM {ent} e ASOF LEFT JOIN ({latest}) f "
            "ON e.account_id = f.account_id AND e.event_timestamp >= f.event_timestamp "
            "ORDER BY e.file_row_number"
        )
    keyed = (
        "SELECT *, {'t': event_timestamp, 'c': coalesce(created_timestamp, "
        f"'-infinity'::TIMESTAMPTZ)}} AS k FROM {src}"
    )
    return (
        f"SELECT {cols} FROM {ent} e ASOF LEFT JOIN ({keyed}) f ON e.account_id = f.account_id "
        "AND {'t': e.event_timestamp, 'c': 'infinity'::TIMESTAMPTZ} >= f.k "
        "ORDER BY e.file_row_number"
    )


def _runner(w: Workload, variant: str) -> Callable[[], Any]:
    if variant == "tureen":
        from tureen.offline.duckdb_engine import DuckDBEngine
        from tureen.offline.retrieval import get_historical_features

        engine = DuckDBEngine(w.root)
        snapshot, refs = make_snapshot(w), feature_refs(w)
        return lambda: get_historical_features(engine, snapshot, w.entity_path, refs).to_arrow()
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    query = _bare_sql(w, variant)
    if variant == "bare_count":
        return lambda: con.sql(query).fetchall()
    return lambda: con.sql(query).to_arrow_table()


def _rss_mb() -> float:
    return peak_rss_mib()


def child(root: Path, variant: str) -> None:
    """Serve timed runs on request: a line ``run`` on stdin answers ``{"s": seconds}``, a
    line ``quit`` answers the row count and peak RSS. Rounds are interleaved across variants
    by the parent, so load from other processes hits every variant alike."""
    w = ensure_workload(root)
    run = _runner(w, variant)
    base = _rss_mb()
    result = run()  # warm-up (file cache, lazy imports)
    rows = result.num_rows if hasattr(result, "num_rows") else result[0][0]
    del result
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip() == "run":
            t0 = time.perf_counter()
            result = run()
            elapsed = time.perf_counter() - t0
            del result
            print(json.dumps({"s": elapsed}), flush=True)
        else:
            break
    print(json.dumps({"rows": rows, "rss_after_imports_mb": round(base),
                      "peak_rss_mb": round(_rss_mb())}), flush=True)


def check(root: Path) -> dict[str, Any]:
    """Do tureen and both bare queries return the same table?"""
    w = ensure_workload(root)
    ours = _runner(w, "tureen")()
    out = {}
    for variant in ("bare_qualify", "bare_struct"):
        bare = _runner(w, variant)()
        out[f"same_as_{variant}"] = bool(bare.cast(ours.schema).equals(ours))
    return out


def _spawn(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                          check=True)
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


class _Child:
    def __init__(self, root: Path, variant: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--root", str(root), "--child", variant],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.times: list[float] = []
        self._ask(None)

    def _ask(self, line: str | None) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if line is not None:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        answer: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return answer

    def run(self) -> None:
        self.times.append(self._ask("run")["s"])

    def finish(self) -> dict[str, Any]:
        final = self._ask("quit")
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.stdout.close()
        self.proc.wait()
        return {**final, "seconds": self.times, "median_s": statistics.median(self.times)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, default=Path("/tmp/tureen-bench"))
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--child", choices=VARIANTS)
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    if a.child:
        child(a.root, a.child)
        return
    if a.check:
        print(json.dumps(check(a.root)))
        return
    w = ensure_workload(a.root)
    children = {v: _Child(a.root, v) for v in VARIANTS}
    for _ in range(a.reps):
        for c in children.values():
            c.run()
    results = {v: c.finish() for v, c in children.items()}
    med = {v: r["median_s"] for v, r in results.items()}
    best = {v: min(r["seconds"]) for v, r in results.items()}

    def paired(bare: str) -> float:
        """Median over rounds of tureen / bare in the same round."""
        pairs = zip(results["tureen"]["seconds"], results[bare]["seconds"], strict=True)
        return round(float(statistics.median(t / b for t, b in pairs)), 2)

    report = {
        "workload": {"feature_rows": w.entities * w.rows_per_entity, "entity_rows": w.entity_rows,
                     "features": w.features, "ttl_days": w.ttl_days},
        "median_s": {v: round(s, 3) for v, s in med.items()},
        "min_s": {v: round(s, 3) for v, s in best.items()},
        "runs_s": {v: [round(x, 3) for x in r["seconds"]] for v, r in results.items()},
        "load_average_1m": round(os.getloadavg()[0], 2),
        "peak_rss_mb": {v: r["peak_rss_mb"] for v, r in results.items()},
        "ratio_vs_bare_struct": {
            "of_medians": round(med["tureen"] / med["bare_struct"], 2),
            "median_of_paired_rounds": paired("bare_struct"),
            "of_mins": round(best["tureen"] / best["bare_struct"], 2),
        },
        "ratio_vs_bare_qualify": {
            "of_medians": round(med["tureen"] / med["bare_qualify"], 2),
            "median_of_paired_rounds": paired("bare_qualify"),
            "of_mins": round(best["tureen"] / best["bare_qualify"], 2),
        },
        "targets": {"ratio_max": 1.5, "peak_rss_mb_max": 2048},
        **_spawn(["--root", str(a.root), "--check"]),
        "reference_feast_0_67_s": {"file_dask": 62.0, "duckdb_store": 4.4},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
