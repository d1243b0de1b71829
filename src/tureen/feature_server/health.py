"""``GET /health`` of the feature server: is the registry readable, is the online store
reachable, and does it still hold what was materialized into it (``tureen.watermarks``)?

The answer is ``ok`` (200) or ``unavailable`` / ``degraded`` (503, naming what is wrong and
what to do). ``degraded`` means the store answers but lost views' data (a Redis restarted
empty): reads would return NOT_FOUND (or a transformer's defaults) until
``tureen materialize-incremental`` reloads them.
"""

from __future__ import annotations

import time
from typing import Any

from tureen.store import FeatureStore
from tureen.watermarks import states


def health_report(store: FeatureStore) -> dict[str, Any]:
    """Registry and online-store reachability, each with how long the probe took."""
    report: dict[str, Any] = {"status": "ok"}
    t = time.perf_counter()
    views: list[Any] = []
    try:
        snap = store.registry.snapshot(fresh=True)
        views = list(snap.feature_views.values())
        report["registry"] = {"ok": True, "project": snap.project, "version": snap.version,
                              "feature_views": len(views),
                              "feature_services": len(snap.feature_services)}
    except Exception as exc:  # any failure means unreachable; report it, do not raise
        report["status"] = "unavailable"
        report["registry"] = {"ok": False, "error": str(exc)}
    report["registry"]["ms"] = round((time.perf_counter() - t) * 1000, 3)
    t = time.perf_counter()
    online: dict[str, Any] = {"type": store.config.online_store.type}
    try:
        store.online.read([(views[0], [b"\x00health"])] if views else [])
        online["ok"] = True
        if views:
            # no role check: /health says whether data is there, never what it is
            lost = [s for s in states(snap, store.online) if s.status == "lost"]
            if lost:
                report["status"] = "degraded"
                online["ok"] = False
                online["lost_views"] = [s.view for s in lost]
                online["error"] = " ".join(s.message for s in lost)
    except Exception as exc:
        report["status"] = "unavailable"
        online.update(ok=False, error=str(exc))
    online["ms"] = round((time.perf_counter() - t) * 1000, 3)
    report["online_store"] = online
    return report
