"""Pipeline runs for the console, read through ``tureen.pipelines.RunStore`` (the read API
the pipelines area keeps): a page of runs newest first, one run with its tasks, metrics,
confusion matrix and ROC curve, as the dicts the pages and their JSON twins show."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from tureen.pipelines import RunRecord, RunStore
from tureen.pipelines.runs import check_run_id


def _roc_auc(fpr: list[float], tpr: list[float]) -> float | None:
    if len(fpr) < 2:
        return None
    pts = sorted(zip(fpr, tpr, strict=True))
    return sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in itertools.pairwise(pts))


def summary(run: RunRecord) -> dict[str, Any]:
    return {"id": run.id, "pipeline": run.pipeline, "status": run.state.value,
            "started_at": run.created_at, "finished_at": run.finished_at,
            "duration_seconds": run.duration_s, "parameters": dict(run.parameters),
            "metrics": run.metrics(), "counts": run.counts()}


def detail(run: RunRecord) -> dict[str, Any]:
    out = summary(run)
    tasks = []
    for t in run.tasks:
        tasks.append({"id": t.id, "name": t.id, "kind": t.kind, "state": t.state.value,
                      "after": list(t.depends_on),
                      "cache": None if t.cache is None else {"hit": t.cache.hit,
                                                             "reason": t.cache.reason},
                      "duration_seconds": t.duration_s, "attempts": t.attempts,
                      "reason": t.reason, "error": t.error})
    out["tasks"] = tasks
    out["error"] = run.error
    out["warnings"] = list(run.warnings)
    cls = run.classification_metrics()
    out["classification"] = None
    if cls:
        c = cls[0]
        fpr = [p.fpr for p in c.roc]
        tpr = [p.tpr for p in c.roc]
        out["classification"] = {
            "task": c.task,
            "labels": c.confusion_matrix.labels if c.confusion_matrix else [],
            "matrix": c.confusion_matrix.rows if c.confusion_matrix else [],
            "roc": {"fpr": fpr, "tpr": tpr, "auc": _roc_auc(fpr, tpr)}}
    models = run.registered_models()
    out["model"] = {"name": models[0].name, "version": models[0].version} if models else None
    return out


class PipelineRuns:
    def __init__(self, repo_path: Path) -> None:
        self.store = RunStore.for_repo(repo_path)

    def page(self, limit: int, after: str | None = None, pipeline: str | None = None
             ) -> tuple[list[dict[str, Any]], str | None]:
        """Runs newest first after run id ``after``; (runs, the next page's cursor)."""
        if after is not None:
            check_run_id(after)
        out: list[dict[str, Any]] = []
        for run_id in self.store.ids():
            if after is not None and run_id >= after:
                continue
            try:
                run = self.store.get(run_id)
            except Exception:
                continue
            if pipeline and run.pipeline != pipeline:
                continue
            if len(out) == limit:
                return out, out[-1]["id"]
            out.append(summary(run))
        return out, None

    def registered_by(self, scan: int = 500) -> dict[tuple[str, int], str]:
        """(model, version) -> the id of the (newest of the last ``scan``) run that
        registered it."""
        out: dict[tuple[str, int], str] = {}
        for run_id in self.store.ids()[:scan]:
            try:
                run = self.store.get(run_id)
            except Exception:
                continue
            for ref in run.registered_models():
                out.setdefault((ref.name, ref.version), run.id)
        return out

    def count(self) -> int:
        return len(self.store.ids())

    def get(self, run_id: str) -> dict[str, Any]:
        return detail(self.store.get(run_id))
