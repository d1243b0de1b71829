"""Pipeline runs: the DAG with task states, cache hit/miss and its reason, durations,
parameters; metrics across runs; confusion matrix and ROC curve as SVG; "promote this run's
model to a canary" (a form posting to the deployments service).

Runs come from ``ConsoleServices.pipeline_runs`` (see ``tureen.console.runs``); without
pipeline support installed the pages say so.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from tureen.console import svg
from tureen.console.http import ConsoleRequest, Stream, seg
from tureen.console.page import Page, Redirect, route
from tureen.console.paging import limit_arg
from tureen.console.services import ConsoleServices
from tureen.console.views.deploy_actions import _number
from tureen.console.views.live import event
from tureen.errors import InvalidRequestError, NotFoundError, TureenError

UNAVAILABLE = ("pipeline runs are not available: install pipeline support "
               "(pip install 'tureen[pipelines]') and run `tureen pipeline run`.")


def _runs(svc: ConsoleServices) -> Any:
    if svc.pipeline_runs is None:
        raise NotFoundError(UNAVAILABLE)
    return svc.pipeline_runs


def run_list(req: ConsoleRequest, svc: ConsoleServices) -> Page:
    limit = limit_arg(req.arg("limit"))
    pipeline = req.arg("pipeline")
    if svc.pipeline_runs is None:
        return Page("runs.html", {"runs": [], "metrics": [], "next": None,
                                  "filters": {"pipeline": pipeline}, "note": UNAVAILABLE},
                    "Pipeline runs")
    runs, nxt = svc.pipeline_runs.page(limit=limit, after=req.arg("after") or None,
                                       pipeline=pipeline or None)
    metrics: dict[str, None] = {}
    for r in runs:
        for k in r.get("metrics", {}):
            metrics.setdefault(k, None)
    data = {"runs": runs, "metrics": list(metrics), "next": nxt,
            "filters": {"pipeline": pipeline}, "note": None}
    return Page("runs.html", data, "Pipeline runs")


def run_detail(req: ConsoleRequest, svc: ConsoleServices,
               errors: dict[str, str] | None = None, status: int = 200) -> Page:
    run = _runs(svc).get(req.params["run_id"])
    data: dict[str, Any] = {**run, "errors": errors or {},
                            "deployments": [d.name for d in svc.deployments.list()]}
    page = Page("run.html", data, f"Pipeline run {run['id']}", status,
                crumbs=[("Pipeline runs", "/pipelines")])
    if not req.wants_json:
        charts: dict[str, Any] = {"dag": svg.dag(run.get("tasks", []), f"run {run['id']}")}
        cls = run.get("classification") or {}
        if cls.get("matrix"):
            charts["confusion"] = svg.confusion_matrix(cls["labels"], cls["matrix"])
        roc = cls.get("roc") or {}
        if roc.get("fpr"):
            charts["roc"] = svg.roc_curve(roc["fpr"], roc["tpr"], roc.get("auc"))
        page.data = {**data, "_charts": charts}
    return page


def promote(req: ConsoleRequest, svc: ConsoleServices) -> Page | Redirect:
    """Send a share of a deployment's traffic to the model version this run registered."""
    run = _runs(svc).get(req.params["run_id"])
    target = req.form.get("deployment", "").strip()
    try:
        model = run.get("model") or {}
        if not model.get("version"):
            raise InvalidRequestError("this run registered no model version to promote.")
        percent = _number(req.form.get("canary_percent", "10"), "canary_percent", float)
        spec = svc.deployments.get(target)
        if spec.model != model.get("name"):
            raise InvalidRequestError(
                f"deployment {target!r} serves model {spec.model!r}, but this run registered "
                f"{model.get('name')!r}; pick a deployment of that model.")
        svc.deployments.update(target, canary_version=model["version"],
                               canary_percent=10.0 if percent is None else percent)
    except TureenError as exc:
        return run_detail(req, svc, {"promote": str(exc)}, 400)
    return Redirect(f"/deployments/{seg(target)}?flash=canary")


STREAM_SECONDS = 15.0


async def run_stream(req: ConsoleRequest, svc: ConsoleServices) -> Stream:
    """A run in progress: its state, task table and DAG every second, until it ends."""
    runs = _runs(svc)
    run_id = req.params["run_id"]
    await asyncio.to_thread(runs.get, run_id)  # 404 / 400 before the stream starts

    def snapshot() -> dict[str, Any]:
        run = runs.get(run_id)
        return {"id": run["id"], "status": run["status"], "tasks": run["tasks"],
                "duration_seconds": run["duration_seconds"],
                "dag_svg": str(svg.dag(run["tasks"], f"run {run['id']}"))}

    async def body() -> AsyncIterator[bytes]:
        yield b"retry: 1000\n\n"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STREAM_SECONDS
        while loop.time() < deadline:
            snap = await asyncio.to_thread(snapshot)
            yield event("run", snap)
            if snap["status"] != "RUNNING":
                yield event("end", {"status": snap["status"]})
                return
            await asyncio.sleep(1.0)

    return Stream(body())


ROUTES = [
    route("GET", "/pipelines/{run_id}/stream", stream=run_stream),
    route("GET", "/pipelines", run_list),
    route("GET", "/pipelines/{run_id}", run_detail),
    route("POST", "/pipelines/{run_id}/promote", promote),
]
