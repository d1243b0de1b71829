"""Entities, and the lookup: type a key, see every view's online values with their statuses
and event timestamps."""

from __future__ import annotations

from typing import Any

from tureen.console.http import ConsoleRequest
from tureen.console.page import Page, route
from tureen.console.services import ConsoleServices
from tureen.console.views.features import _plain, entity_row


def entity_list(req: ConsoleRequest, svc: ConsoleServices) -> Page:
    snap = svc.features.snapshot()
    rows = []
    for e in sorted(snap.entities.values(), key=lambda e: e.name):
        views = [v.name for v in snap.feature_views.values()
                 if e.name in {x.name for x in v.entities}]
        rows.append({"name": e.name, "join_keys": list(e.join_keys),
                     "dtypes": {k: e.key_dtype(k).name for k in e.join_keys},
                     "description": e.description, "owner": e.owner,
                     "views": sorted(views)})
    return Page("entities.html", {"entities": rows}, "Entities")


def entity_detail(req: ConsoleRequest, svc: ConsoleServices) -> Page:
    snap = svc.features.snapshot()
    e = snap.entity(req.params["name"])
    views = sorted((v for v in snap.feature_views.values()
                    if [x.name for x in v.entities] == [e.name]), key=lambda v: v.name)
    data: dict[str, Any] = {
        "name": e.name, "join_keys": [{"name": f.name, "dtype": f.dtype.name}
                                      for f in e.key_fields],
        "description": e.description, "owner": e.owner, "tags": dict(e.tags),
        "views": [v.name for v in views], "lookup": None,
    }
    row = entity_row(req, e.key_fields)
    if row is not None and views:
        refs = [f"{v.name}:{f}" for v in views for f in v.feature_names]
        resp = svc.features.get_online_features(features=refs, entity_rows=[row],
                                                full_feature_names=True)
        values, statuses, stamps = resp.to_dict(), resp.statuses, resp.event_timestamps
        out = []
        for v in views:
            feats = []
            for f in v.feature_names:
                col = f"{v.name}__{f}"
                feats.append({"feature": f, "value": _plain(values[col][0]),
                              "status": str(statuses[col][0]),
                              "event_timestamp": stamps[col][0]})
            out.append({"view": v.name, "features": feats})
        data["lookup"] = {"key": row, "views": out}
    return Page("entity.html", data, f"Entity {e.name}", crumbs=[("Entities", "/entities")])


ROUTES = [
    route("GET", "/entities", entity_list),
    route("GET", "/entities/{name}", entity_detail),
]
