"""Time ranges from Parquet footers: the min/max statistics of a timestamp column, in µs UTC.

Used to skip work without reading data: source files whose rows all lie outside a
materialization or training window are not scanned (so an incremental run reads only the
new files or partitions), and streamed entity files give their time bounds from footers.
A column without usable statistics (another type, INT96, missing stats) gives None, which
callers treat as "may overlap anything".
"""

from __future__ import annotations

import os
from typing import Any

import pyarrow.parquet as pq

_UNIT_US = {"milliseconds": 1000, "microseconds": 1, "nanoseconds": -1000}
_CACHE: dict[tuple[str, Any, Any, str], tuple[int, int] | None] = {}
_CACHE_MAX = 100_000


def leaf_index(meta: pq.FileMetaData, column: str) -> int | None:
    for i in range(meta.num_columns):
        if meta.schema.column(i).path == column:
            return i
    return None


def row_group_range(meta: pq.FileMetaData, idx: int, group: int) -> tuple[int, int] | None:
    """(min, max) µs of column ``idx`` in row group ``group`` (naive values are UTC)."""
    col = meta.row_group(group).column(idx)
    stats = col.statistics
    if stats is None or not stats.has_min_max or col.physical_type != "INT64":
        return None
    text = str(meta.schema.column(idx).logical_type)
    unit = next((u for name, u in _UNIT_US.items() if f"timeUnit={name}" in text), None)
    if unit is None:
        return None
    lo, hi = int(stats.min_raw), int(stats.max_raw)
    if unit > 0:
        return lo * unit, hi * unit
    return lo // -unit, -(-hi // -unit)


def file_range(meta: pq.FileMetaData, column: str) -> tuple[int, int] | None:
    """(min, max) µs of ``column`` over the whole file; None when unknown or no rows."""
    idx = leaf_index(meta, column)
    if idx is None:
        return None
    lo: int | None = None
    hi: int | None = None
    for g in range(meta.num_row_groups):
        if meta.row_group(g).num_rows == 0:
            continue
        bounds = row_group_range(meta, idx, g)
        if bounds is None:
            return None
        lo = bounds[0] if lo is None else min(lo, bounds[0])
        hi = bounds[1] if hi is None else max(hi, bounds[1])
    return None if lo is None or hi is None else (lo, hi)


def cached_file_range(path: str, column: str, fs: Any = None) -> tuple[int, int] | None:
    """``file_range`` of a local path (``fs`` None) or an fsspec path, cached by the file's
    size and modification time so a repeated run reads no footer twice."""
    try:
        if fs is None:
            st = os.stat(path)
            stamp: tuple[Any, Any] = (st.st_size, st.st_mtime_ns)
        else:
            info = fs.info(path)
            stamp = (info.get("size"), info.get("mtime") or info.get("LastModified"))
    except OSError:
        return None
    key = (path, *stamp, column)
    if key in _CACHE:
        return _CACHE[key]
    try:
        if fs is None:
            meta = pq.read_metadata(path)
        else:
            with fs.open(path, "rb") as fh:
                meta = pq.read_metadata(fh)
        found = file_range(meta, column)
    except (OSError, ValueError):
        found = None
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.clear()
    _CACHE[key] = found
    return found
