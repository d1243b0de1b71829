"""Triton's statistics extension, read from the server's own metrics.

Nothing here counts anything: the data plane records requests, stages and executions in
``Metrics`` (the numbers ``/metrics`` shows, summed over workers), and ``model_statistics``
reads them back in the shape of Triton's ``ModelStatistics``:

| Triton field                    | tureen metric                                             |
|---------------------------------|-----------------------------------------------------------|
| ``inference_count``             | ``tureen_inferences_total``                               |
| ``execution_count``             | ``tureen_executions_total`` (all batch sizes)             |
| ``last_inference`` (ms)         | ``tureen_last_inference_timestamp_seconds``               |
| ``success``                     | ``tureen_request_duration_seconds{stage="success"}``      |
| ``fail``                        | stage ``total`` minus stage ``success``                   |
| ``queue``                       | stage ``queue`` (waiting for an adaptive batch)           |
| ``compute_input/infer/output``  | stages ``preprocess`` / ``predict`` / ``postprocess``     |
| ``batch_stats``                 | ``tureen_executions_total``, ``..._execution_seconds_total`` |
"""

from __future__ import annotations

from typing import Any

from tureen.serving.metrics import Metrics

DURATION = "tureen_request_duration_seconds"
_STAGES = {"success": "success", "queue": "queue", "compute_input": "preprocess",
           "compute_infer": "predict", "compute_output": "postprocess"}


def _duration(count: float, seconds: float) -> dict[str, int]:
    return {"count": int(count), "ns": max(0, round(seconds * 1e9))}


_ZERO = {"count": 0, "ns": 0}


def model_statistics(metrics: Metrics, models: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """One Triton ``model_stat`` per (name, version), in the given order."""
    values, hist = metrics.aggregate()
    wanted = set(models)
    stages: dict[tuple[str, str], dict[str, tuple[float, float]]] = {}
    for (family, labels), h in hist.items():
        if family == DURATION and (labels[0], labels[1]) in wanted:
            stages.setdefault((labels[0], labels[1]), {})[labels[2]] = (h[-1], h[-2])
    counts: dict[tuple[str, str], dict[str, float]] = {}
    batches: dict[tuple[str, str], dict[int, list[float]]] = {}
    for (family, labels), v in values.items():
        mv = (labels[0], labels[1]) if len(labels) >= 2 else ("", "")
        if mv not in wanted:
            continue
        if family in ("tureen_inferences_total", "tureen_last_inference_timestamp_seconds"):
            counts.setdefault(mv, {})[family] = v
        elif family in ("tureen_executions_total", "tureen_execution_seconds_total"):
            entry = batches.setdefault(mv, {}).setdefault(int(labels[2]), [0.0, 0.0])
            entry[0 if family == "tureen_executions_total" else 1] += v
    return [_one(name, version, stages.get((name, version), {}),
                 counts.get((name, version), {}), batches.get((name, version), {}))
            for name, version in models]


def _one(name: str, version: str, stages: dict[str, tuple[float, float]],
         counts: dict[str, float], batches: dict[int, list[float]]) -> dict[str, Any]:
    total = stages.get("total", (0.0, 0.0))
    ok = stages.get("success", (0.0, 0.0))
    inference = {k: _duration(*stages.get(stage, (0.0, 0.0))) for k, stage in _STAGES.items()}
    inference["fail"] = _duration(total[0] - ok[0], total[1] - ok[1])
    inference["cache_hit"] = dict(_ZERO)
    return {
        "name": name,
        "version": version,
        "last_inference": round(counts.get("tureen_last_inference_timestamp_seconds", 0) * 1000),
        "inference_count": int(counts.get("tureen_inferences_total", 0)),
        "execution_count": int(sum(c for c, _ in batches.values())),
        "inference_stats": inference,
        "batch_stats": [
            {"batch_size": size, "compute_input": dict(_ZERO),
             "compute_infer": _duration(c, secs), "compute_output": dict(_ZERO)}
            for size, (c, secs) in sorted(batches.items())
        ],
    }
