"""Training/serving skew: the features as served vs. the offline store's point-in-time
recomputation for the same entities and times.

For every logged row (the newest ``limit`` when given) the entity keys and the time it was
served become an entity row; ``get_historical_features`` recomputes the deployment's
features as of that time; each feature is compared value by value. A value mismatches when
exactly one side is null, or both are set and differ (floats: relative tolerance
``rtol``, absolute ``atol``). A served value older than the point-in-time value (not yet
materialized) counts as a mismatch: that staleness is skew the model saw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa

from tureen.errors import InvalidRequestError
from tureen.feature_refs import resolve
from tureen.inference_log.dataset import ENTITY, FEATURE, REQUEST, columns_with
from tureen.store import FeatureStore


@dataclass(frozen=True)
class FeatureSkew:
    feature: str
    compared: int
    mismatches: int
    served_nulls: int
    offline_nulls: int
    examples: tuple[dict[str, Any], ...]

    @property
    def mismatch_rate(self) -> float:
        return self.mismatches / self.compared if self.compared else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "compared": self.compared,
                "mismatches": self.mismatches, "mismatch_rate": self.mismatch_rate,
                "served_nulls": self.served_nulls, "offline_nulls": self.offline_nulls,
                "examples": list(self.examples)}


def _is_null(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NaT


def values_equal(a: Any, b: Any, rtol: float = 1e-6, atol: float = 1e-9) -> bool:
    if _is_null(a) or _is_null(b):
        return _is_null(a) and _is_null(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a) == bool(b)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=rtol, abs_tol=atol)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(
            values_equal(x, y, rtol, atol) for x, y in zip(a, b, strict=False)
        )
    return bool(a == b)


def compute_skew(
    store: FeatureStore,
    log: pa.Table,
    feature_service: str,
    limit: int | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    examples: int = 3,
) -> list[FeatureSkew]:
    plan = resolve(store.snapshot(), feature_service)
    logged_features = set(columns_with(log, FEATURE))
    entity_keys = columns_with(log, ENTITY)
    missing_keys = [k for k in plan.join_keys if k not in entity_keys]
    if missing_keys:
        raise InvalidRequestError(
            f"the log has no entity keys {missing_keys} (it has {entity_keys}); skew needs "
            "requests logged with their entity rows."
        )
    compared = [n for n in plan.output_names if n in logged_features]
    if not compared:
        raise InvalidRequestError(
            f"none of the features of service {feature_service!r} ({plan.output_names}) were "
            f"logged (logged: {sorted(logged_features)}); log with mode ALL or MODEL_INPUTS."
        )
    if limit is not None and log.num_rows > limit:
        log = log.slice(log.num_rows - limit)
    entity: dict[str, Any] = {k: log.column(ENTITY + k) for k in plan.join_keys}
    for f in plan.request_fields:  # request data the on-demand views need
        col = next((c for c in (REQUEST + f.name, FEATURE + f.name, ENTITY + f.name)
                    if c in log.column_names), None)
        if col is None:
            raise InvalidRequestError(
                f"service {feature_service!r} needs request field {f.name!r}, which was not "
                "logged; it cannot be recomputed offline."
            )
        entity[f.name] = log.column(col)
    entity["event_timestamp"] = log.column("timestamp")
    offline = store.get_historical_features(
        pa.table(entity), feature_service=feature_service
    ).to_arrow()
    out = []
    for name in compared:
        served = log.column(FEATURE + name).to_pylist()
        recomputed = offline.column(name).to_pylist()
        bad = [i for i, (a, b) in enumerate(zip(served, recomputed, strict=True))
               if not values_equal(a, b, rtol, atol)]
        ex = tuple(
            {"request_id": log.column("request_id")[i].as_py(),
             "entity": {k: log.column(ENTITY + k)[i].as_py() for k in plan.join_keys},
             "served": served[i], "offline": recomputed[i]}
            for i in bad[:examples]
        )
        out.append(FeatureSkew(
            name, len(served), len(bad), sum(_is_null(v) for v in served),
            sum(_is_null(v) for v in recomputed), ex,
        ))
    return out
