"""In-process get_online_features on SQLite vs the bare lower bound, printed as JSON.

Workload: 100,000 entities x 10 Float32 features in one view, stored through
SqliteOnlineStore (an integer-keyed table: one Int64 join key). Reads of 1, 100 and 1,000
entities. Measured in the same run:

- ``tureen``: ``OnlineRetrieval.get_online_features`` (resolve-cache hit, key encoding,
  read, decode, TTL/status bookkeeping, response object);
- ``raw``: a prepared ``sqlite3`` SELECT of the same row(s) by key (``entity_id = ?`` /
  ``IN (...)`` of the sorted distinct keys) plus decoding the stored bytes row by row —
  nothing else;
- ``raw_packed_sql`` (100 and 1,000 entities): the lower bound of the store's batch read:
  the one aggregate query it runs (the sorted keys as a JSON array in, the rows back in one
  blob), without sorting the keys, decoding or anything else;
- async: ``get_online_features_async`` calling the SQLite read inline vs in a worker thread
  (``asyncio.to_thread``), to justify the inline default;
- threads: 4 reader threads with a connection per thread vs one connection behind a lock.

Each measurement is repeated (``--repeats``) and the median of the per-repeat percentiles
is reported. Usage: ``python bench/bench_online.py [--calls 20000] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from tureen.definitions import Entity, FeatureView, Field, FileSource
from tureen.online.encoding import RowReader, encode_rows
from tureen.online.keys import encoder_for
from tureen.online.retrieval import OnlineRetrieval
from tureen.online.sqlite_store import SqliteOnlineStore
from tureen.registry.snapshot import RegistrySnapshot
from tureen.types import Float32

ENTITIES = 100_000
FEATURES = [f"f{i}" for i in range(10)]
FEAST_REFERENCE_US = {"one_entity_p50": 223.0, "hundred_entities_p50": 8600.0}
TARGETS_US = {"one_entity_p50": 25.0, "one_entity_p99": 100.0, "hundred_entities_p50": 150.0,
              "thousand_entities_p50": 1000.0}


def build(root: Path) -> tuple[SqliteOnlineStore, FeatureView, RegistrySnapshot]:
    account = Entity("account", join_keys=["account_id"])
    view = FeatureView("account_stats", [account], [Field(f, Float32) for f in FEATURES],
                       FileSource("unused.parquet"))
    snap = RegistrySnapshot(project="bench", entities={"account": account},
                            feature_views={view.name: view})
    store = SqliteOnlineStore(root / "online.db", "bench")
    rng = np.random.default_rng(1)
    cols: dict[str, Any] = {"account_id": np.arange(ENTITIES, dtype=np.int64)}
    for f in FEATURES:
        cols[f] = rng.random(ENTITIES, dtype=np.float32)
    cols["event_timestamp"] = pa.array([datetime.now(UTC)] * ENTITIES,
                                       pa.timestamp("us", tz="UTC"))
    table = pa.table(cols)
    store.write(view, encoder_for(view.key_fields).encode_arrow(table), table)
    return store, view, snap


def percentiles(fn: Callable[[int], object], calls: int) -> tuple[float, float]:
    """(p50, p99) in µs of ``fn(i)`` over ``calls`` calls."""
    for i in range(min(calls, 500)):  # warm caches and statement cache
        fn(i)
    gc.collect()
    times = []
    clock = time.perf_counter_ns
    for i in range(calls):
        t = clock()
        fn(i)
        times.append(clock() - t)
    times.sort()
    return times[len(times) // 2] / 1000, times[int(len(times) * 0.99)] / 1000


def median_of(runs: list[tuple[float, float]]) -> dict[str, float]:
    return {"p50_us": round(statistics.median(r[0] for r in runs), 2),
            "p99_us": round(statistics.median(r[1] for r in runs), 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    calls, repeats = args.calls, args.repeats

    with tempfile.TemporaryDirectory() as tmp:
        store, view, snap = build(Path(tmp))
        retrieval = OnlineRetrieval(store, lambda: snap)
        refs = [f"account_stats:{f}" for f in FEATURES]
        rng = np.random.default_rng(2)
        ids = rng.integers(0, ENTITIES, calls).tolist()
        batches = [rng.integers(0, ENTITIES, 100).tolist() for _ in range(max(calls // 10, 1))]
        big = [rng.integers(0, ENTITIES, 1000).tolist() for _ in range(max(calls // 100, 1))]
        rows_1 = [[{"account_id": i}] for i in ids]
        rows_100 = [{"account_id": b} for b in batches]
        rows_1000 = [{"account_id": b} for b in big]

        raw = sqlite3.connect(Path(tmp) / "online.db", check_same_thread=False)
        for pragma in store.pragmas:  # the same tuning: the bound is the engine, not config
            raw.execute(pragma)
        reader = RowReader(FEATURES)
        table = store.table(view)
        layout = store._layout(store._conn(), view)
        assert layout is not None and layout.column == "entity_id"
        one_sql = f"SELECT value FROM {table} WHERE entity_id = ?"

        def in_sql(n: int) -> str:
            return f"SELECT entity_id, value FROM {table} WHERE entity_id IN ({','.join('?' * n)})"

        def raw_one(i: int) -> object:
            return reader.read(raw.execute(one_sql, (ids[i],)).fetchone()[0])

        def raw_batch(ks: list[int]) -> object:
            unique = sorted(set(ks))  # sorted: SQLite's IN walks the index in order
            found: dict[int, bytes] = {}
            for start in range(0, len(unique), 1000):
                part = unique[start:start + 1000]
                found.update(raw.execute(in_sql(len(part)), part).fetchall())
            return [reader.read(found[k]) for k in ks]

        packed_sql = ("SELECT CAST(group_concat(t.value, '') AS BLOB), "
                      "group_concat(CASE WHEN t.value IS NULL THEN j.key END) FROM json_each(?) "
                      f"AS j LEFT JOIN {table} AS t ON t.entity_id = j.value")
        sorted_json = {100: [json.dumps(sorted(k)) for k in batches],
                       1000: [json.dumps(sorted(k)) for k in big]}

        def raw_packed(size: int) -> Callable[[int], object]:
            texts = sorted_json[size]
            return lambda i: raw.execute(packed_sql, (texts[i % len(texts)],)).fetchone()

        def raw_many(i: int) -> object:
            return raw_batch(batches[i % len(batches)])

        def raw_thousand(i: int) -> object:
            return raw_batch(big[i % len(big)])

        def tureen_thousand(i: int) -> object:
            return retrieval.get_online_features(refs, rows_1000[i % len(rows_1000)])

        def tureen_one(i: int) -> object:
            return retrieval.get_online_features(refs, rows_1[i])

        def tureen_many(i: int) -> object:
            return retrieval.get_online_features(refs, rows_100[i % len(rows_100)])

        def tureen_many_json(i: int) -> object:
            return retrieval.get_online_features(refs, rows_100[i % len(rows_100)]).to_feast_json()

        many_calls = max(calls // 10, 200)
        big_calls = max(calls // 100, 100)
        res: dict[str, list[tuple[float, float]]] = {k: [] for k in (
            "tureen_one", "raw_one", "tureen_many", "raw_many", "tureen_many_json",
            "tureen_thousand", "raw_thousand", "async_inline", "async_thread",
            "packed_sql_many", "packed_sql_thousand")}
        for _ in range(repeats):
            res["tureen_thousand"].append(percentiles(tureen_thousand, big_calls))
            res["raw_thousand"].append(percentiles(raw_thousand, big_calls))
            res["packed_sql_thousand"].append(percentiles(raw_packed(1000), big_calls))
            res["tureen_one"].append(percentiles(tureen_one, calls))
            res["raw_one"].append(percentiles(raw_one, calls))
            res["tureen_many"].append(percentiles(tureen_many, many_calls))
            res["raw_many"].append(percentiles(raw_many, many_calls))
            res["packed_sql_many"].append(percentiles(raw_packed(100), many_calls))
            res["tureen_many_json"].append(percentiles(tureen_many_json, many_calls))
            res["async_inline"].append(asyncio.run(_async_bench(retrieval, refs, rows_1,
                                                                calls // 4)))
            threaded = OnlineRetrieval(store, lambda: snap, offload_sync_reads=True)
            res["async_thread"].append(asyncio.run(_async_bench(threaded, refs, rows_1,
                                                                calls // 4)))
        decode = _decode_bench(raw.execute(one_sql, (ids[0],)).fetchone()[0], reader)
        threads = _thread_bench(Path(tmp) / "online.db", table, ids, reader, store.pragmas)
        threads.update(_reads_during_write(store, view, ids, reader))
        store.close()
        raw.close()

    one, raw1 = median_of(res["tureen_one"]), median_of(res["raw_one"])
    many, rawn = median_of(res["tureen_many"]), median_of(res["raw_many"])
    thousand, raw1000 = median_of(res["tureen_thousand"]), median_of(res["raw_thousand"])
    out = {
        "benchmark": "online_sqlite_in_process",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "sqlite": sqlite3.sqlite_version},
        "workload": {"entities": ENTITIES, "features": len(FEATURES), "dtype": "Float32",
                     "calls": calls, "repeats": repeats},
        "one_entity": {"tureen": one, "raw_select_plus_decode": raw1,
                       "overhead_ratio_p50": round(one["p50_us"] / raw1["p50_us"], 2)},
        "hundred_entities": {"tureen": many, "raw_select_plus_decode": rawn,
                             "tureen_plus_feast_json": median_of(res["tureen_many_json"]),
                             "raw_packed_sql": median_of(res["packed_sql_many"]),
                             "overhead_ratio_p50": round(many["p50_us"] / rawn["p50_us"], 2)},
        "thousand_entities": {"tureen": thousand, "raw_select_plus_decode": raw1000,
                              "raw_packed_sql": median_of(res["packed_sql_thousand"]),
                              "overhead_ratio_p50": round(thousand["p50_us"]
                                                          / raw1000["p50_us"], 2)},
        "decode_one_row_10_float32_ns": decode,
        "async_one_entity": {"inline_read": median_of(res["async_inline"]),
                             "read_in_thread": median_of(res["async_thread"])},
        "threads_4_readers": threads,
        "targets_us": TARGETS_US,
        "feast_reference_us": FEAST_REFERENCE_US,
        "speedup_vs_feast_p50": {
            "one_entity": round(FEAST_REFERENCE_US["one_entity_p50"] / one["p50_us"], 1),
            "hundred_entities": round(FEAST_REFERENCE_US["hundred_entities_p50"]
                                      / many["p50_us"], 1),
        },
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "meets_targets": one["p50_us"] <= TARGETS_US["one_entity_p50"]
        and one["p99_us"] <= TARGETS_US["one_entity_p99"]
        and many["p50_us"] <= TARGETS_US["hundred_entities_p50"]
        and thousand["p50_us"] <= TARGETS_US["thousand_entities_p50"],
    }
    print(json.dumps(out, indent=2))


async def _async_bench(retrieval: OnlineRetrieval, refs: list[str],
                       rows: list[list[dict[str, int]]], calls: int) -> tuple[float, float]:
    for i in range(200):
        await retrieval.get_online_features_async(refs, rows[i])
    gc.collect()
    times = []
    clock = time.perf_counter_ns
    for i in range(calls):
        t = clock()
        await retrieval.get_online_features_async(refs, rows[i])
        times.append(clock() - t)
    times.sort()
    return times[len(times) // 2] / 1000, times[int(len(times) * 0.99)] / 1000


def _decode_bench(row: bytes, reader: RowReader, n: int = 200_000) -> dict[str, float]:
    """ns per decode of one stored row: tureen's format vs orjson and pickle of the same
    values (pickle is only a speed reference: it is never used, a shared store must not
    become code execution)."""
    import pickle

    import orjson

    ev, values = reader.read(row)
    as_json = orjson.dumps({"event_ts": ev, "created_ts": ev,
                            "values": dict(zip(FEATURES, values, strict=True))})
    as_pickle = pickle.dumps((ev, ev, tuple(values)))
    out: dict[str, float] = {}
    for name, fn, arg in (("tureen_row_reader", reader.read, row),
                          ("orjson_loads", orjson.loads, as_json),
                          ("pickle_loads", pickle.loads, as_pickle)):
        t = time.perf_counter_ns()
        for _ in range(n):
            fn(arg)
        out[name] = round((time.perf_counter_ns() - t) / n, 1)
    out["row_bytes_tureen"] = len(row)
    out["row_bytes_json"] = len(as_json)
    return out


def _thread_bench(path: Path, table: str, keys: list[int], reader: RowReader,
                  pragmas: tuple[str, ...], threads: int = 4, per_thread: int = 5000
                  ) -> dict[str, float]:
    """Reads per second with a connection per thread vs one shared connection + lock."""
    sql = f"SELECT value FROM {table} WHERE entity_id = ?"

    def connect() -> sqlite3.Connection:
        con = sqlite3.connect(path, check_same_thread=False)
        for pragma in pragmas:
            con.execute(pragma)
        return con

    shared = connect()
    lock = threading.Lock()

    def per_thread_conn(offset: int) -> None:
        con = connect()
        for i in range(per_thread):
            reader.read(con.execute(sql, (keys[(offset + i) % len(keys)],)).fetchone()[0])
        con.close()

    def shared_conn(offset: int) -> None:
        for i in range(per_thread):
            with lock:
                row = shared.execute(sql, (keys[(offset + i) % len(keys)],)).fetchone()
            reader.read(row[0])

    out: dict[str, float] = {}
    for name, fn in (("connection_per_thread", per_thread_conn),
                     ("shared_connection_with_lock", shared_conn)):
        ts = [threading.Thread(target=fn, args=(k * per_thread,)) for k in range(threads)]
        t = time.perf_counter()
        for th in ts:
            th.start()
        for th in ts:
            th.join()
        out[f"{name}_reads_per_s"] = round(threads * per_thread / (time.perf_counter() - t))
    shared.close()
    return out


def _reads_during_write(store: SqliteOnlineStore, view: FeatureView, keys: list[int],
                        reader: RowReader) -> dict[str, float]:
    """Max read latency (µs) while another thread writes all 100k rows, for a connection per
    thread (WAL: readers do not wait for the writer) vs one connection behind a lock."""
    rng = np.random.default_rng(5)
    cols: dict[str, Any] = {"account_id": np.arange(ENTITIES, dtype=np.int64)}
    for f in FEATURES:
        cols[f] = rng.random(ENTITIES, dtype=np.float32)
    cols["event_timestamp"] = pa.array([datetime.now(UTC)] * ENTITIES,
                                       pa.timestamp("us", tz="UTC"))
    table = pa.table(cols)
    all_keys = encoder_for(view.key_fields).encode_arrow(table)
    sql = f"SELECT value FROM {store.table(view)} WHERE entity_id = ?"
    out: dict[str, float] = {}

    def measure(write: Callable[[], object], read: Callable[[int], bytes]) -> float:
        done = threading.Event()

        def writer() -> None:
            write()
            done.set()

        worst, i = 0, 0
        th = threading.Thread(target=writer)
        th.start()
        while not done.is_set():
            t = time.perf_counter_ns()
            reader.read(read(keys[i % len(keys)]))
            worst = max(worst, time.perf_counter_ns() - t)
            i += 1
        th.join()
        return round(worst / 1000, 1)

    own = sqlite3.connect(store.path, check_same_thread=False)
    out["max_read_us_during_100k_write_connection_per_thread"] = measure(
        lambda: store.write(view, all_keys, table),
        lambda k: own.execute(sql, (k,)).fetchone()[0],
    )
    shared = sqlite3.connect(store.path, check_same_thread=False, isolation_level=None)
    lock = threading.Lock()
    enc = encode_rows(view.features, table)
    upsert = (f"INSERT OR REPLACE INTO {store.table(view)} (entity_id, event_ts, created_ts, "
              "value) VALUES (?, ?, ?, ?)")

    def shared_write() -> None:
        with lock:
            shared.execute("BEGIN IMMEDIATE")
            shared.executemany(upsert, zip(range(ENTITIES), enc.event_us, enc.created_us,
                                           enc.values, strict=True))
            shared.execute("COMMIT")

    def shared_read(k: int) -> bytes:
        with lock:
            row: bytes = shared.execute(sql, (k,)).fetchone()[0]
        return row

    out["max_read_us_during_100k_write_shared_connection_with_lock"] = measure(
        shared_write, shared_read)
    own.close()
    shared.close()
    return out


if __name__ == "__main__":
    main()
