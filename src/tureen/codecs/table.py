"""``parameters.content_type = "pd"``: each input tensor is one column of a table."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tureen.errors import InvalidRequestError
from tureen.types import oip_datatype_of

NDArray = np.ndarray[Any, Any]
PANDAS_CONTENT_TYPE = "pd"


def columns_to_frame(columns: list[tuple[str, NDArray]]) -> pd.DataFrame:
    """Columns (name, array of shape [N] or [N, 1]) as a DataFrame; BYTES become str."""
    data: dict[str, Any] = {}
    rows: int | None = None
    for name, arr in columns:
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1:
            raise InvalidRequestError(
                f"input {name!r} has shape {list(arr.shape)}; with content_type 'pd' each input "
                "is one column of shape [N] or [N, 1]."
            )
        if rows is not None and arr.shape[0] != rows:
            raise InvalidRequestError(
                f"input {name!r} has {arr.shape[0]} rows but earlier inputs have {rows}; every "
                "column of a 'pd' request has the same number of rows."
            )
        rows = arr.shape[0]
        if arr.dtype.kind == "O":
            arr = np.array([v.decode() if isinstance(v, bytes) else v for v in arr], dtype=object)
        data[name] = arr
    return pd.DataFrame(data)


def frame_to_columns(frame: pd.DataFrame) -> list[tuple[str, str, NDArray]]:
    """A DataFrame as (name, OIP datatype, array of shape [N]) per column."""
    out: list[tuple[str, str, NDArray]] = []
    for col in frame.columns:
        arr = frame[col].to_numpy()
        if arr.dtype.kind in "OUS" or str(frame[col].dtype) in ("string", "str"):
            arr = np.array([str(v).encode() for v in arr], dtype=object)
        out.append((str(col), oip_datatype_of(arr), arr))
    return out
