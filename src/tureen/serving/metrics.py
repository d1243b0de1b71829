"""Prometheus metrics for the model server, aggregated across worker processes.

Each worker keeps counters, gauges and histograms in memory and, when ``share_dir`` is set,
writes a JSON snapshot there; a scrape of any worker renders the sum over all snapshots.
Values kept elsewhere (an inference logger's counts, updated by its own thread) are read by
collectors (``add_collector``) on the serving thread just before every snapshot.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

# name -> (type, help, label names, buckets)
FAMILIES: dict[str, tuple[str, str, tuple[str, ...], Sequence[float]]] = {
    "tureen_requests_total": (
        "counter", "Inference requests by model, version, protocol and outcome.",
        ("model", "version", "protocol", "status"), ()),
    "tureen_request_duration_seconds": (
        "histogram", "Time per request and per stage (preprocess, predict, postprocess, total; "
        "success: total of successful requests; queue: wait for a batch).",
        ("model", "version", "stage"), LATENCY_BUCKETS),
    "tureen_inferences_total": (
        "counter", "Inferences of successful requests (the rows of a batching model's request).",
        ("model", "version"), ()),
    "tureen_executions_total": (
        "counter", "Model executions (predict calls) by the number of rows they ran.",
        ("model", "version", "batch_size"), ()),
    "tureen_execution_seconds_total": (
        "counter", "Time spent in model executions by the number of rows they ran.",
        ("model", "version", "batch_size"), ()),
    "tureen_last_inference_timestamp_seconds": (
        "gauge", "When the model last answered a request (Unix time; the latest over workers).",
        ("model", "version"), ()),
    "tureen_inflight_requests": (
        "gauge", "Inference requests being processed.", ("model",), ()),
    "tureen_batch_size": (
        "histogram", "Rows per predict call of models with adaptive batching.",
        ("model", "version"), BATCH_BUCKETS),
    "tureen_deployment_requests_total": (
        "counter", "Requests of a deployment by the model version that answered (main or "
        "canary) and outcome.", ("deployment", "version", "status"), ()),
    "tureen_deployment_request_duration_seconds": (
        "histogram", "Time per request of a deployment by the model version that answered.",
        ("deployment", "version"), LATENCY_BUCKETS),
    "tureen_inference_log_dropped_total": (
        "counter", "Inference log records lost, by deployment, sink (parquet, kafka, "
        "cloudevents) and reason: queue_full (the logger's queue was full), write_failed (the "
        "sink failed, or was backing off after a failure, or a record could not be converted).",
        ("deployment", "sink", "reason"), ()),
}


# Other parts of the process that export metrics of their own (e.g. the stream ingesters'
# status): each returns Prometheus text appended to every scrape.
EXTRA_RENDERERS: list[Callable[[], str]] = []


def add_renderer(render: Callable[[], str]) -> None:
    if render not in EXTRA_RENDERERS:
        EXTRA_RENDERERS.append(render)


@runtime_checkable
class ReportsMetrics(Protocol):
    """A served model that records metrics of its own (e.g. a deployment's per-version
    counts); the data plane hands it its ``Metrics`` when the model is registered."""

    def bind_metrics(self, metrics: Metrics) -> None: ...

Key = tuple[str, tuple[str, ...]]
#: families summed over workers by their latest value instead
_MAX_FAMILIES = frozenset(("tureen_last_inference_timestamp_seconds",))


class Metrics:
    def __init__(self, share_dir: str | Path | None = None) -> None:
        self._values: dict[Key, float] = {}
        self._hist: dict[Key, list[float]] = {}  # bucket counts..., sum, count
        self._share = Path(share_dir) if share_dir else None
        self._last_write = 0.0
        self._collectors: list[Callable[[Metrics], None]] = []

    def add_collector(self, collect: Callable[[Metrics], None]) -> None:
        """Call ``collect(self)`` before every snapshot (it ``set``s values kept elsewhere)."""
        if collect not in self._collectors:
            self._collectors.append(collect)

    def inc(self, name: str, labels: tuple[str, ...], value: float = 1.0) -> None:
        key = (name, labels)
        self._values[key] = self._values.get(key, 0.0) + value

    def set(self, name: str, labels: tuple[str, ...], value: float) -> None:
        self._values[(name, labels)] = value

    def observe(self, name: str, labels: tuple[str, ...], value: float, times: int = 1) -> None:
        """``value`` observed ``times`` times (e.g. a batch's predict time, once per request)."""
        key = (name, labels)
        h = self._hist.get(key)
        buckets = FAMILIES[name][3]
        if h is None:
            h = self._hist[key] = [0.0] * (len(buckets) + 2)
        i = bisect.bisect_left(buckets, value)
        if i < len(buckets):
            h[i] += times
        h[-2] += value * times
        h[-1] += times

    def snapshot(self) -> dict[str, Any]:
        for collect in self._collectors:
            try:
                collect(self)
            except Exception:  # one broken collector must not stop the metrics of the rest
                log.exception("metrics collector %r failed", collect)
        return {
            "values": [[k[0], list(k[1]), v] for k, v in self._values.items()],
            "hist": [[k[0], list(k[1]), h] for k, h in self._hist.items()],
        }

    def write_snapshot(self, min_interval: float = 0.0) -> None:
        if self._share is None:
            return
        now = time.monotonic()
        if now - self._last_write < min_interval:
            return
        self._last_write = now
        self._share.mkdir(parents=True, exist_ok=True)
        tmp = self._share / f".{os.getpid()}.tmp"
        tmp.write_text(json.dumps(self.snapshot()))
        tmp.replace(self._share / f"{os.getpid()}.json")

    def remove_snapshot(self) -> None:
        if self._share is not None:
            (self._share / f"{os.getpid()}.json").unlink(missing_ok=True)

    def aggregate(self) -> tuple[dict[Key, float], dict[Key, list[float]]]:
        """Every worker's counters, gauges and histograms combined (counters summed,
        histogram buckets added, "latest" gauges maxed)."""
        snaps = [self.snapshot()]
        if self._share is not None:
            self.write_snapshot()
            snaps = []
            for p in sorted(self._share.glob("*.json")):
                try:
                    snaps.append(json.loads(p.read_text()))
                except (OSError, ValueError):
                    continue  # a worker is replacing its file; its numbers come next scrape
        values: dict[Key, float] = {}
        hist: dict[Key, list[float]] = {}
        for s in snaps:
            for name, labels, v in s["values"]:
                k = (name, tuple(labels))
                if name in _MAX_FAMILIES:
                    values[k] = max(values.get(k, v), v)
                else:
                    values[k] = values.get(k, 0.0) + v
            for name, labels, h in s["hist"]:
                k = (name, tuple(labels))
                acc = hist.setdefault(k, [0.0] * len(h))
                for i, x in enumerate(h):
                    acc[i] += x
        return values, hist

    def render(self) -> str:
        """Prometheus text format, summed over every worker's snapshot."""
        return _render(*self.aggregate()) + "".join(r() for r in EXTRA_RENDERERS)


def _labels(names: tuple[str, ...], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _fmt(x: float) -> str:
    return str(int(x)) if x == int(x) else repr(x)


def _render(values: dict[Key, float], hist: dict[Key, list[float]]) -> str:
    lines: list[str] = []
    for name, (kind, help_, label_names, buckets) in FAMILIES.items():
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")
        if kind != "histogram":
            for (n, lv), v in sorted(values.items()):
                if n == name:
                    lines.append(f"{name}{_labels(label_names, lv)} {_fmt(v)}")
            continue
        for (n, lv), h in sorted(hist.items()):
            if n != name:
                continue
            cum = 0.0
            for b, c in zip(buckets, h, strict=False):
                cum += c
                le = 'le="' + str(b) + '"'
                lines.append(f"{name}_bucket{_labels(label_names, lv, le)} {_fmt(cum)}")
            inf = 'le="+Inf"'
            lines.append(f"{name}_bucket{_labels(label_names, lv, inf)} {_fmt(h[-1])}")
            lines.append(f"{name}_sum{_labels(label_names, lv)} {h[-2]!r}")
            lines.append(f"{name}_count{_labels(label_names, lv)} {_fmt(h[-1])}")
    return "\n".join(lines) + "\n"
