"""The offline benchmark workload, shared by every benchmark that needs feature rows.

100,000 accounts x 20 rows = 2,000,000 feature rows with ten Float32 features ``f0..f9``,
event timestamps spread over 30 days and created timestamps up to an hour later, written as
Parquet under ``<root>/account_stats/``; an entity frame of 1,000,000 rows at random times
(``<root>/entity_df.parquet``); feature view TTL 2 days. Generation is deterministic (seeded)
and cached: files are only written when ``<root>/workload.json`` does not match the
parameters.

    from bench.workload import Workload, ensure_workload, make_snapshot
    w = ensure_workload(Path("/tmp/tureen-bench"))
    snapshot = make_snapshot(w)        # entity account_id (Int64), view account_stats
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tureen.definitions import Entity, FeatureView, Field, FileSource
from tureen.registry.snapshot import RegistrySnapshot
from tureen.types import Float32

START = datetime(2026, 1, 1, tzinfo=UTC)
_US = 1_000_000


@dataclass(frozen=True)
class Workload:
    root: Path
    entities: int = 100_000
    rows_per_entity: int = 20
    features: int = 10
    days: int = 30
    entity_rows: int = 1_000_000
    ttl_days: int = 2
    files: int = 4
    seed: int = 7

    @property
    def source_dir(self) -> Path:
        return self.root / "account_stats"

    @property
    def entity_path(self) -> Path:
        return self.root / "entity_df.parquet"

    @property
    def feature_names(self) -> list[str]:
        return [f"f{i}" for i in range(self.features)]

    @property
    def ttl(self) -> timedelta:
        return timedelta(days=self.ttl_days)

    @property
    def start(self) -> datetime:
        return START

    @property
    def end(self) -> datetime:
        return START + timedelta(days=self.days)

    def params(self) -> dict[str, int]:
        d = asdict(self)
        d.pop("root")
        return d


def _ts(micros: np.ndarray) -> pa.Array:
    return pa.array(micros, type=pa.timestamp("us", tz="UTC"))


def feature_rows(w: Workload) -> pa.Table:
    """All feature rows (account_id, f0..f9, event_timestamp, created_timestamp)."""
    rng = np.random.default_rng(w.seed)
    n = w.entities * w.rows_per_entity
    ids = np.repeat(np.arange(w.entities, dtype=np.int64), w.rows_per_entity)
    span = w.days * 86_400 * _US
    base = int(START.timestamp()) * _US
    event = base + rng.integers(0, span, n, dtype=np.int64)
    created = event + rng.integers(0, 3_600 * _US, n, dtype=np.int64)
    order = rng.permutation(n)  # rows arrive unsorted, as real files do
    cols: dict[str, pa.Array] = {"account_id": pa.array(ids[order])}
    for name in w.feature_names:
        cols[name] = pa.array(rng.random(n, dtype=np.float32)[order])
    cols["event_timestamp"] = _ts(event[order])
    cols["created_timestamp"] = _ts(created[order])
    return pa.table(cols)


def entity_rows(w: Workload) -> pa.Table:
    """The entity frame: account_id, event_timestamp (random over the period + 2 days), label."""
    rng = np.random.default_rng(w.seed + 1)
    base = int(START.timestamp()) * _US
    span = (w.days + 2) * 86_400 * _US
    return pa.table({
        "account_id": pa.array(rng.integers(0, w.entities, w.entity_rows, dtype=np.int64)),
        "event_timestamp": _ts(base + rng.integers(0, span, w.entity_rows, dtype=np.int64)),
        "label": pa.array(rng.integers(0, 2, w.entity_rows, dtype=np.int64)),
    })


def ensure_workload(root: Path, **overrides: int) -> Workload:
    """Write the workload under ``root`` unless an identical one is already there."""
    w = Workload(root=Path(root), **overrides)
    marker = w.root / "workload.json"
    if marker.exists() and json.loads(marker.read_text()) == w.params():
        return w
    w.source_dir.mkdir(parents=True, exist_ok=True)
    for old in w.source_dir.glob("*.parquet"):
        old.unlink()
    rows = feature_rows(w)
    per_file = -(-rows.num_rows // w.files)
    for i in range(w.files):
        part = rows.slice(i * per_file, per_file)
        pq.write_table(part, w.source_dir / f"part-{i:03d}.parquet", row_group_size=122_880)
    pq.write_table(entity_rows(w), w.entity_path)
    marker.write_text(json.dumps(w.params()))
    return w


def make_view(w: Workload) -> FeatureView:
    account = Entity("account", join_keys=["account_id"])
    return FeatureView(
        name="account_stats",
        entities=[account],
        schema=[Field(name, Float32) for name in w.feature_names],
        source=FileSource(
            path=str(w.source_dir),
            timestamp_field="event_timestamp",
            created_timestamp_column="created_timestamp",
        ),
        ttl=w.ttl,
    )


def make_snapshot(w: Workload) -> RegistrySnapshot:
    view = make_view(w)
    return RegistrySnapshot(
        project="bench",
        entities={e.name: e for e in view.entities},
        feature_views={view.name: view},
    )


def feature_refs(w: Workload) -> list[str]:
    return [f"account_stats:{name}" for name in w.feature_names]


def peak_rss_mib() -> float:
    """This process's own peak resident memory in MiB (``VmHWM``).

    Not ``ru_maxrss``: Linux carries the parent's high-water mark into a child across fork +
    exec, so a benchmark child started by a parent that generated gigabytes of data would
    report the parent's peak instead of its own.
    """
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")
