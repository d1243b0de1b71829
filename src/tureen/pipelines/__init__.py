"""Pipelines: Kubeflow Pipelines v2 authored with the KFP SDK, run locally or compiled.

- ``tureen.pipelines.runs.RunStore``: run records under a repo (read API for the CLI and
  the console); ``tureen.pipelines.records``: the pydantic models of a run and its tasks.
- ``tureen.pipelines.components``: ready KFP components (training set, train, evaluate,
  register, deploy gate); needs the ``tureen[pipelines]`` extra (``kfp``).

Nothing in this package imports ``kfp`` at import time: the core works without it.
"""

from tureen.pipelines.records import (
    ArtifactRecord,
    CacheInfo,
    RunRecord,
    RunState,
    TaskRecord,
    TaskState,
)
from tureen.pipelines.runs import RunStore

__all__ = [
    "ArtifactRecord",
    "CacheInfo",
    "RunRecord",
    "RunState",
    "RunStore",
    "TaskRecord",
    "TaskState",
]
