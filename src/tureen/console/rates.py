"""Per-version request rate and latency of a deployment over time, from the status files
every serving worker writes about once a second (``tureen.deployments.status``).

Samples are taken when someone looks (a page or a live stream), at most once a second per
deployment, and kept for the last ``KEEP`` samples; a rate is the difference of two
cumulative counts over the time between them (a restarted worker starts from zero again).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tureen.deployments.status import read_status

KEEP = 300
MIN_INTERVAL = 1.0


@dataclass
class Sample:
    at: float
    versions: dict[str, dict[str, float]]  # version -> requests, errors, p50, p99 (summed/max)


@dataclass
class Series:
    samples: deque[Sample] = field(default_factory=lambda: deque(maxlen=KEEP))
    workers: list[dict[str, Any]] = field(default_factory=list)


def aggregate(workers: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for w in workers:
        for v, s in (w.get("versions") or {}).items():
            agg = out.setdefault(str(v), {"requests": 0.0, "errors": 0.0, "p50_seconds": 0.0,
                                          "p99_seconds": 0.0})
            agg["requests"] += float(s.get("requests", 0))
            agg["errors"] += float(s.get("errors", 0))
            agg["p50_seconds"] = max(agg["p50_seconds"], float(s.get("p50_seconds", 0)))
            agg["p99_seconds"] = max(agg["p99_seconds"], float(s.get("p99_seconds", 0)))
    return out


class RateSampler:
    def __init__(self, repo_path: Path) -> None:
        self.repo_path = repo_path
        self._series: dict[str, Series] = {}
        self._lock = threading.Lock()

    def sample(self, deployment: str) -> Series:
        with self._lock:
            series = self._series.setdefault(deployment, Series())
            last = series.samples[-1].at if series.samples else 0.0
        now = time.time()
        if now - last >= MIN_INTERVAL:
            workers = read_status(self.repo_path, deployment)
            with self._lock:
                series.workers = workers
                series.samples.append(Sample(now, aggregate(workers)))
        return series

    def points(self, deployment: str) -> dict[str, list[dict[str, float]]]:
        """version -> [{at, rate, p50_ms, p99_ms}] from consecutive samples."""
        series = self.sample(deployment)
        with self._lock:
            samples = list(series.samples)
        out: dict[str, list[dict[str, float]]] = {}
        for prev, cur in itertools.pairwise(samples):
            dt = cur.at - prev.at
            for v, s in cur.versions.items():
                before = prev.versions.get(v, {}).get("requests", 0.0)
                delta = s["requests"] - before
                rate = delta / dt if dt > 0 and delta >= 0 else 0.0
                out.setdefault(v, []).append({
                    "at": cur.at, "rate": rate, "p50_ms": s["p50_seconds"] * 1000,
                    "p99_ms": s["p99_seconds"] * 1000})
        return out
