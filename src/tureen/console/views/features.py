"""Feature views and services: schema, source, TTL, tags, owner, freshness and lineage;
the online vector of an entity next to its offline point-in-time vector."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tureen.console.http import ConsoleRequest
from tureen.console.page import Page, route
from tureen.console.paging import after, decode_cursor, limit_arg
from tureen.console.redact import redact_url
from tureen.console.services import ConsoleServices
from tureen.console.views.lineage import models_using, service_deployments
from tureen.definitions import (
    FeatureService,
    FeatureView,
    KafkaSource,
    OnDemandFeatureView,
    PushSource,
    source_of,
)
from tureen.definitions.field import Field
from tureen.errors import InvalidRequestError, TureenError
from tureen.online.protocol import CountsRows
from tureen.registry.snapshot import RegistrySnapshot


def _source(view: FeatureView) -> dict[str, Any]:
    src = view.source
    file = source_of(view)
    kind = "push" if isinstance(src, PushSource) else "kafka" if isinstance(
        src, KafkaSource) else "file"
    return {"kind": kind,
            "push_source": src.name if isinstance(src, PushSource) else None,
            "topic": src.topic if isinstance(src, KafkaSource) else None,
            "bootstrap_servers": redact_url(src.bootstrap_servers)
            if isinstance(src, KafkaSource) else None,
            "path": redact_url(file.path) if "://" in file.path else file.path,
            "timestamp_field": file.timestamp_field,
            "created_timestamp_column": file.created_timestamp_column}


def _fields(fields: tuple[Field, ...] | list[Field]) -> list[dict[str, Any]]:
    return [{"name": f.name, "dtype": f.dtype.name, "description": f.description,
             "tags": dict(f.tags)} for f in fields]


def _services_of(snap: RegistrySnapshot, view: str) -> list[str]:
    out = []
    for s in snap.feature_services.values():
        names = {n for n, _ in s.projections()}
        for n in list(names):
            odfv = snap.on_demand_views.get(n)
            if odfv is not None:
                names.update(v for v, _ in odfv.input_views())
        if view in names:
            out.append(s.name)
    return sorted(out)


def _matches(view: FeatureView | OnDemandFeatureView, q: str, entity: str, tag: str,
             owner: str) -> bool:
    if q and q.lower() not in view.name.lower() and q.lower() not in view.description.lower():
        return False
    if isinstance(view, FeatureView):
        if entity and entity not in {e.name for e in view.entities}:
            return False
        if owner and owner != view.owner:
            return False
        tags = view.tags
    else:
        if entity or owner:
            return False
        tags = view.tags if hasattr(view, "tags") else {}
    if tag:
        k, eq, v = tag.partition("=")
        if k not in tags or (eq and tags[k] != v):
            return False
    return True


def view_list(req: ConsoleRequest, svc: ConsoleServices) -> Page:
    snap = svc.features.snapshot()
    q, entity, tag, owner = req.arg("q"), req.arg("entity"), req.arg("tag"), req.arg("owner")
    limit = limit_arg(req.arg("limit"))
    cursor = decode_cursor(req.arg("after"), 1)
    views: list[FeatureView | OnDemandFeatureView] = [
        *snap.feature_views.values(), *snap.on_demand_views.values()]
    views.sort(key=lambda v: v.name)
    picked = (v for v in views if _matches(v, q, entity, tag, owner))
    page = after(picked, lambda v: (v.name,), cursor, limit)
    rows = []
    for v in page.items:
        if isinstance(v, FeatureView):
            last = snap.last_materialized(v.name)
            stream = svc.streaming_status(v.name)
            rows.append({"name": v.name, "kind": "batch", "entities": [e.name for e in
                         v.entities], "features": len(v.features), "source": _source(v)["kind"],
                         "ttl_seconds": v.ttl_seconds, "online": v.online, "owner": v.owner,
                         "tags": dict(v.tags), "last_materialized": last,
                         "stream_lag_seconds": stream.get("lag_seconds") if stream else None})
        else:
            rows.append({"name": v.name, "kind": "on-demand", "entities": [],
                         "features": len(v.features), "source": "request",
                         "ttl_seconds": None, "online": True, "owner": "", "tags": {},
                         "last_materialized": None, "stream_lag_seconds": None})
    data = {"filters": {"q": q, "entity": entity, "tag": tag, "owner": owner},
            "entities": sorted(snap.entities), "views": rows, "next": page.next,
            "total": len(views)}
    return Page("features.html", data, "Feature views")


def _freshness(svc: ConsoleServices, view: FeatureView) -> dict[str, Any]:
    snap = svc.features.snapshot()
    store = svc.features.config.online_store.type
    intervals = snap.materializations.get(view.name, ())
    mats = [{"store": _where(i.store), "start": i.start, "end": i.end, "at": i.at}
            for i in intervals][-5:]
    per_store: dict[str, Any] = {}
    for i in intervals:  # the last materialization into each online store
        key = _where(i.store)
        if key not in per_store or i.end > per_store[key]:
            per_store[key] = i.end
    count: int | None = None
    online = svc.features.online
    if isinstance(online, CountsRows):
        count = svc.cache.get(("rows", view.name), 10.0, lambda: online.count_rows(view))
    stream = svc.streaming_status(view.name)
    return {"online_store": store, "last_materialized": snap.last_materialized(view.name),
            "per_store": [{"store": k, "until": v} for k, v in per_store.items()],
            "materializations": list(reversed(mats)), "online_rows": count,
            "stream": stream}


def _where(location: str | None) -> str:
    """A store's location as pages may show it (no password)."""
    if not location:
        return "(not recorded)"
    return redact_url(location) or "" if "://" in location else location


