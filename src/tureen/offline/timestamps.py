"""Event timestamps offline: every instant becomes Arrow ``timestamp[us, UTC]``.

tz-naive values are UTC; tz-aware values keep their instant (mixed offsets are normalized);
strings are parsed as ISO 8601; dates are midnight UTC; precision is microseconds
(nanoseconds are truncated).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa

from tureen.errors import InvalidRequestError

UTC_US = pa.timestamp("us", tz="UTC")


def is_timestamp_like(t: pa.DataType) -> bool:
    return bool(pa.types.is_timestamp(t) or pa.types.is_date(t))


def to_utc_us(values: pa.Array | pa.ChunkedArray, column: str) -> pa.ChunkedArray:
    """``values`` as timestamp[us, UTC]; raises InvalidRequestError naming ``column``."""
    arr = values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values])
    t = arr.type
    if t == UTC_US:
        return arr
    if pa.types.is_timestamp(t):
        if t.unit != "us":
            # Keep the instant, drop sub-microsecond digits (safe=False truncates).
            arr = arr.cast(pa.timestamp("us", tz=t.tz), safe=False)
        # A naive timestamp is UTC: attaching tz="UTC" keeps its wall-clock values.
        return arr.cast(UTC_US)
    if pa.types.is_date(t):
        return arr.cast(pa.timestamp("us")).cast(UTC_US)
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return _parse_strings(arr, column)
    raise InvalidRequestError(
        f"column {column!r} must hold timestamps (datetimes or ISO 8601 strings), not {t}. "
        "Convert it, e.g. pd.to_datetime(df[col], utc=True)."
    )


def _parse_strings(arr: pa.ChunkedArray, column: str) -> pa.ChunkedArray:
    series = pd.Series(arr.to_pylist(), dtype=object)
    try:
        parsed = pd.to_datetime(series, utc=True, format="ISO8601")
    except (ValueError, TypeError) as exc:
        raise InvalidRequestError(
            f"column {column!r} has a value that is not an ISO 8601 timestamp ({exc}). "
            "Write timestamps like 2024-05-01T12:00:00 or 2024-05-01 12:00:00+02:00."
        ) from None
    out = pa.array(parsed, from_pandas=True)
    return to_utc_us(out, column)


def normalize_column(table: pa.Table, column: str) -> pa.Table:
    """``table`` with ``column`` converted to timestamp[us, UTC] in place (same position)."""
    idx = table.schema.get_field_index(column)
    values = table.column(idx)
    if values.type == UTC_US:
        return table
    return table.set_column(idx, pa.field(column, UTC_US), to_utc_us(values, column))


def micros(when: datetime) -> int:
    """Microseconds since the epoch of ``when``; a naive datetime is taken as UTC."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = when - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
