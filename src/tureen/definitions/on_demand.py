"""On-demand feature views: a Python function over request data and other views.

The same function runs offline (over the training set) and online (over the fetched
features), so training and serving cannot skew. ``mode="pandas"`` receives and returns a
DataFrame; ``mode="python"`` receives and returns a dict of lists (faster online).

The function is stored in the registry as source text and rebuilt from it, so a server does
not need the definition files, only the registry. Keep the function self-contained: import
what it needs inside its body (``pd``, ``np`` and ``math`` are provided).
"""

from __future__ import annotations

import inspect
import math
import textwrap
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from tureen.definitions.feature_view import FeatureView, FeatureViewProjection
from tureen.definitions.field import Field, check_name
from tureen.definitions.sources import RequestSource
from tureen.errors import ConfigError, InvalidRequestError

if TYPE_CHECKING:
    import pandas as pd

Mode = Literal["pandas", "python"]
OdfvSource = FeatureView | FeatureViewProjection | RequestSource


def _function_source(fn: Callable[..., Any]) -> str:
    try:
        src = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError) as exc:
        raise ConfigError(
            f"cannot read the source of on-demand function {getattr(fn, '__name__', fn)!r}: "
            "define it with `def` in a .py file of the feature repo."
        ) from exc
    lines = src.splitlines()
    # Drop decorator lines: the registry rebuilds the plain function.
    while lines and lines[0].lstrip().startswith("@"):
        depth = 0
        while lines:
            line = lines.pop(0)
            depth += line.count("(") - line.count(")")
            if depth <= 0:
                break
    return "\n".join(lines) + "\n"


class _LazyPandas(types.ModuleType):
    """``pd`` in a stored function's namespace: pandas is imported when the function first
    uses it, not when a registry holding on-demand views is read (~0.3-0.8 s per process)."""

    def __getattr__(self, attr: str) -> Any:
        import pandas

        return getattr(pandas, attr)


_PD = _LazyPandas("pandas")


def compile_udf(name: str, source: str) -> Callable[[Any], Any]:
    namespace: dict[str, Any] = {"pd": _PD, "np": np, "math": math}
    try:
        exec(compile(source, f"<on-demand view {name}>", "exec"), namespace)
    except Exception as exc:
        raise ConfigError(f"on-demand view {name!r}: its function does not compile: {exc}") from exc
    fns = [v for v in namespace.values() if inspect.isfunction(v)]
    if not fns:
        raise ConfigError(f"on-demand view {name!r}: no function found in its stored source.")
    fn: Callable[[Any], Any] = fns[-1]
    return fn


