"""A multi-view feature-service read vs the per-service-vector lower bound, as JSON.

Issue 17 asks for a precomputed per-service vector: one stored row per entity for a whole
feature service instead of one per view. Its lower bound is the same features stored in
ONE view, so this measures, in one run, ``OnlineRetrieval.get_online_features`` of

- ``views_5x10`` / ``views_25x2``: a FeatureService of V views x F Float32 features
  (V = 5 and 25, 50 features in all; every view has a 1-day TTL, so per-view TTL and
  statuses are checked as in production), and
- ``one_view_1x50``: a FeatureService of one view holding the same 50 features,

for 1 and 100 entities, on SQLite (one UNION ALL statement for all views) and, if a
Redis answers at ``--redis`` (default 127.0.0.1:6379), on Redis (one HMGET per entity of
the entity's hash-tagged hash, one round trip). Each configuration gets its own store
(SQLite file / Redis key prefix); what is written to Redis is deleted at the end.
p50 is the median over ``--repeats`` rounds; ``ratio_vs_one_view`` is (a)/(b).
Usage: ``python bench/bench_service_read.py [--entities 10000] [--calls 5000] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_online import median_of, percentiles

from tureen.definitions import Entity, FeatureService, FeatureView, Field, FileSource
from tureen.online.keys import encoder_for
from tureen.online.redis_store import RedisOnlineStore
from tureen.online.retrieval import OnlineRetrieval
from tureen.online.sqlite_store import SqliteOnlineStore
from tureen.online.vectors import sync
from tureen.registry.snapshot import RegistrySnapshot
from tureen.types import Float32

SHAPES = {"views_5x10": (5, 10), "views_25x2": (25, 2), "one_view_1x50": (1, 50)}
BOUND = "one_view_1x50"


def service_snapshot(name: str, n_views: int, per_view: int, vector: bool = False
                     ) -> RegistrySnapshot:
    """n_views views of per_view features each (f0..f49 across them) and one service."""
    account = Entity("account", join_keys=["account_id"])
    views = [FeatureView(f"{name}_v{v}", [account],
                         [Field(f"f{v * per_view + j}", Float32) for j in range(per_view)],
                         FileSource("unused.parquet"), ttl=timedelta(days=1))
             for v in range(n_views)]
    svc = FeatureService(name, views, online_vector=vector)
    return RegistrySnapshot(project="bench", entities={"account": account},
                            feature_views={fv.name: fv for fv in views},
                            feature_services={name: svc})


def fill(store: Any, snap: RegistrySnapshot, entities: int) -> None:
    rng = np.random.default_rng(7)
    ids = pa.array(np.arange(entities, dtype=np.int64))
    now = pa.array([datetime.now(UTC)] * entities, pa.timestamp("us", tz="UTC"))
    for view in snap.feature_views.values():
        names = ["account_id", *(f.name for f in view.features), "event_timestamp"]
        arrays = [ids, *(pa.array(rng.random(entities, dtype=np.float32))
                         for _ in view.features), now]
        table = pa.Table.from_arrays(arrays, names=names)
        store.write(view, encoder_for(view.key_fields).encode_arrow(table), table)


def reads(rt: OnlineRetrieval, service: str, rows: list[Any]) -> Callable[[int], object]:
    return lambda i: rt.get_online_features(service, rows[i % len(rows)])


def measure(stores: dict[str, tuple[Any, RegistrySnapshot]], entities: int, calls: int,
            repeats: int) -> dict[str, Any]:
    rng = np.random.default_rng(2)
    one = [[{"account_id": int(i)}] for i in rng.integers(0, entities, calls)]
    hundred = [{"account_id": rng.integers(0, entities, 100).tolist()}
               for _ in range(max(calls // 10, 200))]
    runs: dict[tuple[str, str], list[tuple[float, float]]] = {}
    retrievals = {name: OnlineRetrieval(store, lambda s=snap: s)  # type: ignore[misc]
                  for name, (store, snap) in stores.items()}
    for name, rt in retrievals.items():  # every feature of every row is found and fresh
        for rows in (one[0], hundred[0]):
            statuses = rt.get_online_features(name, rows).statuses
            assert len(statuses) >= 50 and all(
                s.name == "PRESENT" for col in statuses.values() for s in col), name
    for _ in range(repeats):  # each round measures every configuration
        for name, rt in retrievals.items():
            runs.setdefault((name, "one_entity"), []).append(
                percentiles(reads(rt, name, one), calls))
            runs.setdefault((name, "hundred_entities"), []).append(
                percentiles(reads(rt, name, hundred), len(hundred)))
    out: dict[str, Any] = {}
    for size in ("one_entity", "hundred_entities"):
        meds = {name: median_of(runs[(name, size)]) for name in stores}
        bound = meds[BOUND]["p50_us"]
        out[size] = {name: {**m, "ratio_vs_one_view": round(m["p50_us"] / bound, 2)}
                     for name, m in meds.items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entities", type=int, default=10_000)
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = ap.parse_args()
    snaps = {name: service_snapshot(name, v, f) for name, (v, f) in SHAPES.items()}
    load_before = [round(x, 2) for x in os.getloadavg()]
    out: dict[str, Any] = {
        "benchmark": "service_read_multi_view_vs_one_view",
        "note": "sqlite <shape>_union_all: multi-view read before packed reads; <shape>: "
                "packed per-view read; <shape>_vector: per-service vector (online_vector)",
        "workload": {"entities": args.entities, "features": 50, "dtype": "Float32",
                     "shapes_views_x_features": SHAPES, "calls": args.calls,
                     "repeats": args.repeats},
    }
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_snaps = dict(snaps)
        for name, (v, f) in SHAPES.items():
            if v > 1:
                sqlite_snaps[f"{name}_union_all"] = service_snapshot(f"{name}_union_all", v, f)
                sqlite_snaps[f"{name}_vector"] = service_snapshot(f"{name}_vector", v, f, True)
        sqlite = {name: (SqliteOnlineStore(Path(tmp) / f"{name}.db", "bench"), snap)
                  for name, snap in sqlite_snaps.items()}
        for name, (store, snap) in sqlite.items():
            fill(store, snap, args.entities)
            if name.endswith("_union_all"):
                store._packed_reads = False  # the read as it was: UNION ALL, tuple per row
            sync(store, snap)  # the vector of a service that asks for one, from the views
        out["sqlite"] = measure(sqlite, args.entities, args.calls, args.repeats)
        for store, _ in sqlite.values():
            store.close()
    try:
        redis.Redis.from_url(args.redis, socket_connect_timeout=1).ping()
    except redis.RedisError as e:
        out["redis"] = f"skipped: {args.redis} does not answer ({e})"
    else:
        rstores = {name: (RedisOnlineStore.from_config(
            {"url": args.redis}, Path("."), f"bench_svcvec_{name}"), snap)
            for name, snap in snaps.items()}
        try:
            for rstore, snap in rstores.values():
                fill(rstore, snap, args.entities)
            out["redis"] = measure(rstores, args.entities, args.calls, args.repeats)
        finally:
            left = 0
            for rstore, snap in rstores.values():
                rstore.delete_views(list(snap.feature_views.values()))
                left += sum(1 for _ in rstore._project_keys())
                rstore.close()
            out["redis_keys_left"] = left
    out["load_average_before"] = load_before
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
