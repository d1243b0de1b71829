"""Pipeline run records: what ran, in which state, with which inputs, outputs and metrics.

One ``RunRecord`` per run (``<repo>/data/pipeline_runs/<run id>/run.json``), holding one
``TaskRecord`` per task of every DAG level. Task ids are paths: ``train``,
``exit-handler-1/condition-2/deploy``, ``for-loop-3[1]/square``. States are Kubeflow's.

These are pydantic models: ``RunRecord.model_validate_json(text)`` reads one back, and the
console renders them as they are. Metrics come from ``system.Metrics`` and
``system.ClassificationMetrics`` artifacts in the metadata layout Kubeflow's UI reads.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class TaskState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    CACHED = "CACHED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    CANCELED = "CANCELED"

    @property
    def done(self) -> bool:
        return self not in (TaskState.PENDING, TaskState.RUNNING)

    @property
    def ok(self) -> bool:
        """Finished in a way downstream tasks may run after."""
        return self in (TaskState.SUCCEEDED, TaskState.CACHED, TaskState.SKIPPED)


class RunState(StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


class ArtifactRecord(BaseModel):
    """One artifact as produced by a task (or imported)."""

    name: str = ""
    type: str = "system.Artifact"  # schema title: system.Dataset, system.Model, ...
    uri: str = ""  # a local path for local runs
    metadata: dict[str, Any] = Field(default_factory=dict)
    digest: str | None = None  # sha256 of the content, when it is a local file or folder


class TaskIO(BaseModel):
    parameters: dict[str, Any] = Field(default_factory=dict)
    artifacts: dict[str, list[ArtifactRecord]] = Field(default_factory=dict)


class CacheInfo(BaseModel):
    hit: bool
    reason: str
    key: str | None = None
    source_run: str | None = None  # the run whose outputs a hit reused
    source_task: str | None = None


class TaskRecord(BaseModel):
    id: str  # path of task names through the DAG levels
    name: str  # the task name as written in the pipeline (taskInfo.name)
    parent: str | None = None  # id of the enclosing group (condition, loop, sub-pipeline)
    kind: str = "container"  # container | importer | dag | condition | loop | iteration
    component: str = ""  # component name in the compiled spec
    state: TaskState = TaskState.PENDING
    depends_on: list[str] = Field(default_factory=list)  # ids of upstream tasks
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float | None = None
    attempts: int = 0
    inputs: TaskIO = Field(default_factory=TaskIO)
    outputs: TaskIO = Field(default_factory=TaskIO)
    cache: CacheInfo | None = None
    reason: str | None = None  # why it was skipped or canceled
    error: str | None = None
    log: str | None = None  # path of the task's log, relative to the run folder


class ScalarMetrics(BaseModel):
    task: str
    artifact: str
    values: dict[str, float]


class ConfusionMatrix(BaseModel):
    labels: list[str]
    rows: list[list[float]]  # rows[i][j]: true label i predicted as label j


class RocPoint(BaseModel):
    threshold: float
    fpr: float
    tpr: float


class ClassificationMetricsView(BaseModel):
    task: str
    artifact: str
    confusion_matrix: ConfusionMatrix | None = None
    roc: list[RocPoint] = Field(default_factory=list)


class RegisteredModelRef(BaseModel):
    task: str
    name: str
    version: int


class RunRecord(BaseModel):
    id: str
    pipeline: str
    source: str  # the pipeline file or compiled YAML it ran from
    state: RunState = RunState.RUNNING
    created_at: datetime
    finished_at: datetime | None = None
    duration_s: float | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    tasks: list[TaskRecord] = Field(default_factory=list)
    error: str | None = None
    warnings: list[str] = Field(default_factory=list)
    resumed_from: str | None = None  # "RUN_ID:STEP" for --resume-from
    cache_enabled: bool = True

    def task(self, ref: str) -> TaskRecord | None:
        """The task with id ``ref``, else the only task displayed as ``ref``."""
        by_id = next((t for t in self.tasks if t.id == ref), None)
        if by_id is not None:
            return by_id
        named = [t for t in self.tasks if t.name == ref]
        return named[0] if len(named) == 1 else None

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.tasks:
            out[t.state.value] = out.get(t.state.value, 0) + 1
        return out

    def _artifacts(self, schema: str) -> list[tuple[TaskRecord, ArtifactRecord]]:
        return [(t, a) for t in self.tasks if t.kind in ("container", "importer")
                for arts in t.outputs.artifacts.values() for a in arts if a.type == schema]

    def scalar_metrics(self) -> list[ScalarMetrics]:
        """Every ``system.Metrics`` artifact: its numeric metadata entries."""
        out = []
        for t, a in self._artifacts("system.Metrics"):
            values = {k: float(v) for k, v in a.metadata.items()
                      if isinstance(v, int | float) and not isinstance(v, bool)}
            out.append(ScalarMetrics(task=t.id, artifact=a.name, values=values))
        return out

    def metrics(self) -> dict[str, float]:
        """All scalar metrics of the run, flattened as ``task.metric``."""
        return {f"{m.task}.{k}": v for m in self.scalar_metrics() for k, v in m.values.items()}

    def classification_metrics(self) -> list[ClassificationMetricsView]:
        """Confusion matrices and ROC curves (``system.ClassificationMetrics``)."""
        out = []
        for t, a in self._artifacts("system.ClassificationMetrics"):
            cm = a.metadata.get("confusionMatrix")
            matrix = None
            if isinstance(cm, dict):
                labels = [str(s.get("displayName", "")) for s in cm.get("annotationSpecs", [])]
                rows = [[float(x) for x in r.get("row", [])] for r in cm.get("rows", [])]
                matrix = ConfusionMatrix(labels=labels, rows=rows)
            roc = [RocPoint(threshold=float(p.get("confidenceThreshold", 0.0)),
                            fpr=float(p.get("falsePositiveRate", 0.0)),
                            tpr=float(p.get("recall", 0.0)))
                   for p in a.metadata.get("confidenceMetrics", []) or []
                   if isinstance(p, dict)]
            out.append(ClassificationMetricsView(task=t.id, artifact=a.name,
                                                 confusion_matrix=matrix, roc=roc))
        return out

    def registered_models(self) -> list[RegisteredModelRef]:
        """Model versions the run registered (``system.Model`` artifacts carrying
        ``tureen.model`` / ``tureen.version`` metadata, as tureen's register step writes)."""
        out = []
        for t, a in self._artifacts("system.Model"):
            name, version = a.metadata.get("tureen.model"), a.metadata.get("tureen.version")
            if isinstance(name, str) and isinstance(version, int | float):
                out.append(RegisteredModelRef(task=t.id, name=name, version=int(version)))
        return out
