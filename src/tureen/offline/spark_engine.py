"""SparkEngine: the offline engine for data that outgrows one machine (PySpark 4).

tureen.yaml::

    offline_store:
      type: spark
      master: local[*]             # or spark://host:7077, yarn, k8s://...
      app_name: tureen
      conf: {spark.sql.shuffle.partitions: "64", spark.driver.memory: 4g}

Semantics are the DuckDB engine's, exactly (DESIGN.md): for each entity row and view, the
source row with the greatest (event_ts, created_ts; an unknown created time sorts lowest)
with ``entity_ts - ttl <= event_ts <= entity_ts``; one output row per entity row, in input
order; nulls where nothing matched. The join is a sort, not a range join: entity rows and
feature rows of one view are unioned, partitioned by join keys, ordered by (time, feature
rows first, created), and each entity row takes the last feature row before it
(``last(..., ignorenulls)`` over a running window); the TTL bound is checked afterwards
(the newest row at or before the entity time is the only candidate inside the TTL).

``historical_features`` returns Arrow on the driver (the OfflineEngine contract);
``historical_features_to_parquet`` builds the whole training set (final names, on-demand
views: :mod:`tureen.offline.spark_training`) inside Spark and writes it as a Parquet dataset
without collecting it.
"""

from __future__ import annotations

import contextlib
import gc
import tempfile
import uuid
import warnings
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as sf
from pyspark.sql import types as st

from tureen.backend_options import SparkOptions
from tureen.definitions import FeatureView, FileSource, source_of
from tureen.errors import InvalidRequestError, TureenError
from tureen.feature_refs import FeaturePlan, ViewRead
from tureen.offline.entity_rows import EntityRows
from tureen.offline.source_files import list_files, locate
from tureen.offline.spark_session import runtime_conf, session, worker_python
from tureen.offline.spark_training import assemble
from tureen.offline.spark_types import arrow_schema, quote, spark_type
from tureen.offline.timestamps import UTC_US, to_utc_us
from tureen.types import DType

ROW = "__tureen_row"
_TS = "__tureen_ts"
_EV, _CR = "__ev", "__cr"
_KIND, _T, _C, _P, _M = "__kind", "__t", "__c", "__p", "__m"
_SPARK_READABLE = ("hdfs", "s3a", "s3", "gs", "abfs", "abfss", "wasb", "wasbs", "file")


