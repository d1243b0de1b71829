"""Finishing a task from earlier outputs instead of running it: ``--resume-from`` a previous
run, or the task cache.

- With ``--resume-from STEP`` the step, the tasks downstream of it and the tasks inside it
  run again ("forced"); every other task that succeeded in the previous run takes its
  outputs from there.
- Otherwise a container task's outputs come from the cache when caching is on for the task
  and the run: the key is the component (interface and executor), the inputs (artifacts by
  content digest, run placeholders kept as written) and the data snapshot the task reads.
- A task that changes the state in its own key (the deploy gate) is stored under the key of
  the state it left behind.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tureen.errors import TureenError
from tureen.pipelines.cache import KeyParts, TaskCache, artifact_identity, component_digest
from tureen.pipelines.executors import Executor
from tureen.pipelines.graph import Node
from tureen.pipelines.records import CacheInfo, RunRecord, TaskIO, TaskState
from tureen.pipelines.spec import PipelineSpec

SnapshotProbe = Callable[[Executor, dict[str, Any], dict[str, str]], dict[str, Any] | None]
_INDEX_RE = re.compile(r"\[\d+\]")
#: (previous run, step) of ``--resume-from``
Resume = tuple[RunRecord, str]


def is_forced(node: Node, resume: Resume | None) -> bool:
    """Whether ``node`` runs again under ``--resume-from``: it is the step (by id, name or
    id without loop indices), depends on a forced task, or sits in a forced DAG."""
    if resume is None:
        return False
    step = resume[1]
    own = node.rec.id in (step,) or node.rec.name == step or _INDEX_RE.sub("", node.rec.id) == step
    owner = node.dag.owner
    return (
        own
        or any(node.dag.nodes[d].forced for d in node.deps)
        or (owner is not None and owner.forced)
    )


def task_key(
    spec: PipelineSpec, node: Node, ex: Executor, inputs: TaskIO, snapshot: dict[str, Any] | None
) -> KeyParts:
    component_raw = spec.doc.get("components", {}).get(node.spec.component, {})
    return KeyParts(
        component_digest(component_raw, ex.raw),
        {**inputs.parameters, **node.key_params},
        {k: [artifact_identity(a.model_dump()) for a in v] for k, v in inputs.artifacts.items()},
        snapshot,
    )


def earlier_outputs(
    node: Node, resume: Resume | None, use_cache: bool, cache: TaskCache, identity: str
) -> tuple[TaskIO | None, bool]:
    """(outputs to finish ``node`` with or None to run it, whether the cache was asked);
    records why in ``node.rec.cache``."""
    rec, parts = node.rec, node.parts
    assert parts is not None
    if resume is not None:
        prev, step = resume
        if node.forced:
            rec.cache = CacheInfo(
                hit=False, key=parts.key, reason=f"--resume-from {step}: runs again"
            )
            return None, False
        old = prev.task(rec.id)
        if old is not None and old.state in (TaskState.SUCCEEDED, TaskState.CACHED):
            rec.cache = CacheInfo(
                hit=True,
                key=parts.key,
                source_run=prev.id,
                source_task=rec.id,
                reason=f"--resume-from {step}: outputs of run {prev.id}",
            )
            return old.outputs, False
    if not node.spec.cache_enabled:
        rec.cache = CacheInfo(hit=False, key=parts.key, reason="caching is off for this task")
        return None, False
    if not use_cache:
        rec.cache = CacheInfo(hit=False, key=parts.key, reason="--no-cache")
        return None, False
    outputs, info = cache.lookup(identity, parts, rec.id)
    rec.cache = info
    return outputs, True


def key_after(node: Node, probe: SnapshotProbe | None) -> KeyParts | None:
    """The key of a task that changed the state in its own key (the deploy gate updates
    the deployment it keys on): its outputs are cached under the state it left behind —
    replaying them there changes nothing — and never under the state before, where a
    replay would claim a change that did not happen."""
    parts, args = node.parts, node.probe_args
    if parts is None or parts.snapshot is None or args is None or probe is None:
        return None
    try:
        after = probe(*args)
    except TureenError:
        return None
    if after == parts.snapshot:
        return None
    return KeyParts(parts.component, parts.params, parts.artifacts, after)
