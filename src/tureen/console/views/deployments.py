"""Deployments: the list with coloured states, and one deployment's page — endpoints with a
ready-to-copy curl, served versions and canary share, per-version request rate and latency,
idle-unload state and cold starts, logging mode and sink, recent log lines."""

from __future__ import annotations

import json
from typing import Any

from tureen.console import svg
from tureen.console.http import ConsoleRequest, seg
from tureen.console.logtail import LogFilter, tail
from tureen.console.page import Page, route
from tureen.console.paging import after, decode_cursor, limit_arg
from tureen.console.rates import aggregate
from tureen.console.redact import redact_url
from tureen.console.services import ConsoleServices
from tureen.deployments import DeploymentSpec
from tureen.deployments.status import read_status
from tureen.errors import TureenError

FLASH = {
    "created": "Deployment created (stopped): start it to serve.",
    "started": "Deployment started: a running `tureen serve` picks it up.",
    "stopped": "Deployment stopped: it answers 503 until started again.",
    "updated": "Deployment updated: running servers switch within a few seconds.",
    "canary": "Canary set: running servers split the traffic within a few seconds.",
    "promoted": "Canary promoted to the main version.",
    "cleared": "Canary removed: all traffic goes to the main version.",
    "rolled-back": "Rolled back to the previous version.",
    "deleted": "Deployment deleted (its logs and models stay).",
}


def spec_view(s: DeploymentSpec) -> dict[str, Any]:
    d = s.to_dict()
    d["log_sink"] = redact_url(s.log_sink) if s.log_sink else None
    d["sink_kind"] = _sink_kind(s)
    return d


def _sink_kind(s: DeploymentSpec) -> str:
    if s.logging.value == "NONE":
        return "none"
    sink = s.log_sink or ""
    if sink.startswith("kafka://"):
        return "kafka"
    if sink.startswith(("http://", "https://")):
        return "cloudevents"
    return "parquet"


def _live(workers: list[dict[str, Any]], spec: DeploymentSpec) -> dict[str, Any]:
    versions = aggregate(workers)
    loaded = sorted({v for w in workers for v in w.get("loaded_versions", [])})
    if not workers:
        serving = "no status yet (not served, or no request since the server started)"
    elif loaded:
        serving = "loaded"
    else:
        serving = "unloaded after idle" if spec.idle_unload_seconds else "not loaded"
    return {"workers": len(workers), "loaded_versions": loaded, "serving": serving,
            "cold_starts": sum(int(w.get("cold_starts", 0)) for w in workers),
            "swaps": sum(int(w.get("swaps", 0)) for w in workers),
            "versions": versions,
            "requests": int(sum(v["requests"] for v in versions.values())),
            "errors": int(sum(v["errors"] for v in versions.values())),
            "logging": [w["logging"] for w in workers if w.get("logging")]}


def deployment_list(req: ConsoleRequest, svc: ConsoleServices) -> Page:
    state, model, q = req.arg("state"), req.arg("model"), req.arg("q")
    limit = limit_arg(req.arg("limit"))
    cursor = decode_cursor(req.arg("after"), 1)
    specs = [s for s in svc.deployments.list()
             if (not state or s.state == state) and (not model or s.model == model)
             and (not q or q.lower() in s.name)]
    page = after(specs, lambda s: (s.name,), cursor, limit)
    rows = []
    for s in page.items:
        live = _live(read_status(svc.repo_path, s.name), s)
        rows.append({**spec_view(s), "requests": live["requests"], "errors": live["errors"],
                     "serving": live["serving"]})
    data = {"filters": {"state": state, "model": model, "q": q}, "deployments": rows,
            "next": page.next, "flash": FLASH.get(req.arg("flash"))}
    return Page("deployments.html", data, "Deployments")


def _placeholder(python: type) -> Any:
    return 1 if python is int else 0.0 if python is float else True if python is bool else "x"


def example_request(svc: ConsoleServices, spec: DeploymentSpec) -> dict[str, Any]:
    """A v1 request body that has the right shape for this deployment (entity keys and
    request fields with a feature service; one row of the model's inputs otherwise)."""
    if spec.feature_service:
        from tureen.feature_refs import resolve

        try:
            snap = svc.features.snapshot()
            plan = resolve(snap, snap.feature_service(spec.feature_service))
        except TureenError:
            return {"instances": [{}]}
        row: dict[str, Any] = {}
        for v in snap.feature_views.values():
            for f in v.key_fields:
                if f.name in plan.join_keys:
                    row[f.name] = _placeholder(f.dtype.python)
        for f in plan.request_fields:
            row[f.name] = _placeholder(f.dtype.python)
        return {"instances": [row]}
    mv = svc.models.store.read(spec.model, spec.version)
    if mv is None or not mv.inputs:
        return {"instances": [[0.0]]}
    width = len(mv.inputs) if len(mv.inputs) > 1 else max(1, mv.inputs[0].shape[-1]
                                                            if mv.inputs[0].shape else 1)
    return {"instances": [[0.0] * width]}