class SparkEngine:
    """OfflineEngine on PySpark; pass ``spark`` to share an existing session."""

    def __init__(
        self,
        repo_path: Path | str = ".",
        options: SparkOptions | None = None,
        spark: SparkSession | None = None,
    ) -> None:
        self.repo_path = Path(repo_path)
        self.options = options or SparkOptions()
        if spark is not None:
            runtime_conf(spark)
            worker_python(spark, self.options)
            self.spark, self._owns = spark, False
        else:
            self.spark, self._owns = session(self.options)
        self._appender: Any = None

    @classmethod
    def from_config(cls, options: dict[str, Any], repo_path: Path, project: str) -> SparkEngine:
        return cls(repo_path, SparkOptions.model_validate(options))

    # ---- reading sources -------------------------------------------------------------------
    def _read(self, source: FileSource) -> tuple[DataFrame, set[str]]:
        """The source's physical rows, and the columns that hold nanosecond timestamps
        (Spark reads those as longs: ``spark.sql.legacy.parquet.nanosAsLong``)."""
        loc = locate(source, self.repo_path)
        reader = self.spark.read
        nanos: set[str] = set()
        if loc.fs is not None:
            scheme = loc.written.split("://", 1)[0].lower()
            if scheme not in _SPARK_READABLE:
                raise InvalidRequestError(
                    f"source {loc.written!r}: the Spark engine reads local paths and Hadoop "
                    f"filesystem URLs ({', '.join(_SPARK_READABLE)}), not {scheme}://. Copy "
                    "the data there or use the duckdb offline store."
                )
            paths = [loc.written]
        else:
            files = list_files(loc)  # the same files DuckDB reads; NotFoundError if none
            paths = [f"file://{f}" for f in files.files]
            base = loc.path if not loc.is_glob else _static_base(loc.path)
            if files.hive or len(files.files) > 1:
                reader = reader.option("basePath", f"file://{base}")
            if loc.file_format == "parquet":
                nanos = _nanosecond_columns(files.files)
        try:
            if loc.file_format == "csv":
                df = reader.option("header", "true").option("inferSchema", "false").csv(paths)
            else:
                merge = "true" if len(paths) > 1 else "false"
                df = reader.option("mergeSchema", merge).parquet(*paths)
        except AnalysisException as exc:
            raise InvalidRequestError(f"cannot read source {loc.written!r}: {exc}") from exc
        return df, nanos

    def _projection(
        self, view: FeatureView, features: Sequence[tuple[str, DType]], where_ev: Column | None
    ) -> DataFrame:
        """keys..., features... (declared names and types), __ev, __cr of ``view``."""
        source = source_of(view)
        raw, nanos = self._read(source)
        cols = raw.columns
        what = f"feature view {view.name!r}"
        out: list[Column] = []
        for name, dt in [*((f.name, f.dtype) for f in view.key_fields), *features]:
            phys = _physical(source, cols, name, what)
            is_ts = dt.name == "UnixTimestamp"
            value = _as_timestamp(phys, nanos) if is_ts else sf.col(quote(phys))
            out.append(value.cast(spark_type(dt)).alias(name))
        types = dict(raw.dtypes)
        out.append(_timestamp(source, cols, types, nanos, source.timestamp_field,
                              "timestamp", what).alias(_EV))
        if source.created_timestamp_column:
            out.append(_timestamp(source, cols, types, nanos, source.created_timestamp_column,
                                  "created timestamp", what).alias(_CR))
        else:
            out.append(sf.lit(None).cast(st.TimestampType()).alias(_CR))
        df = raw.select(*out).where(sf.col(_EV).isNotNull())
        return df if where_ev is None else df.where(where_ev)

    # ---- the point-in-time join --------------------------------------------------------------
    def _join(self, entities: DataFrame, plan: FeaturePlan, ts: str,
              bounds: tuple[int, int] | None) -> DataFrame:
        """``entities`` plus ``view__feature`` columns for every stored view read."""
        acc = entities
        for read in plan.reads:
            view = read.view
            keys = list(view.join_keys)
            ttl_us = round(view.ttl_seconds * 1_000_000)
            cond: Column | None = None
            if bounds is not None:
                lo, hi = bounds
                cond = sf.unix_micros(sf.col(_EV)) <= sf.lit(hi)
                if ttl_us > 0:
                    cond = cond & (sf.unix_micros(sf.col(_EV)) >= sf.lit(lo - ttl_us))
            feats = [(f.name, f.dtype) for f in read.features]
            src = self._projection(view, feats, cond)
            for k in keys:  # an ASOF equality never matches a null key
                src = src.where(sf.col(quote(k)).isNotNull())
            payload = sf.struct(sf.col(_EV).alias("ev"),
                               *[sf.col(quote(n)).alias(f"f{i}") for i, (n, _) in enumerate(feats)])
            right = src.select(
                *[sf.col(quote(k)).alias(_key(k)) for k in keys],
                sf.col(_EV).alias(_T), sf.lit(0).alias(_KIND), sf.col(_CR).alias(_C),
                payload.alias(_P),
            )
            left = acc.select(
                "*", *[sf.col(quote(k)).cast(spark_type(view_key(view, k))).alias(_key(k))
                       for k in keys],
                sf.col(quote(ts)).alias(_T), sf.lit(1).alias(_KIND),
                sf.lit(None).cast(st.TimestampType()).alias(_C),
                sf.lit(None).cast(right.schema[_P].dataType).alias(_P),
            )
            window = (
                Window.partitionBy(*[_key(k) for k in keys])
                .orderBy(sf.col(_T).asc(), sf.col(_KIND).asc(), sf.col(_C).asc_nulls_first())
                .rowsBetween(Window.unboundedPreceding, Window.currentRow)
            )
            matched = (
                left.unionByName(right, allowMissingColumns=True)
                .withColumn(_M, sf.last(sf.col(_P), ignorenulls=True).over(window))
                .where(sf.col(_KIND) == 1)
            )
            valid = sf.col(f"{_M}.ev").isNotNull()
            if ttl_us > 0:
                valid = valid & (sf.unix_micros(sf.col(f"{_M}.ev"))
                                 >= sf.unix_micros(sf.col(quote(ts))) - sf.lit(ttl_us))
            acc = matched.select(
                *[sf.col(quote(c)) for c in acc.columns],
                *[sf.when(valid, sf.col(f"{_M}.f{i}")).alias(f"{view.name}__{n}")
                  for i, (n, _) in enumerate(feats)],
            )
        return acc

    # ---- OfflineEngine -------------------------------------------------------------------
    def historical_features(
        self, entity_rows: pa.Table, plan: FeaturePlan, timestamp_column: str
    ) -> pa.Table:
        n = entity_rows.num_rows
        ts = _entity_timestamps(entity_rows, timestamp_column)
        cols: dict[str, Any] = {ROW: pa.array(np.arange(n, dtype=np.int64)), _TS: ts}
        for read in plan.reads:
            for key in read.view.key_fields:
                if key.name not in cols:
                    cols[key.name] = _entity_keys(entity_rows, key.name, key.dtype)
        keyed = pa.table(cols)
        outputs = [(f"{r.view.name}__{f.name}", f.dtype) for r in plan.reads for f in r.features]
        if not plan.reads:
            return entity_rows
        with self._staged(keyed) as entities:
            joined = self._join(entities, plan, _TS, _bounds(ts))
            table = self._collect(joined.select(ROW, *[quote(name) for name, _ in outputs]))
        if table.num_rows != n:
            raise TureenError(
                f"internal error: the Spark point-in-time join returned {table.num_rows} rows "
                f"for {n} entity rows."
            )
        table = table.take(np.argsort(table.column(ROW).to_numpy(), kind="stable"))
        out = entity_rows
        for name, dtype in outputs:
            out = out.append_column(pa.field(name, dtype.arrow),
                                    table.column(name).cast(dtype.arrow))
        return out

    def historical_features_to_parquet(
        self,
        entity_rows: pa.Table | str | Path,
        plan: FeaturePlan,
        timestamp_column: str,
        path: str | Path,
        *,
        mode: str = "error",
    ) -> None:
        """Write the training set (entity columns, then the requested features under their
        final names, on-demand views applied) as a Parquet dataset at ``path`` from Spark's
        executors, rows in input order. ``entity_rows`` is an Arrow table or a Parquet
        dataset path (its order: files by name, then rows within each file). ``mode`` is
        Spark's save mode (error, overwrite, append)."""
        with contextlib.ExitStack() as stack:
            if isinstance(entity_rows, pa.Table):
                table = entity_rows
                idx = table.schema.get_field_index(timestamp_column)
                table = table.set_column(idx, pa.field(timestamp_column, UTC_US),
                                         _entity_timestamps(table, timestamp_column))
                table = table.append_column(
                    ROW, pa.array(np.arange(table.num_rows, dtype=np.int64)))
                entities = stack.enter_context(self._staged(table))
                order, drop = [sf.col(ROW)], [ROW]
            else:
                raw = self.spark.read.parquet(str(entity_rows))
                entities = raw.select(
                    "*", sf.col("_metadata.file_path").alias("__file"),
                    sf.col("_metadata.row_index").alias(ROW),
                ).withColumn(timestamp_column, _as_timestamp(timestamp_column, set()))
                order, drop = [sf.col("__file"), sf.col(ROW)], ["__file", ROW]
            entity_columns = [c for c in entities.columns if c not in drop]
            joined = self._join(entities, plan, timestamp_column, None).orderBy(*order)
            with self._micros_timestamps():  # not INT96: timestamp[us, UTC] as DuckDB writes
                assemble(joined, plan, entity_columns).write.mode(mode).parquet(str(path))

    @contextlib.contextmanager
    def _micros_timestamps(self) -> Iterator[None]:
        """Parquet written meanwhile stores timestamps as UTC microseconds (Spark's default,
        INT96, reads back as naive nanoseconds)."""
        conf = self.spark.conf
        before = conf.get("spark.sql.parquet.outputTimestampType", None)
        conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        try:
            yield
        finally:
            if before is None:
                conf.unset("spark.sql.parquet.outputTimestampType")
            else:
                conf.set("spark.sql.parquet.outputTimestampType", before)

    @contextlib.contextmanager
    def _staged(self, table: pa.Table) -> Iterator[DataFrame]:
        """``table`` as a Spark DataFrame: written as Parquet where executors read it (see
        ``staging_dir``), or sent through the driver when there is nowhere to stage."""
        where = self.options.staging_dir
        if where is None and not (self.spark.sparkContext.master or "").startswith("local"):
            yield self.spark.createDataFrame(table)
            return
        with contextlib.ExitStack() as stack:
            base = where or stack.enter_context(tempfile.TemporaryDirectory(prefix="tureen-"))
            fs, folder = fsspec.core.url_to_fs(base)
            path = f"{folder.rstrip('/')}/entities-{uuid.uuid4().hex}.parquet"
            pq.write_table(table, path, filesystem=fs)
            try:
                yield self.spark.read.parquet(fs.unstrip_protocol(path))
            finally:
                fs.rm(path)

    def feature_row_times(
        self,
        reads: Sequence[ViewRead],
        keys: Sequence[tuple[str, DType]],
        start: datetime | None,
        end: datetime | None,
        entity_filter: Mapping[str, pa.Array],
    ) -> EntityRows:
        """Every distinct (join keys, event time) of the views' rows in [start, end) whose
        keys pass ``entity_filter``, ordered by event time then keys, collected on the
        driver (the DuckDB engine's semantics)."""
        frames = []
        for read in reads:
            cond: Column | None = None
            if start is not None:
                cond = sf.unix_micros(sf.col(_EV)) >= sf.lit(_micros(start))
            if end is not None:
                upper = sf.unix_micros(sf.col(_EV)) < sf.lit(_micros(end))
                cond = upper if cond is None else cond & upper
            src = self._projection(read.view, [], cond)
            for k, _ in keys:
                src = src.where(sf.col(quote(k)).isNotNull())
            for k, values in entity_filter.items():
                src = src.where(sf.col(quote(k)).isin(values.to_pylist()))
            frames.append(src.select(*[quote(k) for k, _ in keys],
                                     sf.col(_EV).alias("event_timestamp")))
        spine = frames[0]
        for more in frames[1:]:
            spine = spine.unionByName(more)
        order = [sf.col("event_timestamp"), *[sf.col(quote(k)) for k, _ in keys]]
        table = self._collect(spine.distinct().orderBy(*order))
        schema = pa.schema([*(pa.field(k, dt.arrow) for k, dt in keys),
                            pa.field("event_timestamp", UTC_US)])
        table = pa.table([table.column(f.name).cast(f.type) for f in schema], schema=schema)
        return EntityRows(schema, table=table)

    def latest_rows(
        self, view: FeatureView, start: datetime | None, end: datetime
    ) -> Iterator[pa.RecordBatch]:
        features = [(f.name, f.dtype) for f in view.features]
        keys = [(f.name, f.dtype) for f in view.key_fields]
        cond = sf.unix_micros(sf.col(_EV)) < sf.lit(_micros(end))
        if start is not None:
            cond = cond & (sf.unix_micros(sf.col(_EV)) >= sf.lit(_micros(start)))
        src = self._projection(view, features, cond)
        window = Window.partitionBy(*[quote(k) for k, _ in keys]).orderBy(
            sf.col(_EV).desc(), sf.col(_CR).desc_nulls_last()
        )
        latest = (
            src.withColumn("__rn", sf.row_number().over(window)).where(sf.col("__rn") == 1)
            .select(*[quote(n) for n, _ in [*keys, *features]],
                    sf.col(_EV).alias("event_timestamp"), sf.col(_CR).alias("created_timestamp"))
        )
        schema = pa.schema(
            [pa.field(n, dt.arrow) for n, dt in [*keys, *features]]
            + [pa.field("event_timestamp", UTC_US), pa.field("created_timestamp", UTC_US)]
        )
        for batch in self._batches(latest):
            yield pa.RecordBatch.from_arrays(
                [batch.column(f.name).cast(f.type) for f in schema], schema=schema)

    def _batches(self, df: DataFrame) -> Iterator[pa.RecordBatch]:
        """``df``'s rows in RecordBatches of at most ``batch_rows``. Where there is a staging
        folder (see ``staging_dir``) Spark writes them there as Parquet and the driver streams
        them back batch by batch, so its memory stays bounded; otherwise they are collected."""
        base = self.options.staging_dir
        local = (self.spark.sparkContext.master or "").startswith("local")
        if base is None and not local:
            yield from self._collect(df).to_batches(max_chunksize=self.options.batch_rows)
            return
        import pyarrow.dataset as ds

        with contextlib.ExitStack() as stack:
            base = base or stack.enter_context(tempfile.TemporaryDirectory(prefix="tureen-"))
            fs, folder = fsspec.core.url_to_fs(base)
            path = f"{folder.rstrip('/')}/latest-{uuid.uuid4().hex}"
            try:
                with self._micros_timestamps():
                    df.write.parquet(fs.unstrip_protocol(path))
            except AnalysisException as exc:
                raise InvalidRequestError(f"Spark could not run the query: {exc}") from exc
            try:
                data = ds.dataset(path, format="parquet", filesystem=fs)
                yield from data.to_batches(batch_size=self.options.batch_rows)
            finally:
                fs.rm(path, recursive=True)

    def append(self, source: FileSource, table: pa.Table) -> None:
        """Pushed rows become one new file in the source's folder, written exactly as the
        DuckDB engine writes them (pyarrow, hidden name then rename), so both read them."""
        if self._appender is None:
            from tureen.backend_options import DuckDBOptions
            from tureen.offline.duckdb_engine import DuckDBEngine

            self._appender = DuckDBEngine(self.repo_path, DuckDBOptions(threads=1))
        self._appender.append(source, table)

    def source_schema(self, source: FileSource) -> pa.Schema:
        df, nanos = self._read(source)
        schema = arrow_schema(df.schema)
        mapping = dict(source.field_mapping)
        return pa.schema([
            pa.field(mapping.get(f.name, f.name),
                     pa.timestamp("ns", tz="UTC") if f.name in nanos else f.type)
            for f in schema
        ])

    def close(self) -> None:
        if self._appender is not None:
            self._appender.close()
            self._appender = None
        if self._owns:
            self.spark.stop()

    def _collect(self, df: DataFrame) -> pa.Table:
        # PySpark leaves the socket it streams results over to the garbage collector (see
        # pyspark.util._load_from_socket), which warns; collect it here, quietly.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            try:
                table: pa.Table = df.toArrow()
            except AnalysisException as exc:
                raise InvalidRequestError(f"Spark could not run the query: {exc}") from exc
            finally:
                gc.collect()
        return table


