"""From fetched features to the model's input, applying the deployment's missing-value policy.

- ``reject``: an entity with no stored feature at all is a 404 naming the entity; a null
  feature of a found entity is a 400 naming the entity, the feature and its status.
- ``default``: missing values take the declared defaults (every feature must declare one).
- ``null``: missing values pass through (NaN in float tensors, null in v1 JSON).

The model input is one ``[N, F]`` array in registry feature order (``tensor``) or one typed
column per feature (``columns``). Datatypes come from the registry (or the predictor's
declared input); nothing is hard-coded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tureen.codecs.typed import typed_column
from tureen.definitions import Field
from tureen.errors import ConfigError, InvalidRequestError, NotFoundError
from tureen.transformer.features import Columns, FeatureTable
from tureen.types import OIP_NUMPY

NDArray = np.ndarray[Any, Any]


def check_defaults(policy: str, defaults: Mapping[str, Any], fields: Sequence[Field]) -> None:
    if policy != "default":
        return
    names = [f.name for f in fields]
    missing = [n for n in names if n not in defaults]
    unknown = [n for n in defaults if n not in names]
    if missing or unknown:
        raise ConfigError(
            "missing.policy 'default' needs a default for every feature"
            + (f"; add defaults for {missing}" if missing else "")
            + (f"; {unknown} are not features of the service ({names})" if unknown else "")
            + "."
        )
    for f in fields:
        v = defaults[f.name]
        if f.dtype.numpy.kind in "iufb" and not f.dtype.is_array:
            try:
                np.asarray([v], dtype=f.dtype.numpy)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"missing.defaults.{f.name} = {v!r} is not a {f.dtype.name}."
                ) from None


def _describe(keys: Columns, i: int) -> str:
    return ", ".join(f"{k}={v[i]!r}" for k, v in keys.items())


def apply_policy(
    table: FeatureTable, keys: Columns, policy: str, defaults: Mapping[str, Any]
) -> list[Sequence[Any]]:
    """Feature columns with missing values handled; raises for ``reject``."""
    values = table.values
    holes = [j for j, col in enumerate(values) if _has_missing(col)]
    if not holes:
        return values
    if policy == "null":
        return values
    if policy == "default":
        out = list(values)
        for j in holes:
            d = defaults[table.fields[j].name]
            out[j] = [d if v is None or v != v else v for v in values[j]]
        return out
    statuses = table.status_of()
    stored = [j for j, s in enumerate(table.stored) if s]
    for i in range(table.n):
        if stored and all(statuses[j][i] == "NOT_FOUND" for j in stored):
            raise NotFoundError(
                f"entity {_describe(keys, i)} has no stored features for this model; "
                "materialize or push its features, or deploy with missing.policy 'default' "
                "or 'null'."
            )
    for j in holes:
        for i, v in enumerate(values[j]):
            if v is None or v != v:
                raise InvalidRequestError(
                    f"feature {table.fields[j].name!r} of entity {_describe(keys, i)} is "
                    f"missing ({statuses[j][i]}); the deployment rejects missing features. "
                    "Refresh the feature, or deploy with missing.policy 'default' or 'null'."
                )
    return values


def _has_missing(col: Sequence[Any]) -> bool:
    """None or NaN anywhere (``v != v`` only holds for NaN)."""
    for v in col:
        if v is None or v != v:
            return True
    return False


def widest_datatype(fields: Sequence[Field]) -> str:
    """The OIP datatype every feature fits into (for a single ``[N, F]`` tensor)."""
    kinds = {f.dtype.numpy.kind for f in fields}
    if not fields or kinds <= {"b"}:
        return "BOOL" if fields else "FP64"
    if kinds <= {"b", "i"}:
        return "INT64" if any(f.dtype.oip == "INT64" for f in fields) else "INT32"
    if kinds <= {"b", "i", "f"}:
        only32 = all(f.dtype.oip in ("FP32", "INT32", "BOOL") for f in fields)
        return "FP32" if only32 else "FP64"
    bad = [f"{f.name} ({f.dtype.name})" for f in fields if f.dtype.numpy.kind not in "bif"]
    raise ConfigError(
        f"features {bad} cannot go into one numeric tensor; use input_format 'columns'."
    )


def as_matrix(columns: Sequence[Sequence[Any]], datatype: str, n: int) -> NDArray:
    """Feature columns as one ``[n, F]`` array of the OIP ``datatype``."""
    dtype = OIP_NUMPY[datatype]
    if n == 1:
        row = [c[0] for c in columns]
        if None in row:
            row = [math.nan if v is None else v for v in row]
        try:
            return np.array([row], dtype=dtype)
        except (TypeError, ValueError):
            pass
    out = np.empty((n, len(columns)), dtype=dtype)
    for j, col in enumerate(columns):
        vals = [math.nan if v is None else v for v in col] if None in col else col
        try:
            out[:, j] = vals
        except (TypeError, ValueError):
            raise InvalidRequestError(
                f"feature column {j} cannot be sent as {datatype}; a missing value in an "
                "integer tensor needs missing.policy 'default'."
            ) from None
    return out


def as_columns(
    columns: Sequence[Sequence[Any]], fields: Sequence[Field]
) -> list[tuple[str, NDArray]]:
    """One typed array per feature (missing floats NaN; missing ints are an error)."""
    out: list[tuple[str, NDArray]] = []
    for f, col in zip(fields, columns, strict=True):
        arr, missing = typed_column(col, f.dtype)
        if missing and f.dtype.numpy.kind != "f":
            raise InvalidRequestError(
                f"feature {f.name!r} ({f.dtype.name}) is missing for {missing} row(s) and "
                "an OIP tensor of that type cannot hold null; deploy with missing.policy "
                "'default' or 'reject'."
            )
        out.append((f.name, arr))
    return out
