"""The data snapshot that goes into a task's cache key (see ``cache``).

Only tureen's training-set component reads the feature store, so only its tasks have one:
the probe recognises the component by its function name and by the tureen step its source
calls (it holds for a pipeline compiled elsewhere too), and computes the snapshot from the
task's own inputs — the same ``repo`` / ``config`` / ``feature_service`` / ``entities`` the
step will use.
"""

from __future__ import annotations

from typing import Any

from tureen.pipelines.executors import Executor

TRAINING_SET_STEP = "tureen.pipelines.steps.training_set"


def probe(executor: Executor, params: dict[str, Any]) -> dict[str, Any] | None:
    if executor.kind != "python" or TRAINING_SET_STEP not in executor.source:
        return None
    from tureen.pipelines.steps.training_set import snapshot

    return snapshot(repo=str(params.get("repo") or ""), config=str(params.get("config") or ""),
                    feature_service=str(params.get("feature_service") or ""),
                    features=params.get("features") or None,
                    entities=str(params.get("entities") or ""))
