"""Lineage: which models were trained on which feature services, and which deployments
serve them (source → view → services → models → deployments)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tureen.console.services import ConsoleServices


def service_models(svc: ConsoleServices) -> dict[str, dict[str, list[int]]]:
    """feature service → model name → versions trained on it (cached a few seconds)."""

    def build() -> dict[str, dict[str, list[int]]]:
        out: dict[str, dict[str, list[int]]] = {}
        for name in svc.model_index.names():
            for s in svc.model_index.summaries(name):
                if s.feature_service:
                    out.setdefault(s.feature_service, {}).setdefault(name, []).append(s.version)
        return out

    result: dict[str, dict[str, list[int]]] = svc.cache.get("service-models", 5.0, build)
    return result


def models_using(svc: ConsoleServices, services: Sequence[str]) -> list[dict[str, Any]]:
    table = service_models(svc)
    merged: dict[str, set[int]] = {}
    for s in services:
        for model, versions in table.get(s, {}).items():
            merged.setdefault(model, set()).update(versions)
    return [{"name": m, "versions": sorted(v)} for m, v in sorted(merged.items())]


def service_deployments(svc: ConsoleServices, services: Sequence[str],
                        models: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    names = {m["name"] for m in models}
    wanted = set(services)
    return [{"name": d.name, "state": d.state, "model": d.model, "version": d.version}
            for d in svc.deployments.list()
            if d.feature_service in wanted or d.model in names]
