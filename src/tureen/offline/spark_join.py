"""The point-in-time join in Spark, and the entity rows it takes.

For each entity row and view: the source row with the greatest (event_ts, created_ts; an
unknown created time sorts lowest) with ``entity_ts - ttl <= event_ts <= entity_ts``; one
output row per entity row; nulls where nothing matched. The join is a sort, not a range
join: entity rows and feature rows of one view are unioned, partitioned by join keys,
ordered by (time, feature rows first, created), and each entity row takes the last feature
row before it (``last(..., ignorenulls)`` over a running window); the TTL bound is checked
afterwards (the newest row at or before the entity time is the only candidate inside the
TTL). Entity rows carry their position (``ROW``) so the result can be put back in order.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as sf
from pyspark.sql import types as st

from tureen.definitions import FeatureView
from tureen.errors import InvalidRequestError
from tureen.feature_refs import FeaturePlan
from tureen.offline.spark_sources import CR, EV, projection
from tureen.offline.spark_types import quote, spark_type
from tureen.offline.timestamps import to_utc_us
from tureen.types import DType

ROW = "__tureen_row"
_KIND, _T, _C, _P, _M = "__kind", "__t", "__c", "__p", "__m"


def pit_join(
    spark: SparkSession,
    repo_path: Path,
    entities: DataFrame,
    plan: FeaturePlan,
    ts: str,
    bounds: tuple[int, int] | None,
) -> DataFrame:
    """``entities`` plus ``view__feature`` columns for every stored view read; ``bounds``
    (the entity times' min and max, µs) limits the feature rows read."""
    acc = entities
    for read in plan.reads:
        view = read.view
        keys = list(view.join_keys)
        ttl_us = round(view.ttl_seconds * 1_000_000)
        cond: Column | None = None
        if bounds is not None:
            lo, hi = bounds
            cond = sf.unix_micros(sf.col(EV)) <= sf.lit(hi)
            if ttl_us > 0:
                cond = cond & (sf.unix_micros(sf.col(EV)) >= sf.lit(lo - ttl_us))
        feats = [(f.name, f.dtype) for f in read.features]
        src = projection(spark, repo_path, view, feats, cond)
        for k in keys:  # an ASOF equality never matches a null key
            src = src.where(sf.col(quote(k)).isNotNull())
        payload = sf.struct(
            sf.col(EV).alias("ev"),
            *[sf.col(quote(n)).alias(f"f{i}") for i, (n, _) in enumerate(feats)],
        )
        right = src.select(
            *[sf.col(quote(k)).alias(_key(k)) for k in keys],
            sf.col(EV).alias(_T),
            sf.lit(0).alias(_KIND),
            sf.col(CR).alias(_C),
            payload.alias(_P),
        )
        left = acc.select(
            "*",
            *[sf.col(quote(k)).cast(spark_type(view_key(view, k))).alias(_key(k)) for k in keys],
            sf.col(quote(ts)).alias(_T),
            sf.lit(1).alias(_KIND),
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
            valid = valid & (
                sf.unix_micros(sf.col(f"{_M}.ev"))
                >= sf.unix_micros(sf.col(quote(ts))) - sf.lit(ttl_us)
            )
        acc = matched.select(
            *[sf.col(quote(c)) for c in acc.columns],
            *[
                sf.when(valid, sf.col(f"{_M}.f{i}")).alias(f"{view.name}__{n}")
                for i, (n, _) in enumerate(feats)
            ],
        )
    return acc


def _key(name: str) -> str:
    return f"__key__{name}"


def view_key(view: FeatureView, name: str) -> DType:
    return next(f.dtype for f in view.key_fields if f.name == name)


def entity_timestamps(rows: pa.Table, column: str) -> pa.ChunkedArray:
    ts = to_utc_us(rows.column(column), column)
    if ts.null_count:
        raise InvalidRequestError(
            f"entity rows have {ts.null_count} null values in {column!r}; every row needs a "
            "timestamp."
        )
    return ts




def time_bounds(ts: pa.ChunkedArray) -> tuple[int, int] | None:
    if len(ts) == 0:
        return None
    micros = ts.cast(pa.int64()).to_numpy()
    return int(micros.min()), int(micros.max())
