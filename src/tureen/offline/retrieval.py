"""Offline retrieval: point-in-time-correct training sets, whatever the engine.

``get_historical_features(engine, snapshot, entity_df, features)`` validates the entity rows,
normalizes their timestamps (naive = UTC, offsets normalized, strings parsed, microseconds),
asks the engine for the stored features, runs on-demand views over the joined columns with
the same ``transform`` serving uses, and returns the entity columns unchanged (the timestamp
column as timestamp[us, UTC]) followed by the requested features in requested order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tureen.definitions import FeatureService
from tureen.errors import InvalidRequestError, NotFoundError
from tureen.feature_refs import FeaturePlan, resolve
from tureen.offline.protocol import OfflineEngine, WritesTrainingSets
from tureen.offline.timestamps import is_timestamp_like, normalize_column
from tureen.registry.snapshot import RegistrySnapshot

DEFAULT_TIMESTAMP = "event_timestamp"
EntityInput: TypeAlias = pd.DataFrame | pa.Table | str | Path
Features: TypeAlias = Sequence[str] | FeatureService | str


class RetrievalJob:
    """A training set, computed on first use and cached."""

    def __init__(
        self,
        run: Callable[[], pa.Table],
        plan: FeaturePlan,
        write_parquet: Callable[[Path], None] | None = None,
    ) -> None:
        self._run = run
        self._write_parquet = write_parquet
        self._table: pa.Table | None = None
        self.plan = plan

    @property
    def feature_names(self) -> list[str]:
        return self.plan.output_names

    def to_arrow(self) -> pa.Table:
        if self._table is None:
            self._table = self._run()
        return self._table

    def to_df(self) -> pd.DataFrame:
        frame: pd.DataFrame = self.to_arrow().to_pandas()
        return frame

    def to_parquet(self, path: str | Path) -> None:
        """Write Parquet; an engine that writes training sets itself (Spark) does it without
        bringing the rows into this process (the result is then a Parquet dataset folder)."""
        if self._table is None and self._write_parquet is not None:
            self._write_parquet(Path(path))
            return
        pq.write_table(self.to_arrow(), str(path))

    def to_file(self, path: str | Path) -> None:
        """Write ``.csv`` as CSV and anything else as Parquet, creating parent folders."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".csv":
            pacsv.write_csv(self.to_arrow(), str(out))
        else:
            self.to_parquet(out)


def get_historical_features(
    engine: OfflineEngine,
    snapshot: RegistrySnapshot,
    entity_df: EntityInput,
    features: Features,
    full_feature_names: bool = False,
    *,
    timestamp_column: str | None = None,
) -> RetrievalJob:
    """A lazy job building the training set for ``entity_df`` (DataFrame, Arrow table, or a
    Parquet/CSV path). Names are resolved and the entity rows validated now; the join runs
    on the first ``to_arrow()`` / ``to_df()`` / ``to_parquet()``."""
    plan = resolve(snapshot, features, full_feature_names)
    rows = _entity_table(entity_df)
    ts_col = _timestamp_column(rows, timestamp_column)
    _check_columns(rows, plan)
    rows = normalize_column(rows, ts_col)
    nulls = rows.column(ts_col).null_count
    if nulls:
        raise InvalidRequestError(
            f"entity_df has {nulls} rows without a value in {ts_col!r}; every row needs the "
            "time to look features up at."
        )
    write: Callable[[Path], None] | None = None
    if isinstance(engine, WritesTrainingSets):
        direct = engine

        def write(path: Path) -> None:
            direct.historical_features_to_parquet(rows, plan, ts_col, path)

    return RetrievalJob(lambda: _build(engine, plan, rows, ts_col), plan, write)


