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
order; nulls where nothing matched. How the join does it: :mod:`tureen.offline.spark_join`;
how sources are read: :mod:`tureen.offline.spark_sources`; how data moves between the
driver and the executors: :mod:`tureen.offline.spark_staging`.

``historical_features`` returns Arrow on the driver (the OfflineEngine contract);
``historical_features_to_parquet`` builds the whole training set (final names, on-demand
views: :mod:`tureen.offline.spark_training`) inside Spark and writes it as a Parquet dataset
without collecting it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark.sql import Column, SparkSession, Window
from pyspark.sql import functions as sf

from tureen.backend_options import SparkOptions
from tureen.definitions import FeatureView, FileSource
from tureen.errors import TureenError
from tureen.feature_refs import FeaturePlan, ViewRead
from tureen.offline.entity_rows import EntityRows, entity_keys
from tureen.offline.spark_join import (
    ROW,
    entity_timestamps,
    pit_join,
    time_bounds,
)
from tureen.offline.spark_session import runtime_conf, session, worker_python
from tureen.offline.spark_sources import CR, EV, as_timestamp, projection, read_source
from tureen.offline.spark_staging import batches, collect, micros_timestamps, staged
from tureen.offline.spark_training import assemble
from tureen.offline.spark_types import arrow_schema, quote, spark_type
from tureen.offline.timestamps import UTC_US, micros
from tureen.types import DType

