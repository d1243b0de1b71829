"""Models: names, versions with sortable metrics (keyset-paged: a model with 100,000
versions costs one page of reads), one version's signature and lineage, two side by side."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tureen.console.http import ConsoleRequest
from tureen.console.model_index import Summary, as_row, metric_names
from tureen.console.page import Page, route
from tureen.console.paging import after, decode_cursor, limit_arg
from tureen.console.redact import redact_url
from tureen.console.services import ConsoleServices
from tureen.errors import InvalidRequestError, NotFoundError
from tureen.models.version import ModelVersion, check_name


def _serving(svc: ConsoleServices) -> dict[tuple[str, int], list[str]]:
    out: dict[tuple[str, int], list[str]] = {}
    for d in svc.deployments.list():
        for v in d.versions:
            out.setdefault((d.model, v), []).append(d.name)
    return out


def model_list(req: ConsoleRequest, svc: ConsoleServices) -> Page:
    q = req.arg("q")
    limit = limit_arg(req.arg("limit"))
    cursor = decode_cursor(req.arg("after"), 1)
    names = [n for n in svc.model_index.names() if not q or q.lower() in n.lower()]
    page = after(names, lambda n: (n,), cursor, limit)
    serving = _serving(svc)
    rows = []
    for name in page.items:
        versions = svc.model_index.versions(name)
        latest = svc.model_index.read(name, versions[-1:])
        mv = latest[0] if latest else None
        rows.append({"name": name, "versions": len(versions),
                     "latest": versions[-1] if versions else None,
                     "created_at": mv.created_at if mv else None,
                     "framework": mv.framework if mv else None,
                     "feature_service": mv.feature_service if mv else None,
                     "deployments": sorted({d for (m, _), ds in serving.items() if m == name
                                            for d in ds})})
    data = {"filters": {"q": q}, "models": rows, "next": page.next}
    return Page("models.html", data, "Models")


def _sort_args(req: ConsoleRequest) -> tuple[str, str]:
    sort = req.arg("sort", "version") or "version"
    order = req.arg("order", "desc") or "desc"
    if order not in ("asc", "desc"):
        raise InvalidRequestError(f"order {order[:20]!r} is not valid; use asc or desc.")
    return sort, order


def version_list(req: ConsoleRequest, svc: ConsoleServices) -> Page:
    name = check_name(req.params["name"])
    sort, order = _sort_args(req)
    fs_filter, fw_filter = req.arg("feature_service"), req.arg("framework")
    limit = limit_arg(req.arg("limit"))
    numbers = svc.model_index.versions(name)
    if not numbers:
        svc.models.get(name)  # NotFoundError with suggestions
    sign = -1 if order == "desc" else 1
    rows: list[dict[str, Any]]
    if sort == "version" and not (fs_filter or fw_filter):
        # the cheap path: one directory listing, then only this page's metadata
        cursor = decode_cursor(req.arg("after"), 1)
        ordered = sorted(numbers, key=lambda v: sign * v)
        page = after(ordered, lambda v: (sign * v,), cursor, limit)
        nxt = page.next
        rows = [as_row(mv) for mv in svc.model_index.read(name, page.items)]
        known = metric_names(svc.model_index.read(name, numbers[-1:]))
    else:
        summaries = svc.model_index.summaries(name)
        known = metric_names(summaries)
        if sort != "version" and sort not in known:
            raise InvalidRequestError(
                f"model {name!r} has no metric {sort[:60]!r} to sort by; metrics: "
                f"{', '.join(known) or 'none'}.")

        def picked() -> Iterator[Summary]:
            for s in summaries:
                if fs_filter and s.feature_service != fs_filter:
                    continue
                if fw_filter and s.framework != fw_filter:
                    continue
                yield s

        if sort == "version":
            cursor = decode_cursor(req.arg("after"), 1)
            items = sorted(picked(), key=lambda s: sign * s.version)
            page2 = after(items, lambda s: (sign * s.version,), cursor, limit)
        else:
            cursor = decode_cursor(req.arg("after"), 3)

            def key(s: Summary) -> tuple[int, float, int]:
                value = s.metrics.get(sort)
                # versions without the metric come last, whatever the order
                return (1, 0.0, -s.version) if value is None else (0, sign * value, -s.version)

            items = sorted(picked(), key=key)
            page2 = after(items, key, cursor, limit)
        rows = [as_row(s) for s in page2.items]
        nxt = page2.next
    serving = _serving(svc)
    for r in rows:
        r["deployments"] = serving.get((name, r["version"]), [])
    columns = list(dict.fromkeys(m for r in rows for m in r["metrics"])) or known
    data = {"name": name, "count": len(numbers), "sort": sort, "order": order,
            "filters": {"feature_service": fs_filter, "framework": fw_filter},
            "metrics": columns, "sortable_metrics": known, "versions": rows,
            "next": nxt}
    return Page("model.html", data, f"Model {name}", crumbs=[("Models", "/models")])


def _version(svc: ConsoleServices, name: str, text: str) -> ModelVersion:
    try:
        number = int(text)
    except ValueError:
        raise InvalidRequestError(f"version {text[:20]!r} is not a number.") from None
    mv = svc.models.store.read(check_name(name), number)
    if mv is None:
        svc.models.get(name, number)  # NotFoundError naming the versions that exist
        raise NotFoundError(f"model {name!r} has no version {number}.")
    return mv


def _detail(mv: ModelVersion, svc: ConsoleServices) -> dict[str, Any]:
    d = mv.to_dict()
    lineage = dict(d["lineage"])
    ts = lineage.get("training_set")
    if isinstance(ts, str) and "://" in ts:
        lineage["training_set"] = redact_url(ts)
    run = lineage.get("pipeline_run")
    if run is None and svc.pipeline_runs is not None:
        runs = svc.pipeline_runs
        made = svc.cache.get("registered-by", 10.0, runs.registered_by)
        run = made.get((mv.name, mv.version))
    return {"name": mv.name, "version": mv.version, "framework": mv.framework,
            "created_at": mv.created_at, "description": mv.description,
            "metrics": dict(mv.metrics), "signature": d["signature"], "lineage": lineage,
            "pipeline_run": run, "files": list(mv.files),
            "uri": redact_url(mv.uri) if "://" in mv.uri else mv.uri,
            "deployments": _serving(svc).get((mv.name, mv.version), [])}


def version_detail(req: ConsoleRequest, svc: ConsoleServices) -> Page:
    mv = _version(svc, req.params["name"], req.params["version"])
    data = _detail(mv, svc)
    data["deployment_names"] = [d.name for d in svc.deployments.list() if d.model == mv.name]
    return Page("model_version.html", data, f"Model {mv.ref}",
                crumbs=[("Models", "/models"), (mv.name, f"/models/{mv.name}")])


def compare(req: ConsoleRequest, svc: ConsoleServices) -> Page:
    name = check_name(req.params["name"])
    a_text, b_text = req.arg("a"), req.arg("b")
    if not a_text or not b_text:
        raise InvalidRequestError("pick two versions to compare: ?a=VERSION&b=VERSION.")
    a, b = _version(svc, name, a_text), _version(svc, name, b_text)
    metrics = []
    for m in metric_names([a, b]):
        va, vb = a.metrics.get(m), b.metrics.get(m)
        metrics.append({"metric": m, "a": va, "b": vb,
                        "delta": None if va is None or vb is None else vb - va})
    data = {"name": name, "a": _detail(a, svc), "b": _detail(b, svc), "metrics": metrics,
            "same_signature": a.to_dict()["signature"] == b.to_dict()["signature"]}
    return Page("model_compare.html", data, f"Compare {name} {a.version} and {b.version}",
                crumbs=[("Models", "/models"), (name, f"/models/{name}")])


ROUTES = [
    route("GET", "/models", model_list),
    route("GET", "/models/{name}", version_list),
    route("GET", "/models/{name}/compare", compare),
    route("GET", "/models/{name}/{version}", version_detail),
]