# ---- validation ----------------------------------------------------------------------------
def _entity_table(entity_df: EntityInput) -> pa.Table:
    if isinstance(entity_df, pa.Table):
        return entity_df
    if isinstance(entity_df, pd.DataFrame):
        frame = entity_df
        for col in frame.columns:
            if frame[col].dtype == object and _looks_like_datetimes(frame[col]):
                # Python datetimes with mixed offsets: normalize to one UTC column.
                frame = frame.assign(**{col: pd.to_datetime(frame[col], utc=True)})
        return pa.Table.from_pandas(frame, preserve_index=False)
    if isinstance(entity_df, (str, Path)):
        path = Path(entity_df)
        if not path.exists():
            raise NotFoundError(
                f"entity file {str(path)!r} does not exist; pass a Parquet or CSV file of "
                "entity rows (join keys and an event_timestamp column)."
            )
        if path.suffix.lower() in (".csv", ".tsv") or path.name.lower().endswith(".csv.gz"):
            return pacsv.read_csv(str(path))
        return pq.read_table(str(path))
    raise InvalidRequestError(
        f"entity_df must be a pandas DataFrame, a pyarrow Table or a path to a Parquet/CSV "
        f"file, not {type(entity_df).__name__}."
    )


def _looks_like_datetimes(col: pd.Series) -> bool:
    first = col.dropna()
    if first.empty:
        return False
    return bool(hasattr(first.iloc[0], "tzinfo") and hasattr(first.iloc[0], "year"))


def _timestamp_column(rows: pa.Table, requested: str | None) -> str:
    names = rows.column_names
    if requested is not None:
        if requested not in names:
            raise InvalidRequestError(
                f"entity_df has no timestamp column {requested!r}; its columns: "
                f"{', '.join(names)}."
            )
        return requested
    if DEFAULT_TIMESTAMP in names:
        return DEFAULT_TIMESTAMP
    typed: list[str] = [f.name for f in rows.schema if is_timestamp_like(f.type)]
    if len(typed) == 1:
        return typed[0]
    why = (
        f"several timestamp columns ({', '.join(typed)}) and none is named {DEFAULT_TIMESTAMP!r}"
        if typed else f"no {DEFAULT_TIMESTAMP!r} column and no timestamp-typed column"
    )
    raise InvalidRequestError(
        f"entity_df has {why}; its columns: {', '.join(names)}. Add an "
        f"{DEFAULT_TIMESTAMP!r} column with the time of each row, or pass timestamp_column=."
    )


def _check_columns(rows: pa.Table, plan: FeaturePlan) -> None:
    names = set(rows.column_names)
    missing_keys = [k for k in plan.join_keys if k not in names]
    if missing_keys:
        raise InvalidRequestError(
            f"entity_df lacks join key column(s) {', '.join(map(repr, missing_keys))} needed by "
            f"the requested features; its columns: {', '.join(rows.column_names)}."
        )
    missing_req = [f.name for f in plan.request_fields if f.name not in names]
    if missing_req:
        views = ", ".join(o.name for o in plan.on_demand)
        raise InvalidRequestError(
            f"entity_df lacks request field column(s) {', '.join(map(repr, missing_req))} that "
            f"on-demand view(s) {views} need; its columns: {', '.join(rows.column_names)}."
        )
    clash = [n for n in plan.output_names if n in names]
    if clash:
        raise InvalidRequestError(
            f"entity_df already has column(s) {', '.join(map(repr, clash))}, which the "
            "requested features would be named; rename them or pass full_feature_names=True."
        )


# ---- assembly ------------------------------------------------------------------------------
def _build(engine: OfflineEngine, plan: FeaturePlan, rows: pa.Table, ts_col: str) -> pa.Table:
    joined = engine.historical_features(rows, plan, ts_col)
    computed: dict[tuple[str, str], pa.ChunkedArray | pa.Array] = {}
    for odfv in plan.on_demand:
        inputs: dict[str, Any] = {}
        for vname, feats in odfv.input_views():
            for fname in feats or _read_features(plan, vname):
                inputs[fname] = joined.column(f"{vname}__{fname}")
        for source in odfv.request_sources:
            for f in source.schema:
                inputs[f.name] = rows.column(f.name)
        frame = pa.table(inputs).to_pandas() if inputs else pd.DataFrame(index=range(len(rows)))
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
    out = rows
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
