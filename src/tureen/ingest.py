"""Write rows that arrive at run time: ``push`` (through a PushSource) and
``write_to_online_store`` (straight into one view).

Every column is checked against the view's schema BEFORE anything is stored: a bad type, a
missing join key, feature or timestamp column rejects the whole call with an error naming
the column, the expected type and what was given, and nothing is written anywhere. Each
view's online rows are written in one transaction; for ``online_and_offline`` everything
is validated first, then the offline rows are appended (one new file, atomically), then the
online rows written.

Accepted inputs: a pandas DataFrame, an Arrow table or record batch, a list of dicts, or a
dict of lists. Timestamps may be datetimes or ISO-8601 strings (JSON pushes); tz-naive
values are UTC. Every feature of the view must be present (a partial row would overwrite
stored values with nulls). Columns the schema does not know are ignored, as Feast does, so
one frame can feed several views; they are not written offline either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tureen.definitions import (
    FeatureView,
    Field,
    FileSource,
    KafkaSource,
    StreamFeatureView,
    source_of,
)
from tureen.errors import InvalidRequestError
from tureen.offline.protocol import OfflineEngine
from tureen.online.encoding import CREATED_COLUMN, EVENT_COLUMN
from tureen.online.keys import encoder_for
from tureen.online.protocol import CountsStored, OnlineStore
from tureen.registry.snapshot import RegistrySnapshot
from tureen.types import DType, UnixTimestamp, source_type_compatible

if TYPE_CHECKING:
    from tureen.streaming.http_ingest import Receipt

PushTo = Literal["online", "offline", "online_and_offline"]
# A pandas DataFrame, Arrow table or batch, list of dicts, or dict of lists.
Rows: TypeAlias = Any
_TS = pa.timestamp("us", tz="UTC")
#: how far ahead of this machine's clock an event may be dated (``ingest.max_clock_skew_seconds``):
#: newer wins online, so one row dated 2099 would otherwise pin its value for good
DEFAULT_MAX_CLOCK_SKEW = timedelta(minutes=5)


class WriteResult(int):
    """The number of rows accepted (an ``int``, as before), plus per view how many were
    ignored online because the stored row is newer (newer-wins)."""

    ignored_older: dict[str, int]
    #: the newest event time written (microseconds since the epoch), None for no rows
    newest_event_us: int | None
    #: ``FeatureStore.push``'s receipt (``tureen.streaming.http_ingest.Receipt``)
    receipt: Receipt | None

    def __new__(cls, rows: int, ignored_older: Mapping[str, int] | None = None, *,
                newest_event_us: int | None = None, receipt: Receipt | None = None,
                ) -> WriteResult:
        out = super().__new__(cls, rows)
        out.ignored_older = {k: v for k, v in (ignored_older or {}).items() if v}
        out.newest_event_us = newest_event_us
        out.receipt = receipt
        return out


def arrow_columns(df: Rows) -> dict[str, pa.Array | pa.ChunkedArray]:
    """Input rows as Arrow columns, converted one column at a time so errors name it."""
    if isinstance(df, (pa.Table, pa.RecordBatch)):
        return {name: df.column(name) for name in df.schema.names}
    if isinstance(df, pd.DataFrame):
        items: list[tuple[str, Any]] = [(str(c), df[c]) for c in df.columns]
    elif isinstance(df, Mapping):
        items = [(str(k), v) for k, v in df.items()]
    elif isinstance(df, Sequence) and not isinstance(df, (str, bytes)):
        if any(not isinstance(r, Mapping) for r in df):
            raise InvalidRequestError("rows must be dicts (a list of {column: value}).")
        names: dict[str, None] = {}
        for r in df:
            names.update(dict.fromkeys(r))
        items = [(n, [r.get(n) for r in df]) for n in names]
    else:
        raise InvalidRequestError(
            f"cannot read rows from {type(df).__name__}: pass a pandas DataFrame, an Arrow "
            "table, a list of dicts or a dict of lists."
        )
    out: dict[str, pa.Array | pa.ChunkedArray] = {}
    lengths: set[int] = set()
    for name, values in items:
        try:
            arr = pa.array(values, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
            raise InvalidRequestError(
                f"column {name!r} cannot be read as one typed column ({exc}); make every "
                "value the same type."
            ) from None
        out[name] = arr
        lengths.add(len(arr))
    if len(lengths) > 1:
        raise InvalidRequestError(f"columns have different lengths: {sorted(lengths)}.")
    return out


def _cast(name: str, arr: pa.Array | pa.ChunkedArray, dtype: DType, view: str) -> pa.Array:
    """``arr`` as ``dtype.arrow`` or an InvalidRequestError naming the column."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_null(arr.type):  # every value missing: nulls of the declared type
        return pa.nulls(len(arr), dtype.arrow)
    if dtype is UnixTimestamp and (pa.types.is_string(arr.type) or pa.types.is_large_string(
        arr.type
    )):
        return _parse_timestamps(name, arr)
    if not source_type_compatible(dtype, arr.type):
        raise InvalidRequestError(
            f"column {name!r} has type {arr.type}, but {view!r} declares {name} as "
            f"{dtype.name}; convert the column (nothing was stored)."
        )
    try:
        if pa.types.is_timestamp(arr.type) or pa.types.is_date(arr.type):
            if pa.types.is_date(arr.type):
                arr = pc.cast(arr, pa.timestamp("us"))
            return pc.cast(arr, _TS, safe=False)
        if dtype.element is not None and pa.types.is_timestamp(arr.type.value_type):
            return pc.cast(arr, dtype.arrow, safe=False)
        return pc.cast(arr, dtype.arrow, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidRequestError(
            f"column {name!r} does not fit {dtype.name} as {view!r} declares it: {exc} "
            "(nothing was stored)."
        ) from None


def _parse_timestamps(name: str, arr: pa.Array) -> pa.Array:
    try:  # fast path: every string carries its UTC offset (what JSON producers send)
        return pc.cast(arr, _TS)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    try:
        parsed = pd.to_datetime(pd.Series(arr.to_pylist(), dtype=object), utc=True,
                                format="ISO8601")
    except (ValueError, TypeError) as exc:
        raise InvalidRequestError(
            f"column {name!r} holds strings that are not ISO-8601 timestamps: {exc}"
        ) from None
    return pc.cast(pa.array(parsed, from_pandas=True), _TS, safe=False)


def _timestamp_column(
    name: str, cols: Mapping[str, pa.Array | pa.ChunkedArray], view: str, required: bool
) -> pa.Array | None:
    if name not in cols:
        if required:
            raise InvalidRequestError(
                f"missing timestamp column {name!r} for {view!r} (nothing was stored). "
                f"Given columns: {sorted(cols)}."
            )
        return None
    arr = _cast(name, cols[name], UnixTimestamp, view)
    if required and arr.null_count:
        raise InvalidRequestError(
            f"timestamp column {name!r} has {arr.null_count} null value(s); every row "
            "needs an event time (nothing was stored)."
        )
    return arr


def validate_rows(view: FeatureView, cols: Mapping[str, pa.Array | pa.ChunkedArray],
                  naming: FileSource | KafkaSource | None = None, *,
                  max_clock_skew: timedelta | None = DEFAULT_MAX_CLOCK_SKEW,
                  now: datetime | None = None) -> pa.Table:
    """The rows for ``view``, typed by its schema: join keys, features (by feature name),
    ``event_timestamp`` and ``created_timestamp``. Raises before anything is stored.

    ``naming`` is where the input's column names come from (field mapping, timestamp
    columns): by default the view's offline source; a KafkaSource for stream messages.
    An event dated more than ``max_clock_skew`` after ``now`` (this machine's clock) is
    rejected naming its row (None: no limit)."""
    src = naming if naming is not None else source_of(view)
    inverse = {feat: col for col, feat in src.field_mapping.items()}
    out: dict[str, pa.Array] = {}
    missing: list[str] = []

    def column(f: Field) -> None:
        name = f.name if f.name in cols else inverse.get(f.name, f.name)
        if name not in cols:
            missing.append(f"{f.name} ({f.dtype.name})")
            return
        out[f.name] = _cast(name, cols[name], f.dtype, view.name)

    for f in view.key_fields:
        column(f)
    for f in view.features:
        column(f)
    if missing:
        raise InvalidRequestError(
            f"rows for {view.name!r} lack column(s) {', '.join(missing)} (nothing was "
            f"stored). Given columns: {sorted(cols)}."
        )
    for k in view.join_keys:
        if out[k].null_count:
            raise InvalidRequestError(
                f"join key column {k!r} has null values; every row needs its entity key "
                "(nothing was stored)."
            )
    ts_name = src.timestamp_field
    if ts_name not in cols and EVENT_COLUMN in cols:
        ts_name = EVENT_COLUMN
    event = _timestamp_column(ts_name, cols, view.name, required=True)
    assert event is not None
    if max_clock_skew is not None:
        _check_clock_skew(event, ts_name, view.name, max_clock_skew, now)
    out[EVENT_COLUMN] = event
    created = (
        _timestamp_column(src.created_timestamp_column, cols, view.name, required=False)
        if src.created_timestamp_column else None
    )
    out[CREATED_COLUMN] = created if created is not None else pa.nulls(len(event), _TS)
    return pa.table(out)


def _check_clock_skew(event: pa.Array, column: str, view: str, skew: timedelta,
                      now: datetime | None) -> None:
    limit = (now or datetime.now(UTC)) + skew
    ahead = pc.greater(event, pa.scalar(limit, _TS))
    if not pc.any(ahead).as_py():
        return
    row = int(pc.index(ahead, True).as_py())
    when = event[row].as_py()
    raise InvalidRequestError(
        f"row {row} of {view!r}: {column} {when.isoformat()} is "
        f"{_ahead(when - limit + skew)} ahead of this server's clock (at most "
        f"{_ahead(skew)} of clock skew is accepted). Newer wins online, so a value dated in "
        "the future would hide every later write: fix the timestamp (or raise "
        "ingest.max_clock_skew_seconds in tureen.yaml); nothing was stored."
    )


def _ahead(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} seconds"


def _write_online(store: OnlineStore, view: FeatureView, table: pa.Table) -> int:
    """Write ``table`` online; returns how many rows were ignored because the stored row is
    newer (0 when the backend cannot tell)."""
    keys = encoder_for(view.key_fields).encode_arrow(table)
    if isinstance(store, CountsStored):
        stored = store.write_counted(view, keys, table)
        return int(table.num_rows) - stored
    store.write(view, keys, table)
    return 0


def offline_table(source: FileSource, views: Sequence[FeatureView], tables: Sequence[pa.Table]
                   ) -> pa.Table:
    """Rows in the batch source's own column names (inverse field mapping applied)."""
    inverse = {feat: col for col, feat in source.field_mapping.items()}
    cols: dict[str, pa.Array] = {}
    for view, table in zip(views, tables, strict=True):
        for f in (*view.key_fields, *view.features):
            cols.setdefault(inverse.get(f.name, f.name), table.column(f.name))
        cols.setdefault(source.timestamp_field, table.column(EVENT_COLUMN))
        if source.created_timestamp_column:
            cols.setdefault(source.created_timestamp_column, table.column(CREATED_COLUMN))
    return pa.table(cols)


def push(
    snapshot: RegistrySnapshot,
    engine: OfflineEngine | None,
    store: OnlineStore | None,
    source_name: str,
    df: Rows,
    to: PushTo = "online",
    *,
    max_clock_skew: timedelta | None = DEFAULT_MAX_CLOCK_SKEW,
) -> WriteResult:
    """Push rows to every view fed by push source ``source_name``; returns the row count
    (with ``ignored_older``: per view, rows the online store kept a newer value for).

    ``to`` is "online", "offline" or "online_and_offline". Views with ``online=False`` are
    only written offline.
    """
    if to not in ("online", "offline", "online_and_offline"):
        raise InvalidRequestError(
            f"push: to must be 'online', 'offline' or 'online_and_offline', got {to!r}."
        )
    source, views = snapshot.push_source(source_name)
    windowed = [v.name for v in views if isinstance(v, StreamFeatureView) and v.aggregations]
    if windowed:
        raise InvalidRequestError(
            f"push source {source_name!r} feeds stream view(s) {windowed} with windowed "
            "aggregations: send its events through the stream path (POST /ingest/"
            f"{source_name}, or FeatureStore.ingest) so the windows see them."
        )
    cols = arrow_columns(df)
    now = datetime.now(UTC)
    tables = [validate_rows(v, cols, max_clock_skew=max_clock_skew, now=now) for v in views]
    n = tables[0].num_rows if tables else 0
    ignored: dict[str, int] = {}
    if to in ("offline", "online_and_offline"):
        if engine is None:
            raise InvalidRequestError("push to the offline store needs an offline engine.")
        if n:
            engine.append(source.batch_source, offline_table(source.batch_source, views, tables))
    if to in ("online", "online_and_offline"):
        if store is None:
            raise InvalidRequestError("push to the online store needs an online store.")
        for view, table in zip(views, tables, strict=True):
            if view.online and n:
                ignored[view.name] = _write_online(store, view, table)
    newest = pc.max(pc.cast(tables[0].column(EVENT_COLUMN), pa.int64())).as_py() if n else None
    return WriteResult(n, ignored, newest_event_us=newest)


def write_to_online_store(
    snapshot: RegistrySnapshot, store: OnlineStore, view_name: str, df: Rows, *,
    max_clock_skew: timedelta | None = DEFAULT_MAX_CLOCK_SKEW,
) -> WriteResult:
    """Validate rows against view ``view_name`` and write them online; returns the count
    (with ``ignored_older``).

    The event time is read from the view source's ``timestamp_field`` (or a column named
    ``event_timestamp``); a newer stored row is never replaced by an older one.
    """
    view = snapshot.feature_view(view_name)
    table = validate_rows(view, arrow_columns(df), max_clock_skew=max_clock_skew)
    if table.num_rows == 0:
        return WriteResult(0)
    return WriteResult(table.num_rows, {view.name: _write_online(store, view, table)})


__all__ = ["DEFAULT_MAX_CLOCK_SKEW", "PushTo", "WriteResult", "arrow_columns", "offline_table",
           "push", "validate_rows", "write_to_online_store"]
