"""FeatureService: the named set of features one model consumes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tureen.definitions.feature_view import FeatureView, FeatureViewProjection
from tureen.definitions.field import check_name
from tureen.definitions.on_demand import OnDemandFeatureView
from tureen.errors import InvalidRequestError

ServiceItem = FeatureView | FeatureViewProjection | OnDemandFeatureView


@dataclass(frozen=True)
class FeatureService:
    """``features`` lists views (all their features) or projections ``view[["a", "b"]]``.

    ``online_vector=True`` asks the online store to keep a per-service vector: one stored
    row per entity holding the rows of every view of the service, written in the same
    transaction as the views, so a read of the service is one lookup per entity
    (``tureen.online.vectors``; a store or service it does not apply to reads view by view,
    with the same answer)."""

    name: str
    features: Sequence[ServiceItem]
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    owner: str = ""
    online_vector: bool = False

    def __post_init__(self) -> None:
        check_name("FeatureService", self.name)
        object.__setattr__(self, "features", tuple(self.features))
        if not self.features:
            raise InvalidRequestError(f"FeatureService {self.name!r} lists no features.")
        for item in self.features:
            if not isinstance(item, (FeatureView, FeatureViewProjection, OnDemandFeatureView)):
                raise InvalidRequestError(
                    f"FeatureService {self.name!r}: features must be feature views or "
                    f"view[[...]] projections, got {item!r}."
                )

    def projections(self) -> list[tuple[str, tuple[str, ...] | None]]:
        """(view name, selected feature names or None for all) in declaration order."""
        out: list[tuple[str, tuple[str, ...] | None]] = []
        for item in self.features:
            if isinstance(item, FeatureViewProjection):
                out.append((item.view_name, item.features or None))
            else:
                out.append((item.name, None))
        return out

    def to_dict(self) -> dict[str, Any]:
        extra = {"online_vector": True} if self.online_vector else {}
        return {
            "name": self.name,
            "features": [
                {"view": v, "features": list(f) if f is not None else None}
                for v, f in self.projections()
            ],
            "description": self.description,
            "tags": dict(self.tags),
            "owner": self.owner,
            **extra,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureService:
        # Stored form references views by name; resolution happens against the registry.
        items: list[ServiceItem] = [
            FeatureViewProjection(p["view"], tuple(p["features"]) if p["features"] else ())
            for p in d["features"]
        ]
        return cls(d["name"], items, d.get("description", ""), dict(d.get("tags", {})),
                   d.get("owner", ""), bool(d.get("online_vector", False)))