def _parse_key(text: str, field: Field) -> Any:
    try:
        if field.dtype.python is int:
            return int(text)
        if field.dtype.python is float:
            return float(text)
    except ValueError:
        raise InvalidRequestError(
            f"{field.name} {text[:40]!r} is not a {field.dtype.name}; type a number.") from None
    return text


def entity_row(req: ConsoleRequest, keys: tuple[Field, ...]) -> dict[str, Any] | None:
    """The entity key typed into a lookup form (``k.<join key>`` fields), or None."""
    given = {f.name: req.arg(f"k.{f.name}") for f in keys}
    if not any(given.values()):
        return None
    missing = [k for k, v in given.items() if not v]
    if missing:
        raise InvalidRequestError(f"type a value for every join key; missing: "
                                  f"{', '.join(missing)}.")
    return {f.name: _parse_key(given[f.name], f) for f in keys}


def _vectors(svc: ConsoleServices, view: FeatureView, row: dict[str, Any]) -> dict[str, Any]:
    import pyarrow as pa

    refs = [f"{view.name}:{f}" for f in view.feature_names]
    online = svc.features.get_online_features(features=refs, entity_rows=[row])
    values = online.to_dict()
    statuses = online.statuses
    stamps = online.event_timestamps
    now = datetime.now(UTC)
    offline_row: dict[str, Any] = {}
    offline_error = None
    try:
        keys = {f.name: pa.array([row[f.name]], f.dtype.arrow) for f in view.key_fields}
        entity = pa.table({**keys, "event_timestamp": pa.array([now], pa.timestamp("us",
                                                                                 tz="UTC"))})
        hist = svc.features.get_historical_features(entity_df=entity, features=refs).to_arrow()
        offline_row = {f: _plain(hist.column(f)[0].as_py()) for f in view.feature_names}
    except TureenError as exc:
        offline_error = str(exc)
    out = []
    for f in view.feature_names:
        on = _plain(values[f][0])
        off = offline_row.get(f)
        out.append({"feature": f, "online": on, "status": str(statuses[f][0]),
                    "event_timestamp": stamps[f][0], "offline": off,
                    "agree": offline_error is None and _same(on, off)})
    return {"key": row, "as_of": now, "rows": out, "offline_error": offline_error}


def _plain(v: Any) -> Any:
    if v is None:
        return None
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and v != v:
        return None
    if hasattr(v, "to_pydatetime"):
        return v.to_pydatetime()
    return v


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, (int, float)):
        return abs(a - b) <= 1e-9 * max(1.0, abs(a))
    return bool(a == b)


