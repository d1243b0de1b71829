"""Data between Spark's driver and its executors.

- Entity rows go to the executors as a Parquet file in ``staging_dir`` (or a temporary
  folder with a local master), or through the driver when there is nowhere to stage.
- Large results come back the same way, batch by batch, so the driver's memory stays
  bounded; small ones are collected as Arrow.
- Parquet Spark writes stores timestamps as UTC microseconds, as DuckDB writes them (Spark's
  default, INT96, reads back as naive nanoseconds).
"""

from __future__ import annotations

import contextlib
import gc
import tempfile
import uuid
import warnings
from collections.abc import Iterator

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession

from tureen.backend_options import SparkOptions
from tureen.errors import InvalidRequestError


@contextlib.contextmanager
def micros_timestamps(spark: SparkSession) -> Iterator[None]:
    """Parquet written meanwhile stores timestamps as UTC microseconds (Spark's default,
    INT96, reads back as naive nanoseconds)."""
    conf = spark.conf
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
def staged(spark: SparkSession, options: SparkOptions, table: pa.Table) -> Iterator[DataFrame]:
    """``table`` as a Spark DataFrame: written as Parquet where executors read it (see
    ``staging_dir``), or sent through the driver when there is nowhere to stage."""
    where = options.staging_dir
    if where is None and not (spark.sparkContext.master or "").startswith("local"):
        yield spark.createDataFrame(table)
        return
    with contextlib.ExitStack() as stack:
        base = where or stack.enter_context(tempfile.TemporaryDirectory(prefix="tureen-"))
        fs, folder = fsspec.core.url_to_fs(base)
        path = f"{folder.rstrip('/')}/entities-{uuid.uuid4().hex}.parquet"
        pq.write_table(table, path, filesystem=fs)
        try:
            yield spark.read.parquet(fs.unstrip_protocol(path))
        finally:
            fs.rm(path)


def batches(spark: SparkSession, options: SparkOptions, df: DataFrame) -> Iterator[pa.RecordBatch]:
    """``df``'s rows in RecordBatches of at most ``batch_rows``. Where there is a staging
    folder (see ``staging_dir``) Spark writes them there as Parquet and the driver streams
    them back batch by batch, so its memory stays bounded; otherwise they are collected."""
    base = options.staging_dir
    local = (spark.sparkContext.master or "").startswith("local")
    if base is None and not local:
        yield from collect(df).to_batches(max_chunksize=options.batch_rows)
        return
    import pyarrow.dataset as ds

    with contextlib.ExitStack() as stack:
        base = base or stack.enter_context(tempfile.TemporaryDirectory(prefix="tureen-"))
        fs, folder = fsspec.core.url_to_fs(base)
        path = f"{folder.rstrip('/')}/latest-{uuid.uuid4().hex}"
        try:
            with micros_timestamps(spark):
                df.write.parquet(fs.unstrip_protocol(path))
        except AnalysisException as exc:
            raise InvalidRequestError(f"Spark could not run the query: {exc}") from exc
        try:
            data = ds.dataset(path, format="parquet", filesystem=fs)
            yield from data.to_batches(batch_size=options.batch_rows)
        finally:
            fs.rm(path, recursive=True)


def collect(df: DataFrame) -> pa.Table:
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
