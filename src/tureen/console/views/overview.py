"""Overview: the project, its registry, its stores and their health, counts, recent activity."""

from __future__ import annotations

from typing import Any

from tureen.console.http import ConsoleRequest
from tureen.console.page import Page, route
from tureen.console.redact import redact_options
from tureen.console.services import ConsoleServices
from tureen.errors import TureenError


def _health(svc: ConsoleServices) -> list[dict[str, Any]]:
    cfg = svc.features.config
    out: list[dict[str, Any]] = []
    snap_ok, snap_msg = True, "readable"
    try:
        snap = svc.features.snapshot()
    except TureenError as exc:
        snap_ok, snap_msg, snap = False, str(exc).split(". ")[0], None
    out.append({"store": "registry", "type": cfg.registry.type,
                "options": redact_options(cfg.registry.options),
                "healthy": snap_ok, "detail": snap_msg})
    online_ok, online_msg = True, "answering"
    try:
        views = list(snap.feature_views.values()) if snap is not None else []
        if views:
            svc.features.online.read([(views[0], [b"\x00console-probe"])])
        else:
            online_msg = "no feature views yet"
    except TureenError as exc:
        online_ok, online_msg = False, str(exc).split(". ")[0]
    out.append({"store": "online", "type": cfg.online_store.type,
                "options": redact_options(cfg.online_store.options),
                "healthy": online_ok, "detail": online_msg})
    out.append({"store": "offline", "type": cfg.offline_store.type,
                "options": redact_options(cfg.offline_store.options),
                "healthy": None, "detail": "started on demand (not probed)"})
    models_ok = True
    try:
        svc.model_index.names()
    except (OSError, TureenError):
        models_ok = False
    out.append({"store": "models", "type": cfg.models.type,
                "options": redact_options(cfg.models.options),
                "healthy": models_ok, "detail": "readable" if models_ok else "cannot be listed"})
    return out


def overview(req: ConsoleRequest, svc: ConsoleServices) -> Page:
    snap = svc.features.snapshot()
    stores = svc.cache.get("health", 5.0, lambda: _health(svc))
    deps = svc.deployments.list()
    models = svc.model_index.names()
    history = svc.cache.get(("history", snap.version), 30.0,
                            lambda: svc.features.registry.history()[-10:])
    activity = [{"version": h.get("version"), "at": h.get("at") or h.get("saved_at"),
                 "summary": h.get("summary", "")} for h in reversed(history)]
    runs = None
    if svc.pipeline_runs is not None:
        runs = svc.pipeline_runs.count()
    data = {
        "project": svc.project,
        "registry": {"version": snap.version, "updated_at": snap.updated_at},
        "stores": stores,
        "counts": {
            "entities": len(snap.entities), "feature_views": len(snap.feature_views),
            "on_demand_views": len(snap.on_demand_views),
            "feature_services": len(snap.feature_services), "models": len(models),
            "deployments": len(deps),
            "deployments_started": sum(1 for d in deps if d.state == "started"),
            "pipeline_runs": runs,
        },
        "activity": activity,
    }
    return Page("overview.html", data, "Overview")


ROUTES = [route("GET", "/", overview)]
