"""The graph a local run walks: one ``Dag`` per DAG being run (the root, a sub-DAG, an
iteration of a loop), one ``Node`` per task in it, and a ``Loop`` for a ``ParallelFor`` task.

A node's ``rec`` is the task's record in the run's ``RunRecord``; the rest is what the engine
needs while the run goes on and is never saved.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tureen.pipelines.cache import KeyParts
from tureen.pipelines.executors import Executor
from tureen.pipelines.records import ArtifactRecord, TaskRecord
from tureen.pipelines.spec import ComponentSpec, PipelineSpec, TaskSpec
from tureen.pipelines.worker import Job


@dataclass(eq=False)
class Dag:
    prefix: str
    comp: ComponentSpec
    params: dict[str, Any]
    artifacts: dict[str, list[ArtifactRecord]]
    owner: Node | None
    nodes: dict[str, Node] = field(default_factory=dict)


@dataclass(eq=False)
class Loop:
    items: list[Any]
    limit: int
    dags: list[Dag] = field(default_factory=list)
    records: list[TaskRecord] = field(default_factory=list)


@dataclass(eq=False)
class Node:
    rec: TaskRecord
    spec: TaskSpec
    comp: ComponentSpec
    dag: Dag
    seq: int
    deps: tuple[str, ...]
    forced: bool = False
    child: Dag | None = None
    loop: Loop | None = None
    job: Job | None = None
    parts: KeyParts | None = None
    retry_at: float | None = None
    t0: float = 0.0
    key_params: dict[str, Any] = field(default_factory=dict)
    probe_args: tuple[Executor, dict[str, Any], dict[str, str]] | None = None


def now() -> datetime:
    return datetime.now(UTC)


def dependencies(t: TaskSpec) -> set[str]:
    """The tasks ``t`` waits for: those it names and those whose outputs it takes."""
    deps = set(t.depends_on)
    deps |= {b.task for b in t.params.values() if b.task}
    deps |= {b.task for b in t.artifacts.values() if b.task}
    return deps


def task_kind(t: TaskSpec, callee: ComponentSpec, executors: Mapping[str, Executor]) -> str:
    """The kind in task ``t``'s record: importer, container, loop, condition or dag."""
    if callee.executor:
        return "importer" if executors[callee.executor].kind == "importer" else "container"
    return "loop" if t.iterator else "condition" if t.condition else "dag"


def task_paths(spec: PipelineSpec) -> set[str]:
    """Every task id of the spec with loop indices left out (for --resume-from)."""
    out: set[str] = set()

    def walk(comp: ComponentSpec, prefix: str) -> None:
        for name, t in comp.tasks.items():
            out.add(prefix + name)
            out.add(t.display_name)
            callee = spec.component(t.component)
            if callee.is_dag:
                walk(callee, f"{prefix}{name}/")

    walk(spec.root, "")
    return out
