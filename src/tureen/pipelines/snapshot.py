"""The state outside a task that goes into its cache key (see ``cache``).

Two of tureen's components depend on more than their inputs: the training set on the data
(definitions, entity rows, source files) and the deploy gate on what the target deployment
serves now. The probe recognises them by the tureen step their source calls (so it holds for
a pipeline compiled elsewhere too) and computes that state from the task's own inputs — the
same ``repo`` / ``config`` / ``feature_service`` / ``entities`` / ``deployment`` the step
will use. A cached gate decision is then reused only while the deployment is unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tureen.pipelines.executors import Executor

TRAINING_SET_STEP = "tureen.pipelines.steps.training_set"
GATE_STEP = "tureen.pipelines.steps.gate"


def probe(executor: Executor, params: dict[str, Any], env: dict[str, str]
          ) -> dict[str, Any] | None:
    """``env``: the environment the task will run with (``TUREEN_REPO``, its variables);
    relative paths are relative to the task's working directory, the repo."""
    if executor.kind != "python":
        return None
    workdir = Path(env.get("TUREEN_REPO") or ".")
    repo = str(workdir / str(params.get("repo") or "."))
    config = str(params.get("config") or "")
    if GATE_STEP in executor.source:
        from tureen.pipelines.steps.gate import served

        return served(str(params.get("deployment") or ""), repo=repo, config=config, env=env)
    if TRAINING_SET_STEP not in executor.source:
        return None
    from tureen.pipelines.steps.training_set import snapshot

    entities = str(params.get("entities") or "")
    if entities and "://" not in entities:
        entities = str(workdir / entities)
    return snapshot(repo=repo, config=config,
                    feature_service=str(params.get("feature_service") or ""),
                    features=params.get("features") or None, entities=entities, env=env)
