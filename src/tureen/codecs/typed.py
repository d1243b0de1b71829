"""Online feature values as typed numpy columns (the registry dtype decides the type).

OIP tensors have no null: a missing value in a float column is NaN; in an integer, bool or
timestamp column it is filled with the given default (0 / False unless told otherwise),
and the caller learns which rows were missing from the returned mask.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from tureen.errors import InvalidRequestError
from tureen.types import DType

NDArray = np.ndarray[Any, Any]


def typed_column(values: Sequence[Any], dtype: DType, fill: Any = None) -> tuple[NDArray, int]:
    """(array of ``dtype.numpy``, number of missing values). ``fill`` replaces missing values
    (None: NaN for floats, zero for numbers and bools, ``b""`` for bytes/strings)."""
    vals = values if isinstance(values, list) else list(values)
    missing = 0
    if dtype.is_array or dtype.numpy == np.dtype(object):
        arr = np.empty(len(vals), dtype=object)
        for i, v in enumerate(vals):
            if v is None:
                missing += 1
                arr[i] = fill if fill is not None else (b"" if not dtype.is_array else [])
            else:
                arr[i] = v
        return arr, missing
    kind = dtype.numpy.kind
    if kind == "M":  # timestamps travel as INT64 epoch microseconds
        out = np.zeros(len(vals), dtype=np.int64)
        for i, v in enumerate(vals):
            if v is None:
                missing += 1
                out[i] = int(fill) if fill is not None else 0
            else:
                out[i] = int(v.timestamp() * 1_000_000) if hasattr(v, "timestamp") else int(v)
        return out, missing
    if None in vals:
        if fill is None:
            fill = math.nan if kind == "f" else 0
        missing = sum(1 for v in vals if v is None)
        vals = [fill if v is None else v for v in vals]
    try:
        return np.asarray(vals, dtype=dtype.numpy), missing
    except (TypeError, ValueError):
        raise InvalidRequestError(
            f"a {dtype.name} feature holds a value that is not a {dtype.name}: "
            f"{next(v for v in vals if not _fits(v, dtype))!r}."
        ) from None


def _fits(v: Any, dtype: DType) -> bool:
    try:
        np.asarray([v], dtype=dtype.numpy)
    except (TypeError, ValueError):
        return False
    return True


def key_values(data: NDArray, dtype: DType, name: str) -> list[Any]:
    """An OIP input tensor as Python entity-key values of ``dtype`` (BYTES → str for String)."""
    flat = data.reshape(-1) if data.ndim != 1 else data
    if dtype.numpy.kind in "iu":
        if flat.dtype.kind not in "iu":
            raise InvalidRequestError(
                f"entity key {name!r} is {dtype.name} but the input holds {flat.dtype} values; "
                f"send datatype {dtype.oip}."
            )
    if dtype.name == "String":
        return [v.decode() if isinstance(v, bytes) else v for v in flat.tolist()]
    out: list[Any] = flat.tolist()
    return out
