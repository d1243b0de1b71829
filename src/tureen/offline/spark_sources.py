"""A ``FileSource`` read by Spark, and a feature view's projection of it.

Spark reads the files DuckDB reads (local paths, hive-partitioned folders, globs) and Hadoop
filesystem URLs; other fsspec URLs are refused with what to do instead. Parquet columns of
nanosecond timestamps come back as longs (``spark.sql.legacy.parquet.nanosAsLong``) and are
turned into microsecond timestamps, keeping the instant. A view's projection has its join
keys and features under their declared names and types (``field_mapping`` applied), the
event time as ``EV`` and the created time as ``CR`` (null when the source has none); rows
without an event time are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as sf
from pyspark.sql import types as st

from tureen.definitions import FeatureView, FileSource, source_of
from tureen.errors import InvalidRequestError
from tureen.offline.source_files import list_files, locate
from tureen.offline.spark_types import quote, spark_type
from tureen.types import DType

EV, CR = "__ev", "__cr"
_SPARK_READABLE = ("hdfs", "s3a", "s3", "gs", "abfs", "abfss", "wasb", "wasbs", "file")


def read_source(
    spark: SparkSession, repo_path: Path, source: FileSource
) -> tuple[DataFrame, set[str]]:
    """The source's physical rows, and the columns that hold nanosecond timestamps
    (Spark reads those as longs: ``spark.sql.legacy.parquet.nanosAsLong``)."""
    loc = locate(source, repo_path)
    reader = spark.read
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


def projection(
    spark: SparkSession,
    repo_path: Path,
    view: FeatureView,
    features: Sequence[tuple[str, DType]],
    where_ev: Column | None,
) -> DataFrame:
    """keys..., features... (declared names and types), __ev, __cr of ``view``."""
    source = source_of(view)
    raw, nanos = read_source(spark, repo_path, source)
    cols = raw.columns
    what = f"feature view {view.name!r}"
    out: list[Column] = []
    for name, dt in [*((f.name, f.dtype) for f in view.key_fields), *features]:
        phys = _physical(source, cols, name, what)
        is_ts = dt.name == "UnixTimestamp"
        value = as_timestamp(phys, nanos) if is_ts else sf.col(quote(phys))
        out.append(value.cast(spark_type(dt)).alias(name))
    types = dict(raw.dtypes)
    out.append(
        _timestamp(source, cols, types, nanos, source.timestamp_field, "timestamp", what).alias(EV)
    )
    if source.created_timestamp_column:
        out.append(
            _timestamp(
                source,
                cols,
                types,
                nanos,
                source.created_timestamp_column,
                "created timestamp",
                what,
            ).alias(CR)
        )
    else:
        out.append(sf.lit(None).cast(st.TimestampType()).alias(CR))
    df = raw.select(*out).where(sf.col(EV).isNotNull())
    return df if where_ev is None else df.where(where_ev)


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


def as_timestamp(column: str, nanos: set[str]) -> Column:
    col = sf.col(quote(column))
    if column in nanos:  # int64 nanoseconds: keep the instant, truncate to microseconds
        return sf.timestamp_micros(sf.floor(col / sf.lit(1000)).cast(st.LongType()))
    return col.cast(st.TimestampType())  # NTZ and dates are taken in the session zone, UTC


def _timestamp(
    source: FileSource,
    columns: Sequence[str],
    types: dict[str, str],
    nanos: set[str],
    column: str,
    role: str,
    what: str,
) -> Column:
    phys = column if column in columns else _physical(source, columns, column, what)
    t = types[phys]
    if phys in nanos or t.startswith(("timestamp", "date", "string")):
        return as_timestamp(phys, nanos)
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