# ---- helpers -------------------------------------------------------------------------------
def _key(name: str) -> str:
    return f"__key__{name}"


def view_key(view: FeatureView, name: str) -> DType:
    return next(f.dtype for f in view.key_fields if f.name == name)


def _physical(source: FileSource, columns: Sequence[str], logical: str, what: str) -> str:
    for src, dst in source.field_mapping.items():
        if dst == logical and src in columns:
            return src
    if logical in columns:
        return logical
    mapped = [s for s, d in source.field_mapping.items() if d == logical]
    hint = f" (field_mapping reads it from {mapped[0]!r})" if mapped else ""
    raise InvalidRequestError(
        f"{what}: source {source.path!r} has no column {logical!r}{hint}. Its columns: "
        f"{', '.join(columns)}. Fix the view's schema or the source's field_mapping."
    )


def _as_timestamp(column: str, nanos: set[str]) -> Column:
    col = sf.col(quote(column))
    if column in nanos:  # int64 nanoseconds: keep the instant, truncate to microseconds
        return sf.timestamp_micros(sf.floor(col / sf.lit(1000)).cast(st.LongType()))
    return col.cast(st.TimestampType())  # NTZ and dates are taken in the session zone, UTC


def _timestamp(source: FileSource, columns: Sequence[str], types: dict[str, str],
               nanos: set[str], column: str, role: str, what: str) -> Column:
    phys = column if column in columns else _physical(source, columns, column, what)
    t = types[phys]
    if phys in nanos or t.startswith(("timestamp", "date", "string")):
        return _as_timestamp(phys, nanos)
    raise InvalidRequestError(
        f"{what}: {role} column {phys!r} of source {source.path!r} has type {t}; it must hold "
        "timestamps (or ISO 8601 strings)."
    )