def view_detail(req: ConsoleRequest, svc: ConsoleServices) -> Page:
    snap = svc.features.snapshot()
    name = req.params["name"]
    if name in snap.on_demand_views:
        return _odfv_detail(req, svc, snap.on_demand_views[name])
    view = snap.feature_view(name)
    services = _services_of(snap, view.name)
    models = models_using(svc, services)
    data = {
        "name": view.name, "kind": "batch", "description": view.description,
        "entities": [{"name": e.name, "join_keys": list(e.join_keys)} for e in view.entities],
        "join_keys": [{"name": f.name, "dtype": f.dtype.name} for f in view.key_fields],
        "schema": _fields(view.features), "source": _source(view),
        "ttl_seconds": view.ttl_seconds, "online": view.online, "tags": dict(view.tags),
        "owner": view.owner, "freshness": _freshness(svc, view),
        "lineage": {"source": _source(view), "view": view.name, "services": services,
                    "models": models,
                    "deployments": service_deployments(svc, services, models)},
        "lookup": None,
    }
    row = entity_row(req, view.key_fields)
    if row is not None:
        data["lookup"] = _vectors(svc, view, row)
    return Page("feature_view.html", data, f"Feature view {view.name}",
                crumbs=[("Feature views", "/features")])


def _odfv_detail(req: ConsoleRequest, svc: ConsoleServices, v: OnDemandFeatureView) -> Page:
    snap = svc.features.snapshot()
    services = _services_of(snap, v.name)
    models = models_using(svc, services)
    data = {
        "name": v.name, "kind": "on-demand", "description": v.description,
        "schema": _fields(v.features), "inputs": [
            {"view": n, "features": list(fs) if fs else None} for n, fs in v.input_views()],
        "request_fields": [f for rs in v.request_sources for f in _fields(tuple(rs.schema))],
        "tags": dict(getattr(v, "tags", {})), "owner": getattr(v, "owner", ""),
        "lineage": {"services": services, "models": models,
                    "deployments": service_deployments(svc, services, models)},
    }
    return Page("odfv.html", data, f"On-demand view {v.name}",
                crumbs=[("Feature views", "/features")])


def _service_row(snap: RegistrySnapshot, s: FeatureService) -> dict[str, Any]:
    return {"name": s.name, "description": s.description, "owner": s.owner,
            "tags": dict(s.tags), "views": [n for n, _ in s.projections()]}


def service_list(req: ConsoleRequest, svc: ConsoleServices) -> Page:
    snap = svc.features.snapshot()
    q = req.arg("q")
    limit = limit_arg(req.arg("limit"))
    cursor = decode_cursor(req.arg("after"), 1)
    items = sorted(snap.feature_services.values(), key=lambda s: s.name)
    picked = (s for s in items if not q or q.lower() in s.name.lower()
              or q.lower() in s.description.lower())
    page = after(picked, lambda s: (s.name,), cursor, limit)
    data = {"filters": {"q": q}, "services": [_service_row(snap, s) for s in page.items],
            "next": page.next, "total": len(items)}
    return Page("services.html", data, "Feature services")


def service_detail(req: ConsoleRequest, svc: ConsoleServices) -> Page:
    from tureen.feature_refs import resolve

    snap = svc.features.snapshot()
    s = snap.feature_service(req.params["name"])
    plan = resolve(snap, s)
    models = models_using(svc, [s.name])
    data = {
        **_service_row(snap, s),
        "features": [{"ref": r.ref, "dtype": r.dtype.name, "on_demand": r.on_demand}
                     for r in plan.refs],
        "join_keys": list(plan.join_keys),
        "request_fields": [{"name": f.name, "dtype": f.dtype.name}
                           for f in plan.request_fields],
        "lineage": {"views": [n for n, _ in s.projections()], "models": models,
                    "deployments": service_deployments(svc, [s.name], models)},
    }
    return Page("service.html", data, f"Feature service {s.name}",
                crumbs=[("Feature services", "/services")])


ROUTES = [
    route("GET", "/features", view_list),
    route("GET", "/features/{name}", view_detail),
    route("GET", "/services", service_list),
    route("GET", "/services/{name}", service_detail),
]