def endpoints(svc: ConsoleServices, spec: DeploymentSpec) -> dict[str, Any]:
    ep = svc.endpoints
    body = json.dumps(example_request(svc, spec))
    v1 = f"{ep.http}/v1/models/{spec.name}:predict"
    return {"v1": v1, "v2": f"{ep.http}/v2/models/{spec.name}/infer",
            "v2_metadata": f"{ep.http}/v2/models/{spec.name}", "grpc": ep.grpc,
            "grpc_model": spec.name,
            "curl": f"curl -s {v1} -H 'content-type: application/json' -d '{body}'"}


def charts(svc: ConsoleServices, name: str) -> dict[str, Any]:
    points = svc.rates.points(name)
    rate = {f"v{v}": [(p["at"], p["rate"]) for p in pts] for v, pts in points.items()}
    p99 = {f"v{v} p99": [(p["at"], p["p99_ms"]) for p in pts] for v, pts in points.items()}
    p50 = {f"v{v} p50": [(p["at"], p["p50_ms"]) for p in pts] for v, pts in points.items()}
    return {"rate_svg": svg.line_chart(rate, f"{name}: requests per second", "req/s"),
            "latency_svg": svg.line_chart({**p50, **p99}, f"{name}: latency", "ms")}


def detail_data(svc: ConsoleServices, spec: DeploymentSpec) -> dict[str, Any]:
    workers = svc.rates.sample(spec.name).workers
    live = _live(workers, spec)
    versions = svc.model_index.versions(spec.model)
    return {
        **spec_view(spec), "endpoints": endpoints(svc, spec), "live": live,
        "model_versions": list(reversed(versions[-200:])),
        "log_lines": tail(svc.repo_path, spec.name, LogFilter(), 20),
    }


def deployment_detail(req: ConsoleRequest, svc: ConsoleServices,
                      errors: dict[str, str] | None = None, status: int = 200) -> Page:
    spec = svc.deployments.get(req.params["name"])
    data = detail_data(svc, spec)
    data["flash"] = FLASH.get(req.arg("flash"))
    data["errors"] = errors or {}
    page = Page("deployment.html", data, f"Deployment {spec.name}", status,
                crumbs=[("Deployments", "/deployments")])
    if not req.wants_json:
        data_charts = charts(svc, spec.name)
        page.data = {**data, "_charts": data_charts}
    return page


def inference_rows(req: ConsoleRequest, svc: ConsoleServices) -> Page:
    from tureen.console.inference_tail import latest_rows

    spec = svc.deployments.get(req.params["name"])
    limit = limit_arg(req.arg("limit"), 20)
    result = latest_rows(svc.repo_path, spec, limit)
    return Page("inference_rows.html", {"name": spec.name, **result},
                f"Inference log of {spec.name}",
                crumbs=[("Deployments", "/deployments"), (spec.name,
                                                          f"/deployments/{seg(spec.name)}")])


def skew(req: ConsoleRequest, svc: ConsoleServices) -> Page:
    spec = svc.deployments.get(req.params["name"])
    limit = limit_arg(req.arg("limit"), 200)
    data: dict[str, Any] = {"name": spec.name, "feature_service": spec.feature_service,
                            "limit": limit, "features": [], "error": None, "rows": 0}
    if not spec.feature_service:
        data["error"] = "this deployment has no feature service: there is nothing to compare."
    else:
        try:
            report = svc.cache.get(("skew", spec.name, limit), 30.0,
                                   lambda: _skew(svc, spec, limit))
            data.update(report)
        except TureenError as exc:
            data["error"] = str(exc)
    return Page("skew.html", data, f"Skew of {spec.name}",
                crumbs=[("Deployments", "/deployments"), (spec.name,
                                                          f"/deployments/{seg(spec.name)}")])


def _skew(svc: ConsoleServices, spec: DeploymentSpec, limit: int) -> dict[str, Any]:
    from tureen.inference_log.dataset import read_log
    from tureen.inference_log.sinks import parquet_root
    from tureen.inference_log.skew import compute_skew

    sink = spec.log_sink
    if sink and sink.startswith(("http://", "https://", "kafka://")):
        return {"error": "this deployment logs to Kafka or CloudEvents, not Parquet: the skew "
                         "report reads the Parquet log (land the records there first)."}
    assert spec.feature_service is not None
    table = read_log(parquet_root(sink, str(svc.repo_path)), spec.name)
    found = compute_skew(svc.features, table, spec.feature_service, limit=limit)
    return {"features": [f.as_dict() for f in found], "rows": min(limit, table.num_rows)}


ROUTES = [
    route("GET", "/deployments", deployment_list),
    route("GET", "/deployments/{name}", deployment_detail),
    route("GET", "/deployments/{name}/requests", inference_rows),
    route("GET", "/deployments/{name}/skew", skew),
]
