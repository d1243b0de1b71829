"""KServe v1: ``{"instances": [...]}`` (or ``{"inputs": ...}``) ⇄ arrays and predictions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tureen.errors import InvalidRequestError

NDArray = np.ndarray[Any, Any]


def instances_of(body: Any) -> Any:
    """The ``instances`` (or ``inputs``) list of a v1 request body."""
    if not isinstance(body, dict):
        raise InvalidRequestError(
            'a v1 request body is a JSON object like {"instances": [[...], ...]}; '
            f"got {type(body).__name__}."
        )
    inst = body.get("instances", body.get("inputs"))
    if not isinstance(inst, list):
        raise InvalidRequestError(
            'a v1 request needs "instances": a list with one item per row, e.g. '
            '{"instances": [[1.0, 2.0]]}.'
        )
    return inst


def instances_to_array(instances: list[Any], dtype: np.dtype[Any] | None = None) -> NDArray:
    """Rows as a rectangular array; raises InvalidRequestError for ragged or mixed rows."""
    try:
        arr = np.asarray(instances, dtype=dtype) if dtype is not None else np.asarray(instances)
    except (ValueError, TypeError):
        raise InvalidRequestError(
            "v1 instances must be rows of equal length holding numbers"
            + (f" convertible to {dtype}" if dtype is not None else "")
            + "; fix the rows or send a v2 request with an explicit datatype."
        ) from None
    return arr


def instances_to_frame(instances: list[Any]) -> pd.DataFrame:
    """Rows given as objects (``[{"a": 1, "b": 2}, ...]``) as a DataFrame."""
    if not all(isinstance(r, dict) for r in instances):
        raise InvalidRequestError(
            "v1 instances mix objects and non-objects; send every row as an object "
            "{column: value} or every row as a list."
        )
    return pd.DataFrame.from_records(instances)


def to_predictions(result: Any) -> Any:
    """A model result (array, frame, list, scalar) as JSON-ready predictions."""
    if isinstance(result, np.ndarray):
        if result.dtype.kind in "SO":
            return [v.decode() if isinstance(v, bytes) else v for v in result.tolist()]
        return result.tolist()
    if isinstance(result, pd.DataFrame):
        return result.to_dict(orient="records")
    if isinstance(result, pd.Series):
        return result.tolist()
    if isinstance(result, np.generic):
        return result.item()
    return result
