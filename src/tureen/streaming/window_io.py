"""Arrow tables in and out of a view's windows (``windows.WindowState``).

- In, from a batch: the rows' encoded keys, join values, event times (µs) and aggregated
  columns.
- In, from the event log (restart, backfill): the rows a view's windows count — every
  on-time event, and with ``late_events="update"`` the late ones within its
  ``allowed_lateness``.
- Out: closed windows as a table of the view's schema, dated at the window's end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tureen.definitions import StreamFeatureView
from tureen.online.encoding import CREATED_COLUMN, EVENT_COLUMN
from tureen.online.keys import KeyEncoder
from tureen.streaming.event_log import BEHIND, LATE
from tureen.streaming.windows import WindowRows
from tureen.types import UnixTimestamp

_TS = pa.timestamp("us", tz="UTC")


def micros(arr: pa.Array | pa.ChunkedArray) -> np.ndarray[Any, Any]:
    return np.asarray(pc.cast(arr, pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)


def counted_events(view: StreamFeatureView, log: pa.Table) -> tuple[pa.Table, np.ndarray[Any, Any]]:
    """The event-log rows ``view``'s windows count, and which of them arrived late: every
    on-time event, and with ``late_events="update"`` the late ones within its
    ``allowed_lateness`` (rows of logs written before ``_tureen_behind_us`` count as on
    time if not late, else as too late)."""
    n = log.num_rows
    late = (
        np.asarray(pc.fill_null(log.column(LATE), False).to_numpy(zero_copy_only=False), dtype=bool)
        if LATE in log.column_names
        else np.zeros(n, dtype=bool)
    )
    keep = ~late
    limit = view.allowed_lateness_us
    if limit and BEHIND in log.column_names:
        behind = pc.fill_null(log.column(BEHIND), limit + 1).to_numpy(zero_copy_only=False)
        keep |= late & (np.asarray(behind, dtype=np.int64) <= limit)
    if keep.all():
        return log, late
    return log.filter(pa.array(keep)), late[keep]


def window_args(
    view: StreamFeatureView, table: pa.Table, columns: Sequence[str], encoder: KeyEncoder
) -> tuple[list[bytes], list[tuple[Any, ...]], list[int], dict[str, list[Any]]]:
    """(keys, join values, event times, aggregated ``columns``) of ``table``'s rows."""
    cols: dict[str, list[Any]] = {}
    for col in columns:
        if col in cols:
            continue
        arr = table.column(col)
        if pa.types.is_timestamp(arr.type):
            arr = pc.cast(arr, pa.int64())
        cols[col] = arr.to_pylist()
    keys = encoder.encode_arrow(table)
    joins = list(zip(*[table.column(k).to_pylist() for k in view.join_keys], strict=True))
    return keys, joins, micros(table.column(EVENT_COLUMN)).tolist(), cols


def window_table(view: StreamFeatureView, rows: WindowRows) -> pa.Table:
    """Closed windows as rows of ``view``: join keys, features, event time at the end."""
    ends = pa.array(rows.ends_us, pa.int64()).cast(_TS)
    cols: dict[str, pa.Array] = {}
    for i, k in enumerate(view.key_fields):
        cols[k.name] = pa.array([j[i] for j in rows.entity_values], k.dtype.arrow)
    for f, values in zip(view.features, rows.values, strict=True):
        if f.dtype is UnixTimestamp:
            cols[f.name] = pa.array(values, pa.int64()).cast(_TS)
        else:
            cols[f.name] = pa.array(values, f.dtype.arrow)
    cols[EVENT_COLUMN] = ends
    cols[CREATED_COLUMN] = pa.array(rows.created_us, pa.int64()).cast(_TS)
    return pa.table(cols)
