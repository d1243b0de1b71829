"""A feature repo with a KafkaSource, a latest-value view and a windowed view."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads

from tureen.store import FeatureStore
from tureen.streaming.event_log import EVENT_ID
from tureen.streaming.status import ViewStatus, read_statuses

T0 = datetime(2026, 3, 1, tzinfo=UTC)
FEATURES = """
from datetime import timedelta
from tureen import (Aggregation, Entity, Field, FileSource, Float64, Int64, KafkaSource,
                    StreamFeatureView, String)

account = Entity(name="account", join_keys=["account_id"], dtype=Int64)
tx = KafkaSource(name="tx", topic="{topic}", batch_source=FileSource(path="data/tx/"),
                 timestamp_field="ts", watermark_delay=timedelta(seconds=30))
last_tx = StreamFeatureView(name="last_tx", entities=[account], source=tx,
                            schema=[Field("amount", Float64), Field("merchant", String)])
tx_stats = StreamFeatureView(
    name="tx_stats", entities=[account], source=tx,
    schema=[Field("amount", Float64), Field("merchant", String)],
    aggregations=[
        Aggregation("amount", "sum", timedelta(minutes=10), timedelta(minutes=1)),
        Aggregation("amount", "count", timedelta(minutes=30), timedelta(minutes=1)),
        Aggregation("merchant", "count_distinct_approx", timedelta(minutes=10),
                    timedelta(minutes=1)),
    ])
"""


def make_repo(path: Path, bootstrap: str, topic: str, online: str = "",
              features: str = FEATURES) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    online = online or "online_store: {type: sqlite, path: data/online.db, busy_timeout_ms: 50}"
    (path / "tureen.yaml").write_text(textwrap.dedent(f"""\
        project: s{uuid.uuid4().hex[:10]}
        {online}
        streaming:
          bootstrap_servers: "{bootstrap}"
          flush_interval_seconds: 0.2
          status_interval_seconds: 0.2
          retry_max_seconds: 0.5
        """))
    (path / "features.py").write_text(features.replace("{topic}", topic))
    with FeatureStore(path) as store:
        store.apply()
    return path


def event(i: int, account: int, seconds: float, amount: float, merchant: str) -> dict[str, Any]:
    return {"account_id": account, "amount": amount, "merchant": merchant,
            "ts": (T0 + timedelta(seconds=seconds)).isoformat()}


class Ingester:
    """``tureen ingest`` in its own process."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(repo / "ingest.log", "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tureen", "ingest", "--repo", str(repo)],
                stdout=subprocess.DEVNULL, stderr=err, env=env)

    def kill9(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def statuses(repo: Path) -> dict[str, ViewStatus]:
    return {s.view: s for s in read_statuses(repo, stale_after=60)}


def wait_for(cond: Any, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def caught_up(repo: Path, rows: int, pid: int | None = None) -> bool:
    st = statuses(repo).get("last_tx")
    return (st is not None and (pid is None or st.pid == pid) and st.lag_messages == 0
            and st.rows_total + st.dead_letters_total >= rows)


def online_values(repo: Path, accounts: list[int]) -> dict[str, Any]:
    with FeatureStore(repo) as store:
        out = {}
        for view in ("last_tx", "tx_stats"):
            v = store.get_feature_view(view)
            resp = store.get_online_features([f"{view}:{f}" for f in v.feature_names],
                                             [{"account_id": a} for a in accounts])
            out[view] = resp.to_dict()
        return out


def log_rows(repo: Path, sub: str = "") -> list[dict[str, Any]]:
    path = repo / "data" / "tx" / sub
    if not path.exists():
        return []
    table: pa.Table = pads.dataset(str(path), format="parquet",
                                   exclude_invalid_files=True).to_table()
    rows = table.to_pylist()
    if not sub:
        uniq = {r[EVENT_ID]: r for r in rows}
        rows = [{k: v for k, v in r.items() if k != EVENT_ID} for r in uniq.values()]
        return sorted(rows, key=lambda r: (r["event_timestamp"], r["account_id"], r["amount"]))
    # one row per window: the newest version (late events rewrite windows: later created)
    uniq = {(r["account_id"], r["event_timestamp"]): r
            for r in sorted(rows, key=lambda r: r["created_timestamp"])}
    return sorted(uniq.values(), key=lambda r: (r["account_id"], r["event_timestamp"]))
