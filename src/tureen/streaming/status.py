"""What an ingester reports: one ``ViewStatus`` per stream view (``tureen ingest status``,
``/metrics``, the console). Ingesters write them to ``data/streams/<source>.status.json``
(atomically) every ``status_interval_seconds``; readers mark a file that stopped being
refreshed as ``stopped``."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

ConsumerState = Literal[
    "starting", "running", "backpressure", "broker_unavailable", "restarting", "stopped",
    "failed",
]
STATUS_DIR = Path("data") / "streams"


class ViewStatus(BaseModel):
    """One stream view as its ingester last saw it (times are UTC)."""

    view: str
    source: str
    source_kind: Literal["kafka", "push"]
    topic: str | None = None
    consumer_group: str | None = None
    state: ConsumerState = "starting"
    error: str | None = Field(default=None, description="Last error while not running.")
    lag_messages: int | None = Field(default=None, description="Messages in the topic not "
                                     "yet ingested (all partitions).")
    lag_seconds: float | None = Field(default=None, description="Age of the newest ingested "
                                      "message while more are waiting; 0 when caught up.")
    rows_per_second: float = 0.0
    rows_total: int = 0
    late_total: int = 0
    late_updated_total: int = Field(default=0, description="Late events counted in their "
                                    "windows (late_events='update'); late_total minus this "
                                    "were left out of the windows.")
    dead_letters_total: int = 0
    windows_emitted_total: int = 0
    last_event_time: datetime | None = None
    watermark: datetime | None = None
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    pid: int = Field(default_factory=os.getpid)


def micros_to_utc(us: int | None) -> datetime | None:
    return None if us is None else datetime.fromtimestamp(us / 1_000_000, UTC)


def status_path(repo_path: Path, source: str) -> Path:
    return repo_path / STATUS_DIR / f"{source}.status.json"


def write_status(repo_path: Path, source: str, views: list[ViewStatus]) -> None:
    path = status_path(repo_path, source)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps([v.model_dump(mode="json") for v in views]))
    os.replace(tmp, path)


def read_statuses(repo_path: Path, stale_after: float = 10.0) -> list[ViewStatus]:
    """Every view status the ingesters of this repo wrote; stale ones read ``stopped``."""
    out: list[ViewStatus] = []
    folder = repo_path / STATUS_DIR
    if not folder.is_dir():
        return out
    now = time.time()
    for path in sorted(folder.glob("*.status.json")):
        try:
            items = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for item in items:
            st = ViewStatus.model_validate(item)
            if now - st.updated_at.timestamp() > stale_after and st.state != "stopped":
                st = st.model_copy(update={"state": "stopped",
                                           "error": st.error or "the ingester is not running"})
            out.append(st)
    return out
