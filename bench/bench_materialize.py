"""Materialize the 2M-row offline workload into SQLite, printed as JSON.

Workload (``bench/workload.py``): 100,000 accounts x 20 rows x 10 Float32 features in
Parquet. ``tureen.materialize.materialize`` over the whole period: DuckDB picks the newest
row per account, tureen encodes keys and rows and writes 100,000 rows to a fresh SQLite
store. Reported side by side in the same run:

- ``total_s``: the full ``materialize`` call (what a user waits for);
- ``engine_only_s``: draining ``DuckDBEngine.latest_rows`` alone (the offline lower bound);
- ``store_only_s``: encoding + ``SqliteOnlineStore.write`` of the already-fetched rows;
- ``raw_sqlite_insert_s``: a bare ``executemany`` of the same (key, ts, ts, value) tuples,
  sorted by key, into an empty table (the storage lower bound; no upsert condition).

Usage: ``python bench/bench_materialize.py [--root /tmp/tureen-bench] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workload import ensure_workload, make_snapshot

from tureen.materialize import materialize
from tureen.offline.duckdb_engine import DuckDBEngine
from tureen.online.encoding import encode_rows
from tureen.online.keys import encoder_for
from tureen.online.retrieval import OnlineRetrieval
from tureen.online.sqlite_store import SqliteOnlineStore

FEAST_REFERENCE_S = 39.0
TARGET_S = 5.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=os.environ.get("TUREEN_BENCH_ROOT", "/tmp/tureen-bench"))
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    t = time.perf_counter()
    w = ensure_workload(Path(args.root))
    generate_s = time.perf_counter() - t
    snap = make_snapshot(w)
    view = snap.feature_view("account_stats")
    engine = DuckDBEngine(w.root)

    totals, engine_only, store_only, raw_insert = [], [], [], []
    rows_written = 0
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            store = SqliteOnlineStore(Path(tmp) / "online.db", snap.project)
            t = time.perf_counter()
            [done] = materialize(snap, engine, store, w.start, w.end)
            totals.append(time.perf_counter() - t)
            rows_written = done.rows
            # Spot check: one account reads back PRESENT with 10 values.
            resp = OnlineRetrieval(store, lambda: snap, clock=lambda: w.end.timestamp())
            got = resp.get_online_features([f"account_stats:{f}" for f in w.feature_names],
                                           {"account_id": [42]})
            assert all(v[0] is not None for v in got.to_dict().values()), got.to_dict()
            store.close()

        t = time.perf_counter()
        table = pa.Table.from_batches(list(engine.latest_rows(view, w.start, w.end)))
        engine_only.append(time.perf_counter() - t)

        with tempfile.TemporaryDirectory() as tmp:
            store = SqliteOnlineStore(Path(tmp) / "online.db", snap.project)
            t = time.perf_counter()
            store.write(view, encoder_for(view.key_fields).encode_arrow(table), table)
            store_only.append(time.perf_counter() - t)
            store.close()

            keys = encoder_for(view.key_fields).encode_arrow(table)
            enc = encode_rows(view.features, table)
            con = sqlite3.connect(Path(tmp) / "raw.db", isolation_level=None)
            con.execute("PRAGMA journal_mode = WAL")
            con.execute("PRAGMA synchronous = NORMAL")
            con.execute("CREATE TABLE t (entity_key BLOB PRIMARY KEY, event_ts INTEGER, "
                        "created_ts INTEGER, value BLOB) WITHOUT ROWID")
            t = time.perf_counter()
            con.execute("BEGIN")
            con.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", sorted(
                zip(keys, enc.event_us, enc.created_us, enc.values, strict=True)))
            con.execute("COMMIT")
            raw_insert.append(time.perf_counter() - t)
            con.close()
    engine.close()

    total = statistics.median(totals)
    out = {
        "benchmark": "materialize_sqlite",
        "machine": {"cpus": os.cpu_count(), "sqlite": sqlite3.sqlite_version},
        "workload": {"offline_rows": w.entities * w.rows_per_entity, "entities": w.entities,
                     "features": w.features, "dtype": "Float32", "repeats": args.repeats,
                     "generate_or_reuse_s": round(generate_s, 2)},
        "rows_written": rows_written,
        "total_s": round(total, 3),
        "total_s_each": [round(x, 3) for x in totals],
        "engine_only_s": round(statistics.median(engine_only), 3),
        "store_only_s": round(statistics.median(store_only), 3),
        "raw_sqlite_insert_s": round(statistics.median(raw_insert), 3),
        "target_s": TARGET_S,
        "feast_reference_s": FEAST_REFERENCE_S,
        "speedup_vs_feast": round(FEAST_REFERENCE_S / total, 1),
        "meets_target": total <= TARGET_S,
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