_TS = "__tureen_ts"


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

    # ---- OfflineEngine -------------------------------------------------------------------
    def historical_features(
        self, entity_rows: pa.Table, plan: FeaturePlan, timestamp_column: str
    ) -> pa.Table:
        n = entity_rows.num_rows
        ts = entity_timestamps(entity_rows, timestamp_column)
        cols: dict[str, Any] = {ROW: pa.array(np.arange(n, dtype=np.int64)), _TS: ts}
        for read in plan.reads:
            for key in read.view.key_fields:
                if key.name not in cols:
                    cols[key.name] = entity_keys(entity_rows, key.name, key.dtype)
        keyed = pa.table(cols)
        outputs = [(f"{r.view.name}__{f.name}", f.dtype) for r in plan.reads for f in r.features]
        if not plan.reads:
            return entity_rows
        with staged(self.spark, self.options, keyed) as entities:
            joined = pit_join(self.spark, self.repo_path, entities, plan, _TS, time_bounds(ts))
            table = collect(joined.select(ROW, *[quote(name) for name, _ in outputs]))
        if table.num_rows != n:
            raise TureenError(
                f"internal error: the Spark point-in-time join returned {table.num_rows} rows "
                f"for {n} entity rows."
            )
        table = table.take(np.argsort(table.column(ROW).to_numpy(), kind="stable"))
        out = entity_rows
        for name, dtype in outputs:
            out = out.append_column(
                pa.field(name, dtype.arrow), table.column(name).cast(dtype.arrow)
            )
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
                table = table.set_column(
                    idx,
                    pa.field(timestamp_column, UTC_US),
                    entity_timestamps(table, timestamp_column),
                )
                table = table.append_column(
                    ROW, pa.array(np.arange(table.num_rows, dtype=np.int64))
                )
                entities = stack.enter_context(staged(self.spark, self.options, table))
                order, drop = [sf.col(ROW)], [ROW]
            else:
                raw = self.spark.read.parquet(str(entity_rows))
                entities = raw.select(
                    "*",
                    sf.col("_metadata.file_path").alias("__file"),
                    sf.col("_metadata.row_index").alias(ROW),
                ).withColumn(timestamp_column, as_timestamp(timestamp_column, set()))
                order, drop = [sf.col("__file"), sf.col(ROW)], ["__file", ROW]
            entity_columns = [c for c in entities.columns if c not in drop]
            joined = pit_join(
                self.spark, self.repo_path, entities, plan, timestamp_column, None
            ).orderBy(*order)
            with micros_timestamps(self.spark):  # not INT96: timestamp[us, UTC] as DuckDB
                assemble(joined, plan, entity_columns).write.mode(mode).parquet(str(path))

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
                cond = sf.unix_micros(sf.col(EV)) >= sf.lit(micros(start))
            if end is not None:
                upper = sf.unix_micros(sf.col(EV)) < sf.lit(micros(end))
                cond = upper if cond is None else cond & upper
            src = projection(self.spark, self.repo_path, read.view, [], cond)
            for k, _ in keys:
                src = src.where(sf.col(quote(k)).isNotNull())
            for k, values in entity_filter.items():
                src = src.where(sf.col(quote(k)).isin(values.to_pylist()))
            frames.append(
                src.select(*[quote(k) for k, _ in keys], sf.col(EV).alias("event_timestamp"))
            )
        spine = frames[0]
        for more in frames[1:]:
            spine = spine.unionByName(more)
        order = [sf.col("event_timestamp"), *[sf.col(quote(k)) for k, _ in keys]]
        table = collect(spine.distinct().orderBy(*order))
        schema = pa.schema(
            [*(pa.field(k, dt.arrow) for k, dt in keys), pa.field("event_timestamp", UTC_US)]
        )
        table = pa.table([table.column(f.name).cast(f.type) for f in schema], schema=schema)
        return EntityRows(schema, table=table)

    def latest_rows(
        self, view: FeatureView, start: datetime | None, end: datetime
    ) -> Iterator[pa.RecordBatch]:
        features = [(f.name, f.dtype) for f in view.features]
        keys = [(f.name, f.dtype) for f in view.key_fields]
        cond = sf.unix_micros(sf.col(EV)) < sf.lit(micros(end))
        if start is not None:
            cond = cond & (sf.unix_micros(sf.col(EV)) >= sf.lit(micros(start)))
        src = projection(self.spark, self.repo_path, view, features, cond)
        window = Window.partitionBy(*[quote(k) for k, _ in keys]).orderBy(
            sf.col(EV).desc(), sf.col(CR).desc_nulls_last()
        )
        latest = (
            src.withColumn("__rn", sf.row_number().over(window))
            .where(sf.col("__rn") == 1)
            .select(
                *[quote(n) for n, _ in [*keys, *features]],
                sf.col(EV).alias("event_timestamp"),
                sf.col(CR).alias("created_timestamp"),
            )
        )
        schema = pa.schema(
            [pa.field(n, dt.arrow) for n, dt in [*keys, *features]]
            + [pa.field("event_timestamp", UTC_US), pa.field("created_timestamp", UTC_US)]
        )
        for batch in batches(self.spark, self.options, latest):
            yield pa.RecordBatch.from_arrays(
                [batch.column(f.name).cast(f.type) for f in schema], schema=schema
            )

    def append(self, source: FileSource, table: pa.Table) -> None:
        """Pushed rows become one new file in the source's folder, written exactly as the
        DuckDB engine writes them (pyarrow, hidden name then rename), so both read them."""
        if self._appender is None:
            from tureen.backend_options import DuckDBOptions
            from tureen.offline.duckdb_engine import DuckDBEngine

            self._appender = DuckDBEngine(self.repo_path, DuckDBOptions(threads=1))
        self._appender.append(source, table)

    def source_schema(self, source: FileSource) -> pa.Schema:
        df, nanos = read_source(self.spark, self.repo_path, source)
        schema = arrow_schema(df.schema)
        mapping = dict(source.field_mapping)
        return pa.schema(
            [
                pa.field(
                    mapping.get(f.name, f.name),
                    pa.timestamp("ns", tz="UTC") if f.name in nanos else f.type,
                )
                for f in schema
            ]
        )

    def close(self) -> None:
        if self._appender is not None:
            self._appender.close()
            self._appender = None
        if self._owns:
            self.spark.stop()




__all__ = ["SparkEngine", "SparkOptions", "spark_type"]