@dataclass(frozen=True)
class OnDemandFeatureView:
    name: str
    sources: Sequence[OdfvSource]
    schema: Sequence[Field]
    udf: Callable[[Any], Any]
    mode: Mode = "pandas"
    udf_source: str = ""
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    owner: str = ""

    def __post_init__(self) -> None:
        check_name("OnDemandFeatureView", self.name)
        object.__setattr__(self, "sources", tuple(self.sources))
        object.__setattr__(self, "schema", tuple(self.schema))
        if self.mode not in ("pandas", "python"):
            raise InvalidRequestError(
                f"on-demand view {self.name!r}: mode must be 'pandas' or 'python'."
            )
        if not self.schema:
            raise InvalidRequestError(f"on-demand view {self.name!r} needs an output schema.")
        if not self.udf_source:
            object.__setattr__(self, "udf_source", _function_source(self.udf))

    @property
    def features(self) -> tuple[Field, ...]:
        return tuple(self.schema)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.schema)

    @property
    def request_sources(self) -> tuple[RequestSource, ...]:
        return tuple(s for s in self.sources if isinstance(s, RequestSource))

    def input_views(self) -> list[tuple[str, tuple[str, ...] | None]]:
        """(view name, selected features or None for all) for each feature-view source."""
        out: list[tuple[str, tuple[str, ...] | None]] = []
        for s in self.sources:
            if isinstance(s, FeatureView):
                out.append((s.name, None))
            elif isinstance(s, FeatureViewProjection):
                out.append((s.view_name, s.features))
        return out

    def transform(self, columns: Mapping[str, Sequence[Any]] | pd.DataFrame) -> dict[str, Any]:
        """Run the function over input columns; the one code path for training and serving.

        Returns a dict of output column name -> sequence (list, array or Series) of length n.
        """
        import pandas as pd  # not at module load: defining a repo needs no pandas

        n = len(columns) if isinstance(columns, pd.DataFrame) else (
            len(next(iter(columns.values()))) if columns else 0)
        try:
            if self.mode == "pandas":
                frame = (
                    columns if isinstance(columns, pd.DataFrame) else pd.DataFrame(dict(columns))
                )
                result: Any = self.udf(frame)
            else:
                data = (
                    {c: columns[c].tolist() for c in columns.columns}
                    if isinstance(columns, pd.DataFrame) else dict(columns)
                )
                result = self.udf(data)
        except Exception as exc:
            raise InvalidRequestError(
                f"on-demand view {self.name!r} failed on its inputs: {type(exc).__name__}: {exc}"
            ) from exc
        out: dict[str, Any] = {}
        for f in self.schema:
            try:
                col = result[f.name]
            except (KeyError, TypeError, IndexError):
                raise InvalidRequestError(
                    f"on-demand view {self.name!r} did not return column {f.name!r} declared "
                    f"in its schema."
                ) from None
            if len(col) != n:
                raise InvalidRequestError(
                    f"on-demand view {self.name!r} returned {len(col)} values for {f.name!r} "
                    f"from {n} input rows; return one value per row."
                )
            out[f.name] = col
        return out

    def __getitem__(self, names: Sequence[str]) -> FeatureViewProjection:
        if isinstance(names, str):
            names = [names]
        missing = [n for n in names if n not in self.feature_names]
        if missing:
            raise InvalidRequestError(
                f"on-demand view {self.name!r} has no features {missing}; it has "
                f"{list(self.feature_names)}."
            )
        return FeatureViewProjection(self.name, tuple(names))

    def to_dict(self) -> dict[str, Any]:
        srcs: list[dict[str, Any]] = []
        for s in self.sources:
            if isinstance(s, FeatureView):
                srcs.append({"view": s.name, "features": None})
            elif isinstance(s, FeatureViewProjection):
                srcs.append(s.to_dict())
            else:
                srcs.append(s.to_dict())
        return {
            "name": self.name,
            "sources": srcs,
            "schema": [f.to_dict() for f in self.schema],
            "mode": self.mode,
            "udf_source": self.udf_source,
            "description": self.description,
            "tags": dict(self.tags),
            "owner": self.owner,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OnDemandFeatureView:
        sources: list[OdfvSource] = []
        for s in d["sources"]:
            if s.get("kind") == "request":
                sources.append(RequestSource(s["name"], [Field.from_dict(f) for f in s["schema"]]))
            else:
                sources.append(FeatureViewProjection(s["view"], tuple(s["features"] or ())))
        return cls(
            name=d["name"],
            sources=sources,
            schema=[Field.from_dict(f) for f in d["schema"]],
            udf=compile_udf(d["name"], d["udf_source"]),
            mode=d.get("mode", "pandas"),
            udf_source=d["udf_source"],
            description=d.get("description", ""),
            tags=dict(d.get("tags", {})),
            owner=d.get("owner", ""),
        )


def on_demand_feature_view(
    *,
    sources: Sequence[OdfvSource],
    schema: Sequence[Field],
    mode: Mode = "pandas",
    name: str | None = None,
    description: str = "",
    tags: Mapping[str, str] | None = None,
    owner: str = "",
) -> Callable[[Callable[[Any], Any]], OnDemandFeatureView]:
    """Decorator turning a function into an OnDemandFeatureView named after it."""

    def wrap(fn: Callable[[Any], Any]) -> OnDemandFeatureView:
        return OnDemandFeatureView(
            name=name or fn.__name__,
            sources=sources,
            schema=schema,
            udf=fn,
            mode=mode,
            description=description,
            tags=dict(tags or {}),
            owner=owner,
        )

    return wrap
