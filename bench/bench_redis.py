"""RedisOnlineStore: in-process reads and materialization, next to bare redis-py, as JSON.

Measured in the same run, against one redis-server (a private one started on a spare port
unless ``--url`` is given):

- reads, 1 entity x 10 Float32 features and 100 entities x 10 features:
  ``tureen``: ``OnlineRetrieval.get_online_features`` over RedisOnlineStore (key encoding,
  one round trip, decode, statuses, response); ``tureen_async``: the same through
  ``get_online_features_async`` (redis.asyncio); ``store_read``: ``RedisOnlineStore.read``
  alone (one round trip, commands packed by hand); ``bare``: redis-py (hiredis parser)
  ``HGET`` / a pipeline of 100 ``HGET`` of the same pre-encoded keys, plus decoding the
  values row by row — what a redis-py user writes; ``raw_socket_same_commands`` (100 entities):
  the bytes ``store_read`` sends written to a plain socket and the reply read back unparsed, the
  round trip's own floor on this machine (Redis answering 100 HMGETs included).
- materialization of the offline workload (``bench/workload.py``: 2M rows, 100k entities)
  with ``tureen.materialize.materialize`` (DuckDB engine -> Redis), split into the offline
  read and the Redis write, next to the bare write: pipelined ``HSET`` of the same encoded
  rows with no newer-wins check.

Percentiles are medians over ``--repeats`` runs. Usage:
``python bench/bench_redis.py [--calls 20000] [--repeats 3] [--url redis://...]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_online import percentiles
from bench.workload import ensure_workload, make_snapshot

from tureen.materialize import materialize
from tureen.offline.duckdb_engine import DuckDBEngine
from tureen.online.encoding import RowReader, encode_rows
from tureen.online.keys import encoder_for
from tureen.online.redis_store import RedisOnlineStore
from tureen.online.retrieval import OnlineRetrieval

TARGETS = {"one_entity_p50_us": 150.0, "hundred_entities_p50_us": 300.0,
           "materialize_2m_rows_s": 15.0}


@contextmanager
def private_redis() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found; pass --url redis://host:port/0")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
             "no", "--dir", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(200):
                try:
                    socket.create_connection(("127.0.0.1", port), 0.1).close()
                    break
                except OSError:
                    time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.kill()
            proc.wait()


async def apercentiles(fn: Callable[[int], Awaitable[object]], calls: int) -> tuple[float, float]:
    for i in range(min(calls, 500)):
        await fn(i)
    gc.collect()
    times = []
    clock = time.perf_counter_ns
    for i in range(calls):
        t = clock()
        await fn(i)
        times.append(clock() - t)
    times.sort()
    return times[len(times) // 2] / 1000, times[int(len(times) * 0.99)] / 1000


def med(runs: list[tuple[float, float]]) -> dict[str, float]:
    return {"p50_us": round(statistics.median(r[0] for r in runs), 1),
            "p99_us": round(statistics.median(r[1] for r in runs), 1)}


def bench_reads(url: str, root: Path, calls: int, repeats: int) -> dict[str, Any]:
    w = ensure_workload(root)
    snap = make_snapshot(w)
    view = snap.feature_view("account_stats")
    store = RedisOnlineStore.from_config({"url": url}, root, "bench_reads")
    rng = np.random.default_rng(1)
    cols: dict[str, Any] = {"account_id": np.arange(w.entities, dtype=np.int64)}
    for f in w.feature_names:
        cols[f] = rng.random(w.entities, dtype=np.float32)
    cols["event_timestamp"] = pa.array([datetime.now(UTC)] * w.entities,
                                       pa.timestamp("us", tz="UTC"))
    table = pa.table(cols)
    enc = encoder_for(view.key_fields)
    store.write(view, enc.encode_arrow(table), table)

    retrieval = OnlineRetrieval(store, lambda: snap)
    refs = [f"account_stats:{f}" for f in w.feature_names]
    ids = rng.integers(0, w.entities, calls).tolist()
    batches = [rng.integers(0, w.entities, 100).tolist() for _ in range(max(calls // 10, 1))]
    keys = [enc.encode_one(i) for i in ids]
    batch_keys = [[enc.encode_one(i) for i in b] for b in batches]
    rows_1 = [[{"account_id": i}] for i in ids]
    rows_100 = [{"account_id": b} for b in batches]
    bare = redis.Redis.from_url(url)
    field = view.name.encode()
    reader = RowReader(w.feature_names)
    rkeys = [store.key(k) for k in keys]
    rbatch = [[store.key(k) for k in b] for b in batch_keys]

    def bare_one(i: int) -> object:
        return reader.read(bare.hget(rkeys[i], field))  # type: ignore[arg-type]

    def bare_many(i: int) -> object:
        pipe = bare.pipeline(transaction=False)
        for k in rbatch[i % len(rbatch)]:
            pipe.hget(k, field)
        return [reader.read(v) for v in pipe.execute()]

    raw = _RawSocket(url)
    raw_many_payloads = [store._packed([(view, b)])[0] for b in batch_keys]

    def raw_many(i: int) -> object:
        return raw.roundtrip(raw_many_payloads[i % len(raw_many_payloads)])

    def store_one(i: int) -> object:
        return store.read([(view, [keys[i]])])

    def store_many(i: int) -> object:
        return store.read([(view, batch_keys[i % len(batch_keys)])])

    def tureen_one(i: int) -> object:
        return retrieval.get_online_features(refs, rows_1[i])

    def tureen_many(i: int) -> object:
        return retrieval.get_online_features(refs, rows_100[i % len(rows_100)])

    async def async_runs(n: int) -> tuple[tuple[float, float], tuple[float, float]]:
        async def one(i: int) -> object:
            return await retrieval.get_online_features_async(refs, rows_1[i])

        async def many(i: int) -> object:
            return await retrieval.get_online_features_async(refs, rows_100[i % len(rows_100)])

        try:
            return await apercentiles(one, n), await apercentiles(many, max(n // 10, 200))
        finally:
            await store.aclose()

    many_calls = max(calls // 10, 200)
    names = ["tureen_one", "store_one", "bare_one", "tureen_many", "store_many", "bare_many",
             "raw_many", "async_one", "async_many"]
    res: dict[str, list[tuple[float, float]]] = {k: [] for k in names}
    for _ in range(repeats):
        res["tureen_one"].append(percentiles(tureen_one, calls))
        res["store_one"].append(percentiles(store_one, calls))
        res["bare_one"].append(percentiles(bare_one, calls))
        res["tureen_many"].append(percentiles(tureen_many, many_calls))
        res["store_many"].append(percentiles(store_many, many_calls))
        res["bare_many"].append(percentiles(bare_many, many_calls))
        res["raw_many"].append(percentiles(raw_many, many_calls))
        a_one, a_many = asyncio.run(async_runs(calls // 2))
        res["async_one"].append(a_one)
        res["async_many"].append(a_many)
    store.delete_views([view])
    store.close()
    bare.close()
    raw.close()
    one, many = med(res["tureen_one"]), med(res["tureen_many"])
    b1, bn = med(res["bare_one"]), med(res["bare_many"])
    return {
        "one_entity": {"tureen": one, "tureen_async": med(res["async_one"]),
                       "store_read": med(res["store_one"]), "bare_hget_plus_decode": b1,
                       "ratio_p50_vs_bare": round(one["p50_us"] / b1["p50_us"], 2)},
        "hundred_entities": {"tureen": many, "tureen_async": med(res["async_many"]),
                             "store_read": med(res["store_many"]),
                             "bare_pipeline_hget_plus_decode": bn,
                             "raw_socket_same_commands": med(res["raw_many"]),
                             "ratio_p50_vs_bare": round(many["p50_us"] / bn["p50_us"], 2),
                             "ratio_p50_vs_raw_socket": round(
                                 many["p50_us"] / med(res["raw_many"])["p50_us"], 2)},
    }


class _RawSocket:
    """The lower bound of one batch read: the very bytes ``RedisOnlineStore.read`` sends (its
    packed HMGETs) written to a plain socket, and the reply read back as bytes until it is
    all in (its length learned on the first call per payload) -- no client, no parsing."""

    def __init__(self, url: str) -> None:
        hostport = url.split("//", 1)[1].split("/", 1)[0]
        host, port = hostport.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray(1 << 20)
        self.lengths: dict[int, int] = {}

    def roundtrip(self, packed: Any) -> int:
        self.sock.sendall(packed.payload)
        need = self.lengths.get(id(packed))
        if need is None:
            import hiredis

            reader, got, replies = hiredis.Reader(), 0, 0
            while replies < packed.count:
                chunk = self.sock.recv(1 << 16)
                got += len(chunk)
                reader.feed(chunk)
                while reader.gets() is not False:
                    replies += 1
            self.lengths[id(packed)] = got
            return got
        if need > len(self.buf):
            self.buf = bytearray(need)
        view, got = memoryview(self.buf), 0
        while got < need:
            got += self.sock.recv_into(view[got:])
        return got

    def close(self) -> None:
        self.sock.close()


def bench_materialize(url: str, root: Path, repeats: int) -> dict[str, Any]:
    w = ensure_workload(root)
    snap = make_snapshot(w)
    view = snap.feature_view("account_stats")
    engine = DuckDBEngine(root)
    runs: list[dict[str, float]] = []
    rows = 0
    for r in range(repeats):
        store = RedisOnlineStore.from_config({"url": url}, root, f"bench_mat_{r}")
        t = time.perf_counter()
        results = materialize(snap, engine, store, w.start, w.end)
        total = time.perf_counter() - t
        rows = sum(x.rows for x in results)
        t = time.perf_counter()
        latest = pa.Table.from_batches(list(engine.latest_rows(view, w.start, w.end)))
        offline = time.perf_counter() - t
        keys = encoder_for(view.key_fields).encode_arrow(latest)
        values = encode_rows(view.features, latest).values
        bare = redis.Redis.from_url(url)
        prefix = f"bare_{r}:".encode()
        t = time.perf_counter()
        for start in range(0, len(keys), 5000):
            pipe = bare.pipeline(transaction=False)
            for k, v in zip(keys[start:start + 5000], values[start:start + 5000], strict=True):
                pipe.hset(prefix + k, view.name, v)
            pipe.execute()
        bare_write = time.perf_counter() - t
        t = time.perf_counter()
        store.write(view, keys, latest)
        store_write = time.perf_counter() - t
        for cursor_key in bare.scan_iter(match=prefix + b"*", count=5000):
            bare.unlink(cursor_key)
        store.delete_views([view])
        store.close()
        bare.close()
        runs.append({"materialize_s": total, "offline_latest_rows_s": offline,
                     "store_write_s": store_write, "bare_pipelined_hset_s": bare_write})
    engine.close()
    out: dict[str, Any] = {k: round(statistics.median(r[k] for r in runs), 2) for k in runs[0]}
    out["source_rows"] = w.entities * w.rows_per_entity
    out["rows_written"] = rows
    out["write_ratio_vs_bare"] = round(out["store_write_s"] / out["bare_pipelined_hset_s"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--url", default=None, help="an existing Redis; default: start a private one")
    ap.add_argument("--data", default="/tmp/tureen-bench", help="workload folder (cached)")
    args = ap.parse_args()
    root = Path(args.data)

    with (private_redis() if args.url is None else _given(args.url)) as url:
        reads = bench_reads(url, root, args.calls, args.repeats)
        mat = bench_materialize(url, root, args.repeats)
        info = redis.Redis.from_url(url).info("server")
    out = {
        "benchmark": "online_redis_in_process",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "redis": info.get("redis_version"), "redis_py": redis.__version__},
        "workload": {"entities": 100_000, "features": 10, "dtype": "Float32",
                     "calls": args.calls, "repeats": args.repeats},
        **reads,
        "materialize": mat,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "targets": TARGETS,
        "meets_targets": reads["one_entity"]["tureen"]["p50_us"]
        <= TARGETS["one_entity_p50_us"]
        and reads["hundred_entities"]["tureen"]["p50_us"] <= TARGETS["hundred_entities_p50_us"]
        and mat["materialize_s"] <= TARGETS["materialize_2m_rows_s"],
    }
    print(json.dumps(out, indent=2))


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url


if __name__ == "__main__":
    main()
