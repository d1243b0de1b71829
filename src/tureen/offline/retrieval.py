"""Offline retrieval: point-in-time-correct training sets, whatever the engine.

``get_historical_features(engine, snapshot, entity_df, features)`` validates the entity rows,
normalizes their timestamps (naive = UTC, offsets normalized, strings parsed, microseconds),
asks the engine for the stored features, runs on-demand views over the joined columns with
the same ``transform`` serving uses, and returns the entity columns unchanged (the timestamp
column as timestamp[us, UTC]) followed by the requested features in requested order.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeAlias

import pandas as pd
import pyarrow as pa

from tureen.definitions import FeatureService
from tureen.errors import InvalidRequestError, NotFoundError
from tureen.feature_refs import FeaturePlan, resolve
from tureen.offline.entity_rows import EntityInput, EntityRows, entity_rows
from tureen.offline.protocol import (
    JoinsInChunks,
    ListsFeatureRows,
    OfflineEngine,
    WritesTrainingSets,
)
from tureen.offline.timestamps import is_timestamp_like, normalize_column, to_utc_us
from tureen.offline.training_output import Progress, output_kind, write_chunks, write_staged
from tureen.registry.snapshot import RegistrySnapshot
from tureen.types import DType

DEFAULT_TIMESTAMP = "event_timestamp"
Features: TypeAlias = Sequence[str] | FeatureService | str


class RetrievalJob:
    """A training set, computed on first use. ``to_arrow`` / ``to_df`` hold it in memory (and
    cache it); ``to_parquet`` / ``to_file`` stream it to disk chunk by chunk when the engine
    joins in chunks (DuckDB), or let the engine write it (Spark), without holding it here."""

    def __init__(
        self,
        chunks: Callable[[], Generator[pa.Table, None, None]],
        plan: FeaturePlan,
        total_rows: int | None = None,
        write_parquet: Callable[[Path], None] | None = None,
    ) -> None:
        self._chunks = chunks
        self._write_parquet = write_parquet
        self._table: pa.Table | None = None
        self.plan = plan
        self.total_rows = total_rows

    @property
    def feature_names(self) -> list[str]:
        return self.plan.output_names

    def to_arrow(self) -> pa.Table:
        if self._table is None:
            with closing(self._chunks()) as chunks:
                parts = list(chunks)
            self._table = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
        return self._table

    def to_df(self) -> pd.DataFrame:
        frame: pd.DataFrame = self.to_arrow().to_pandas()
        return frame

    def to_parquet(self, path: str | Path, *, progress: Progress | None = None) -> int:
        """Write Parquet: one file when ``path`` ends in ``.parquet``, else a dataset folder.
        Rows are written chunk by chunk under a staging name and renamed into place at the
        end, so an error or Ctrl-C leaves nothing partial at ``path``. ``progress(done,
        total)`` is called after each chunk. Returns the number of rows written."""
        if self._table is None and self._write_parquet is not None:
            direct = self._write_parquet
            write_staged(path, lambda staging: direct(Path(staging)))
            return self.total_rows or 0
        return self._write(path, progress)

    def to_file(self, path: str | Path, *, progress: Progress | None = None) -> int:
        """``.csv`` as CSV, anything else as Parquet (see ``to_parquet``); creates parent
        folders. Returns the number of rows written."""
        if output_kind(path) == "csv":
            return self._write(path, progress)
        return self.to_parquet(path, progress=progress)

    def _write(self, path: str | Path, progress: Progress | None) -> int:
        if self._table is not None:
            return write_chunks([self._table], path, total_rows=self._table.num_rows,
                                progress=progress)
        report: Progress | None = None
        if progress is not None:
            user = progress

            def report(done: int, total: int) -> None:
                user(done, self.total_rows or total)

        with closing(self._chunks()) as chunks:
            return write_chunks(chunks, path, total_rows=self.total_rows, progress=report)


def get_historical_features(
    engine: OfflineEngine,
    snapshot: RegistrySnapshot,
    entity_df: EntityInput | None,
    features: Features,
    full_feature_names: bool = False,
    *,
    timestamp_column: str | None = None,
    start_date: datetime | None = None,
    end_date: datetime | None = None,
    entity_filter: Mapping[str, Sequence[Any]] | None = None,
) -> RetrievalJob:
    """A lazy job building the training set for ``entity_df`` (DataFrame, Arrow table, a
    Parquet/CSV file, or a folder of Parquet files). Names are resolved and the entity rows'
    columns validated now; the join runs on the first ``to_arrow()`` / ``to_df()`` /
    ``to_parquet()``. Parquet entity rows are read a chunk at a time, never whole, when the
    result is streamed to a file.

    Without ``entity_df``, the entity rows are the feature rows themselves: every distinct
    (join keys, event time) of the requested views' rows with ``start_date <= event time <
    end_date`` (None: unbounded; at least one is required), optionally only for the join key
    values in ``entity_filter`` ({join_key: [values]}), each with every requested feature as
    of its own time. Rows come ordered by ``event_timestamp`` then join keys."""
    plan = resolve(snapshot, features, full_feature_names)
    if entity_df is None:
        return _from_feature_rows(engine, plan, start_date, end_date, entity_filter)
    if start_date is not None or end_date is not None or entity_filter:
        raise InvalidRequestError(
            "start_date, end_date and entity_filter build a training set from the feature rows "
            "themselves; pass them without entity_df, or pass entity_df alone."
        )
    rows = entity_rows(entity_df)
    ts_col = _timestamp_column(rows.schema, timestamp_column)
    _check_columns(rows.schema.names, plan)
    _check_timestamps(rows, ts_col)
    return _job(engine, plan, lambda: rows, ts_col, rows.num_rows)


def _job(
    engine: OfflineEngine,
    plan: FeaturePlan,
    open_rows: Callable[[], EntityRows],
    ts_col: str,
    total_rows: int | None,
) -> RetrievalJob:
    """The job joining the rows ``open_rows()`` gives (closed after each run)."""

    def chunks() -> Generator[pa.Table, None, None]:
        rows = open_rows()
        try:
            job.total_rows = rows.num_rows
            names = rows.schema.names
            if not isinstance(engine, JoinsInChunks):
                whole = normalize_column(rows.read_all(), ts_col)
                yield _assemble(engine.historical_features(whole, plan, ts_col), plan, names)
                return
            with closing(engine.historical_chunks(rows, plan, ts_col)) as joined:
                for part in joined:
                    yield _assemble(part, plan, names)
        finally:
            rows.close()

    write: Callable[[Path], None] | None = None
    if isinstance(engine, WritesTrainingSets):
        direct = engine

        def write(path: Path) -> None:
            rows = open_rows()
            try:
                job.total_rows = rows.num_rows
                source = rows.path if rows.table is None and rows.path else rows.table
                if source is None:
                    source = normalize_column(rows.read_all(), ts_col)
                direct.historical_features_to_parquet(source, plan, ts_col, path)
            finally:
                rows.close()

    job = RetrievalJob(chunks, plan, total_rows, write)
    return job


def _from_feature_rows(
    engine: OfflineEngine,
    plan: FeaturePlan,
    start: datetime | None,
    end: datetime | None,
    entity_filter: Mapping[str, Sequence[Any]] | None,
) -> RetrievalJob:
    if not isinstance(engine, ListsFeatureRows):
        raise InvalidRequestError(
            f"the {type(engine).__name__} offline engine cannot build a training set without "
            "entity rows; pass entity_df."
        )
    if start is None and end is None:
        raise InvalidRequestError(
            "no entity rows: pass entity_df, or start_date and/or end_date to use every feature "
            "row version in that range as an entity row."
        )
    start, end = _utc(start), _utc(end)
    if start is not None and end is not None and start >= end:
        raise InvalidRequestError(
            f"start_date {start.isoformat()} is not before end_date {end.isoformat()}."
        )
    if plan.request_fields:
        raise InvalidRequestError(
            f"on-demand view(s) {', '.join(o.name for o in plan.on_demand)} need request "
            f"field(s) {', '.join(f.name for f in plan.request_fields)}, which only an entity "
            "frame can carry; pass entity_df."
        )
    key_types: dict[str, DType] = {}
    for read in plan.reads:
        for f in read.view.key_fields:
            key_types.setdefault(f.name, f.dtype)
    keys = [(k, key_types[k]) for k in plan.join_keys]
    spine = [r for r in plan.reads if set(r.view.join_keys) == set(key_types)]
    if not spine:
        views = "; ".join(f"{r.view.name} by {', '.join(r.view.join_keys)}" for r in plan.reads)
        raise InvalidRequestError(
            f"without entity_df, at least one requested view must be keyed by all the join keys "
            f"({', '.join(key_types)}), so its rows can be the entity rows; these are keyed: "
            f"{views}. Request such a view too, or pass entity_df."
        )
    if DEFAULT_TIMESTAMP in key_types or DEFAULT_TIMESTAMP in plan.output_names:
        raise InvalidRequestError(
            f"a join key or feature is named {DEFAULT_TIMESTAMP!r}, the column that carries "
            "each row's time here; rename it or pass entity_df."
        )
    filters = _entity_filter(entity_filter or {}, key_types)
    _check_columns([*key_types, DEFAULT_TIMESTAMP], plan)
    lister = engine

    def open_rows() -> EntityRows:
        return lister.feature_row_times(spine, keys, start, end, filters)

    return _job(engine, plan, open_rows, DEFAULT_TIMESTAMP, None)


def _entity_filter(
    given: Mapping[str, Sequence[Any]], key_types: Mapping[str, DType]
) -> dict[str, pa.Array]:
    out: dict[str, pa.Array] = {}
    for key, values in given.items():
        dtype = key_types.get(key)
        if dtype is None:
            raise InvalidRequestError(
                f"entity_filter names {key!r}, which is not a join key of the requested "
                f"features; their join keys: {', '.join(key_types)}."
            )
        if isinstance(values, (str, bytes, int, float)):
            values = [values]  # one value
        try:
            out[key] = pa.array(list(values), type=dtype.arrow)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
            raise InvalidRequestError(
                f"entity_filter values of {key!r} must be {dtype.name}: {exc}"
            ) from None
    return out


def _utc(when: datetime | None) -> datetime | None:
    if when is None:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


# ---- validation ----------------------------------------------------------------------------
def _check_timestamps(rows: EntityRows, ts_col: str) -> None:
    """Fail now, not half-way through a stream: the timestamp column's type must convert,
    and (where known without reading the data) it must have no nulls."""
    if rows.table is not None:
        rows.table = normalize_column(rows.table, ts_col)
        rows.schema = rows.table.schema
    else:
        to_utc_us(pa.array([], rows.schema.field(ts_col).type), ts_col)
    nulls = rows.null_count(ts_col)
    if nulls:
        raise InvalidRequestError(
            f"entity_df has {nulls} rows without a value in {ts_col!r}; every row needs the "
            "time to look features up at."
        )


def _timestamp_column(schema: pa.Schema, requested: str | None) -> str:
    names = schema.names
    if requested is not None:
        if requested not in names:
            raise InvalidRequestError(
                f"entity_df has no timestamp column {requested!r}; its columns: "
                f"{', '.join(names)}."
            )
        return requested
    if DEFAULT_TIMESTAMP in names:
        return DEFAULT_TIMESTAMP
    typed: list[str] = [f.name for f in schema if is_timestamp_like(f.type)]
    if len(typed) == 1:
        return typed[0]
    why = (
        f"several timestamp columns ({', '.join(typed)}) and none is named {DEFAULT_TIMESTAMP!r}"
        if typed else f"no {DEFAULT_TIMESTAMP!r} column and no timestamp-typed column"
    )
    raise InvalidRequestError(
        f"entity_df has {why}; its columns: {', '.join(names)}. Add an "
        f"{DEFAULT_TIMESTAMP!r} column with the time of each row, or name the column "
        "(timestamp_column=; on the command line --timestamp-column)."
    )


def _check_columns(columns: list[str], plan: FeaturePlan) -> None:
    names = set(columns)
    missing_keys = [k for k in plan.join_keys if k not in names]
    if missing_keys:
        raise InvalidRequestError(
            f"entity_df lacks join key column(s) {', '.join(map(repr, missing_keys))} needed by "
            f"the requested features; its columns: {', '.join(columns)}."
        )
    missing_req = [f.name for f in plan.request_fields if f.name not in names]
    if missing_req:
        views = ", ".join(o.name for o in plan.on_demand)
        raise InvalidRequestError(
            f"entity_df lacks request field column(s) {', '.join(map(repr, missing_req))} that "
            f"on-demand view(s) {views} need; its columns: {', '.join(columns)}."
        )
    clash = [n for n in plan.output_names if n in names]
    if clash:
        raise InvalidRequestError(
            f"entity_df already has column(s) {', '.join(map(repr, clash))}, which the "
            "requested features would be named; rename them or pass full_feature_names=True."
        )


# ---- assembly ------------------------------------------------------------------------------
def _assemble(joined: pa.Table, plan: FeaturePlan, entity_names: list[str]) -> pa.Table:
    """Entity columns, then the requested features under their final names, on-demand views
    computed over the joined columns with the same ``transform`` serving uses."""
    n = joined.num_rows
    computed: dict[tuple[str, str], pa.ChunkedArray | pa.Array] = {}
    for odfv in plan.on_demand:
        inputs: dict[str, Any] = {}
        for vname, feats in odfv.input_views():
            for fname in feats or _read_features(plan, vname):
                inputs[fname] = joined.column(f"{vname}__{fname}")
        for source in odfv.request_sources:
            for f in source.schema:
                inputs[f.name] = joined.column(f.name)
        frame = pa.table(inputs).to_pandas() if inputs else pd.DataFrame(index=range(n))
        result = odfv.transform(frame)
        for f in odfv.features:
            try:
                computed[(odfv.name, f.name)] = pa.array(
                    result[f.name], type=f.dtype.arrow, from_pandas=True
                )
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise InvalidRequestError(
                    f"on-demand view {odfv.name!r} returned values for {f.name!r} that are not "
                    f"{f.dtype.name}: {exc}"
                ) from None
    out = joined.select(entity_names)
    for ref in plan.refs:
        name = ref.output_name(plan.full_feature_names)
        values = (
            computed[(ref.view, ref.feature)] if ref.on_demand
            else joined.column(f"{ref.view}__{ref.feature}")
        )
        out = out.append_column(pa.field(name, ref.dtype.arrow), values)
    return out


def _read_features(plan: FeaturePlan, name: str) -> list[str]:
    """Names of the features read from stored view ``name`` (ODFV inputs included)."""
    for read in plan.reads:
        if read.view.name == name:
            return [f.name for f in read.features]
    raise NotFoundError(f"feature view {name!r} is not part of this retrieval plan.")
