"""RegistrySnapshot: every definition of a project at one registry version, with lookups.

The snapshot is what services read; storage backends only persist its dict form.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from tureen.definitions import (
    Entity,
    FeatureService,
    FeatureView,
    OnDemandFeatureView,
    PushSource,
)
from tureen.errors import NotFoundError, RegistryCorruptError, suggest

FORMAT_VERSION = 1
T = TypeVar("T")


@dataclass(frozen=True)
class MaterializedInterval:
    """One materialization of a view: ``[start, end)`` written ``at``, into the online store
    at ``store`` (its location; None in registries written before stores were recorded),
    whose marker then held ``token`` (see ``tureen.watermarks``)."""

    start: datetime
    end: datetime
    at: datetime
    store: str | None = None
    token: str | None = None

    def to_dict(self) -> dict[str, str]:
        d = {"start": self.start.isoformat(), "end": self.end.isoformat(),
             "at": self.at.isoformat()}
        if self.store is not None:
            d["store"] = self.store
        if self.token is not None:
            d["token"] = self.token
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, str]) -> MaterializedInterval:
        return cls(datetime.fromisoformat(d["start"]), datetime.fromisoformat(d["end"]),
                   datetime.fromisoformat(d["at"]), d.get("store"), d.get("token"))


@dataclass(frozen=True)
class RegistrySnapshot:
    project: str
    version: int = 0
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    entities: Mapping[str, Entity] = field(default_factory=dict)
    feature_views: Mapping[str, FeatureView] = field(default_factory=dict)
    on_demand_views: Mapping[str, OnDemandFeatureView] = field(default_factory=dict)
    feature_services: Mapping[str, FeatureService] = field(default_factory=dict)
    materializations: Mapping[str, tuple[MaterializedInterval, ...]] = field(default_factory=dict)
    # Free-form sections other services keep in the registry (models, deployments, ...).
    extra: Mapping[str, Any] = field(default_factory=dict)

    # ---- lookups ---------------------------------------------------------------------------
    def entity(self, name: str) -> Entity:
        return _get(self.entities, name, "entity")

    def feature_view(self, name: str) -> FeatureView:
        return _get(self.feature_views, name, "feature view")

    def on_demand_view(self, name: str) -> OnDemandFeatureView:
        return _get(self.on_demand_views, name, "on-demand feature view")

    def feature_service(self, name: str) -> FeatureService:
        return _get(self.feature_services, name, "feature service")

    def any_view(self, name: str) -> FeatureView | OnDemandFeatureView:
        if name in self.feature_views:
            return self.feature_views[name]
        if name in self.on_demand_views:
            return self.on_demand_views[name]
        names = list(self.feature_views) + list(self.on_demand_views)
        raise NotFoundError(
            f"no feature view named {name!r} in project {self.project!r}.{suggest(name, names)}"
            f" Run `tureen features list` to see them, or `tureen apply` if you just added it.",
            kind="feature view",
        )

    def push_source(self, name: str) -> tuple[PushSource, list[FeatureView]]:
        views = [
            v for v in self.feature_views.values()
            if isinstance(v.source, PushSource) and v.source.name == name
        ]
        if not views:
            names = sorted({v.source.name for v in self.feature_views.values()
                            if isinstance(v.source, PushSource)})
            raise NotFoundError(
                f"no push source named {name!r} feeds a feature view.{suggest(name, names)} "
                f"Push sources in use: {names or 'none'}.", kind="push source"
            )
        src = views[0].source
        assert isinstance(src, PushSource)
        return src, views

    def last_materialized(self, view: str, store: str | None = None) -> datetime | None:
        """Where materialization of ``view`` stopped (into the online store at ``store``,
        or into any store when None)."""
        intervals = self.materializations.get(view, ())
        return max((i.end for i in intervals if store is None or i.store == store),
                   default=None)

    # ---- (de)serialization -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "project": self.project,
            "version": self.version,
            "updated_at": self.updated_at.isoformat(),
            "entities": [e.to_dict() for e in self.entities.values()],
            "feature_views": [v.to_dict() for v in self.feature_views.values()],
            "on_demand_views": [v.to_dict() for v in self.on_demand_views.values()],
            "feature_services": [s.to_dict() for s in self.feature_services.values()],
            "materializations": {
                k: [i.to_dict() for i in v] for k, v in self.materializations.items()
            },
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "registry") -> RegistrySnapshot:
        try:
            if d.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"unsupported format_version {d.get('format_version')!r}")
            entities = {e["name"]: Entity.from_dict(e) for e in d["entities"]}
            views = {v["name"]: FeatureView.from_dict(v, entities) for v in d["feature_views"]}
            odfvs = {
                v["name"]: OnDemandFeatureView.from_dict(v) for v in d.get("on_demand_views", [])
            }
            services = {s["name"]: FeatureService.from_dict(s) for s in d["feature_services"]}
            mats = {
                k: tuple(MaterializedInterval.from_dict(i) for i in v)
                for k, v in d.get("materializations", {}).items()
            }
            return cls(
                project=d["project"],
                version=int(d["version"]),
                updated_at=datetime.fromisoformat(d["updated_at"]),
                entities=entities,
                feature_views=views,
                on_demand_views=odfvs,
                feature_services=services,
                materializations=mats,
                extra=dict(d.get("extra", {})),
            )
        except RegistryCorruptError:
            raise
        except Exception as exc:
            raise RegistryCorruptError(
                f"the registry at {where} cannot be read ({type(exc).__name__}: {exc}). It was "
                "left untouched. Restore it from a backup or history, or remove it and run "
                "`tureen apply` to rebuild it from the definitions."
            ) from exc


def _get(table: Mapping[str, T], name: str, kind: str) -> T:
    try:
        return table[name]
    except KeyError:
        raise NotFoundError(
            f"no {kind} named {name!r}.{suggest(name, table)} "
            f"Known: {', '.join(sorted(table)) or 'none'}. Did you run `tureen apply`?",
            kind=kind,
        ) from None