def _nanosecond_columns(files: Sequence[str]) -> set[str]:
    out: set[str] = set()
    for f in files[:64]:
        for field in pq.read_schema(f):
            if pa.types.is_timestamp(field.type) and field.type.unit == "ns":
                out.add(field.name)
    return out


def _static_base(pattern: str) -> str:
    parts: list[str] = []
    for part in pattern.split("/"):
        if any(c in part for c in "*?["):
            break
        parts.append(part)
    return "/".join(parts) or "/"


def _entity_timestamps(rows: pa.Table, column: str) -> pa.ChunkedArray:
    ts = to_utc_us(rows.column(column), column)
    if ts.null_count:
        raise InvalidRequestError(
            f"entity rows have {ts.null_count} null values in {column!r}; every row needs a "
            "timestamp."
        )
    return ts


def _entity_keys(rows: pa.Table, key: str, dtype: DType) -> pa.ChunkedArray:
    if key not in rows.column_names:
        raise InvalidRequestError(
            f"entity rows have no join key column {key!r}; they have: "
            f"{', '.join(rows.column_names)}."
        )
    values = rows.column(key)
    try:
        return values.cast(dtype.arrow)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidRequestError(
            f"entity column {key!r} has type {values.type}, which does not convert to the "
            f"join key type {dtype.name}: {exc}"
        ) from None


def _bounds(ts: pa.ChunkedArray) -> tuple[int, int] | None:
    if len(ts) == 0:
        return None
    micros = ts.cast(pa.int64()).to_numpy()
    return int(micros.min()), int(micros.max())


def _micros(when: datetime) -> int:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = when - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


__all__ = ["SparkEngine", "SparkOptions", "spark_type"]
