"""The registry service: plan and apply definitions, read a cached snapshot, record changes.

All writes are read-modify-write against the store's optimistic concurrency: a concurrent
writer makes ``save`` raise ConflictError; lifecycle records (materializations, models,
deployments) are retried automatically on top of the winner, ``apply`` is not (the user
should see that someone else changed the definitions).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from tureen.definitions import (
    Entity,
    FeatureService,
    FeatureView,
    FeatureViewProjection,
    OnDemandFeatureView,
)
from tureen.errors import ConfigError, ConflictError
from tureen.registry.protocol import RegistryStore
from tureen.registry.snapshot import MaterializedInterval, RegistrySnapshot
from tureen.repo_loader import RepoDefinitions

Action = Literal["create", "update", "delete", "unchanged"]


@dataclass(frozen=True)
class Change:
    kind: str
    name: str
    action: Action


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    snapshot: RegistrySnapshot  # what the registry would hold after apply (unsaved)

    @property
    def has_changes(self) -> bool:
        return any(c.action != "unchanged" for c in self.changes)

    def of(self, action: Action, kind: str | None = None) -> list[Change]:
        return [c for c in self.changes if c.action == action and (kind is None or c.kind == kind)]

    def summary(self) -> str:
        parts = [f"{c.action}d {c.kind} {c.name}" for c in self.changes if c.action != "unchanged"]
        return "; ".join(parts) or "no changes"


SourceCheck = Callable[[FeatureView], None]


class Registry:
    def __init__(
        self, store: RegistryStore, project: str, cache_ttl_seconds: float = 2.0
    ) -> None:
        self.store = store
        self.project = project
        self.cache_ttl_seconds = float(getattr(store, "cache_ttl_seconds", cache_ttl_seconds))
        #: the snapshot ``snapshot()`` last read (None before the first read) and when
        #: (``time.monotonic()``); read them only to repeat ``snapshot()``'s own test of whether
        #: it would return ``cached`` (a hot path that cannot afford the call)
        self.cached: RegistrySnapshot | None = None
        self.loaded_at = 0.0
        self._lock = threading.Lock()

    # ---- reading ---------------------------------------------------------------------------
    def snapshot(self, fresh: bool = False) -> RegistrySnapshot:
        """The current snapshot; re-read from the store at most every cache_ttl_seconds."""
        now = time.monotonic()
        cached = self.cached
        if cached is not None and not fresh and now - self.loaded_at < self.cache_ttl_seconds:
            return cached
        with self._lock:
            doc = self.store.load()
            if doc is None:
                snap = RegistrySnapshot(project=self.project)
            elif cached is not None and doc.get("version") == cached.version:
                snap = cached
            else:
                snap = RegistrySnapshot.from_dict(doc, where=self.store.describe())
            self.cached, self.loaded_at = snap, time.monotonic()
            return snap

    def history(self) -> list[dict[str, Any]]:
        return self.store.history()

    # ---- definitions -------------------------------------------------------------------------
    def plan(self, defs: RepoDefinitions, check_source: SourceCheck | None = None) -> Plan:
        current = self.snapshot(fresh=True)
        proposed = build_snapshot(current, defs, check_source)
        changes: list[Change] = []
        for kind, old, new in (
            ("entity", current.entities, proposed.entities),
            ("feature view", current.feature_views, proposed.feature_views),
            ("on-demand feature view", current.on_demand_views, proposed.on_demand_views),
            ("feature service", current.feature_services, proposed.feature_services),
        ):
            changes.extend(_diff(kind, old, new))
        return Plan(tuple(changes), proposed)

    def apply(self, defs: RepoDefinitions, check_source: SourceCheck | None = None) -> Plan:
        plan = self.plan(defs, check_source)
        if plan.has_changes or plan.snapshot.version == 0:
            current_version = plan.snapshot.version
            self.store.save(plan.snapshot.to_dict(), current_version, plan.summary())
        self.snapshot(fresh=True)
        return plan

    # ---- lifecycle records -------------------------------------------------------------------
    def update(
        self, change: Callable[[RegistrySnapshot], RegistrySnapshot], summary: str, retries: int = 5
    ) -> RegistrySnapshot:
        """Read-modify-write ``change`` on the latest snapshot, retrying on conflicts."""
        for attempt in range(retries):
            current = self.snapshot(fresh=True)
            new = change(current)
            try:
                self.store.save(new.to_dict(), current.version, summary)
                return self.snapshot(fresh=True)
            except ConflictError:
                if attempt == retries - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def record_materialization(self, view: str, start: datetime, end: datetime,
                               store: str | None = None, token: str | None = None) -> None:
        at = datetime.now(UTC)

        def change(s: RegistrySnapshot) -> RegistrySnapshot:
            mats = dict(s.materializations)
            interval = MaterializedInterval(start, end, at, store, token)
            mats[view] = (*mats.get(view, ()), interval)[-50:]
            return dataclasses.replace(s, materializations=mats, updated_at=at)

        self.update(change, f"materialized {view} [{start.isoformat()}, {end.isoformat()})")

    def update_extra(self, key: str, fn: Callable[[Any], Any], summary: str) -> RegistrySnapshot:
        """Change one free-form section (``models``, ``deployments``...) atomically."""

        def change(s: RegistrySnapshot) -> RegistrySnapshot:
            extra = dict(s.extra)
            extra[key] = fn(extra.get(key))
            return dataclasses.replace(s, extra=extra, updated_at=datetime.now(UTC))

        return self.update(change, summary)

    def delete(self) -> None:
        self.store.delete()
        self.cached = None


def _diff(kind: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    out: list[Change] = []
    for name, obj in new.items():
        if name not in old:
            out.append(Change(kind, name, "create"))
        elif old[name].to_dict() != obj.to_dict():
            out.append(Change(kind, name, "update"))
        else:
            out.append(Change(kind, name, "unchanged"))
    out.extend(Change(kind, n, "delete") for n in old if n not in new)
    return out


def build_snapshot(
    current: RegistrySnapshot, defs: RepoDefinitions, check_source: SourceCheck | None = None
) -> RegistrySnapshot:
    """Validate ``defs`` as a whole and return the snapshot apply would store."""
    problems: list[str] = []
    entities: dict[str, Entity] = dict(defs.entities)
    for view in defs.feature_views.values():
        for e in view.entities:
            if e.name not in entities:
                problems.append(
                    f"feature view {view.name!r} uses entity {e.name!r}, which no definition "
                    "file declares at module level: declare it (e.g. `account = Entity(...)`)."
                )
            elif entities[e.name] != e:
                problems.append(
                    f"feature view {view.name!r} uses a different entity {e.name!r} than the "
                    "one declared; use the declared object."
                )
        if check_source is not None:
            try:
                check_source(view)
            except Exception as exc:  # collect every problem, report them together
                problems.append(str(exc))
    views: Mapping[str, FeatureView | OnDemandFeatureView] = {
        **defs.feature_views, **defs.on_demand_views
    }
    for od in defs.on_demand_views.values():
        for vname, feats in od.input_views():
            if vname not in defs.feature_views:
                problems.append(
                    f"on-demand view {od.name!r} reads view {vname!r}, which is not declared."
                )
                continue
            for f in feats or ():
                if f not in defs.feature_views[vname].feature_names:
                    problems.append(
                        f"on-demand view {od.name!r} reads {vname}:{f}, which does not exist."
                    )
    for svc in defs.feature_services.values():
        seen: dict[str, str] = {}
        for vname, feats in svc.projections():
            if vname not in views:
                problems.append(
                    f"feature service {svc.name!r} uses view {vname!r}, which is not declared."
                )
                continue
            names = feats if feats is not None else views[vname].feature_names
            for f in names:
                if f not in views[vname].feature_names:
                    problems.append(
                        f"feature service {svc.name!r} selects {vname}:{f}, which does not exist."
                    )
                elif f in seen:
                    problems.append(
                        f"feature service {svc.name!r}: feature name {f!r} comes from both "
                        f"{seen[f]!r} and {vname!r}; select one with view[[...]] so responses "
                        "have unique column names."
                    )
                else:
                    seen[f] = vname
    if problems:
        raise ConfigError("the definitions are not valid:\n  - " + "\n  - ".join(problems))
    services = {
        name: FeatureService(
            s.name,
            [FeatureViewProjection(v, f or ()) for v, f in s.projections()],
            s.description, s.tags, s.owner, s.online_vector,
        )
        for name, s in defs.feature_services.items()
    }
    mats = {k: v for k, v in current.materializations.items() if k in defs.feature_views}
    return dataclasses.replace(
        current,
        project=current.project,
        updated_at=datetime.now(UTC),
        entities=entities,
        feature_views=dict(defs.feature_views),
        on_demand_views=dict(defs.on_demand_views),
        feature_services=services,
        materializations=mats,
    )
