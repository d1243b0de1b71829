"""FeatureView: typed features of one or more entities, read from one source."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from tureen.definitions.field import Entity, Field, check_name
from tureen.definitions.sources import (
    DataSource,
    FileSource,
    KafkaSource,
    PushSource,
    RequestSource,
    source_from_dict,
)
from tureen.errors import InvalidRequestError, NotFoundError, suggest


@dataclass(frozen=True)
class FeatureViewProjection:
    """A view with a subset of its features, as written ``view[["a", "b"]]``."""

    view_name: str
    features: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"view": self.view_name, "features": list(self.features)}


@dataclass(frozen=True)
class FeatureView:
    """Features of ``entities`` read from ``source``; ``ttl`` bounds how old a value may be.

    ``ttl=None`` or ``timedelta(0)`` means unbounded. ``schema`` lists the features; fields
    named like a join key are accepted and treated as the entity column, not a feature.
    """

    name: str
    entities: Sequence[Entity]
    schema: Sequence[Field]
    source: FileSource | PushSource | KafkaSource
    ttl: timedelta | None = None
    online: bool = True
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    owner: str = ""

    def __post_init__(self) -> None:
        check_name("FeatureView", self.name)
        object.__setattr__(self, "entities", tuple(self.entities))
        object.__setattr__(self, "schema", tuple(self.schema))
        self._check_source()
        for e in self.entities:
            if not isinstance(e, Entity):
                raise InvalidRequestError(
                    f"FeatureView {self.name!r}: entities must be Entity objects, got {e!r}."
                )
        ttl = self.ttl if self.ttl is not None else timedelta(0)
        if not isinstance(ttl, timedelta) or ttl < timedelta(0):
            raise InvalidRequestError(
                f"FeatureView {self.name!r}: ttl must be a non-negative timedelta (0 or None "
                f"for unbounded), got {self.ttl!r}."
            )
        object.__setattr__(self, "ttl", ttl)
        seen: set[str] = set()
        for f in self.schema:
            if f.name in seen:
                raise InvalidRequestError(
                    f"FeatureView {self.name!r} declares field {f.name!r} twice."
                )
            seen.add(f.name)
        if not self.features:
            raise InvalidRequestError(
                f"FeatureView {self.name!r} has no features: its schema only names join keys."
            )

    def _check_source(self) -> None:
        if isinstance(self.source, RequestSource):
            raise InvalidRequestError(
                f"FeatureView {self.name!r}: a RequestSource has no stored rows; use it in an "
                "on-demand feature view instead."
            )
        if not isinstance(self.source, (FileSource, PushSource)):
            raise InvalidRequestError(
                f"FeatureView {self.name!r}: source must be a FileSource or PushSource, "
                f"got {type(self.source).__name__} (a KafkaSource feeds a StreamFeatureView)."
            )

    @property
    def offline_source(self) -> FileSource:
        """The files holding this view's feature rows (a push source's batch source)."""
        return self.source if isinstance(self.source, FileSource) else self.source.batch_source

    @property
    def join_keys(self) -> tuple[str, ...]:
        return tuple(k for e in self.entities for k in e.join_keys)

    @property
    def key_fields(self) -> tuple[Field, ...]:
        return tuple(f for e in self.entities for f in e.key_fields)

    @property
    def features(self) -> tuple[Field, ...]:
        keys = set(self.join_keys)
        return tuple(f for f in self.schema if f.name not in keys)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def ttl_seconds(self) -> float:
        assert self.ttl is not None
        return self.ttl.total_seconds()

    def feature(self, name: str) -> Field:
        for f in self.features:
            if f.name == name:
                return f
        raise NotFoundError(
            f"feature view {self.name!r} has no feature {name!r}."
            f"{suggest(name, self.feature_names)} It has: {', '.join(self.feature_names)}."
        )

    def __getitem__(self, names: Sequence[str]) -> FeatureViewProjection:
        if isinstance(names, str):
            names = [names]
        for n in names:
            self.feature(n)
        return FeatureViewProjection(self.name, tuple(names))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "entities": [e.name for e in self.entities],
            "schema": [f.to_dict() for f in self.schema],
            "source": self.source.to_dict(),
            "ttl_seconds": self.ttl_seconds,
            "online": self.online,
            "description": self.description,
            "tags": dict(self.tags),
            "owner": self.owner,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], entities: Mapping[str, Entity]) -> FeatureView:
        if d.get("kind") == "stream":
            from tureen.definitions.stream import StreamFeatureView

            return StreamFeatureView.from_dict(d, entities)
        src = source_from_dict(d["source"])
        assert isinstance(src, (FileSource, PushSource, KafkaSource))
        return cls(
            name=d["name"],
            entities=[entities[n] for n in d["entities"]],
            schema=[Field.from_dict(f) for f in d["schema"]],
            source=src,
            ttl=timedelta(seconds=d.get("ttl_seconds", 0)),
            online=d.get("online", True),
            description=d.get("description", ""),
            tags=dict(d.get("tags", {})),
            owner=d.get("owner", ""),
        )


def source_of(view: FeatureView) -> FileSource:
    """The files ``view``'s feature rows live in (a push source's batch source; a stream
    view's offline log)."""
    return view.offline_source


__all__ = ["DataSource", "FeatureView", "FeatureViewProjection", "source_of"]
