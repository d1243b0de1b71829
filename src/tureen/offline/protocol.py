"""The seam between offline services and an engine (DuckDB by default, Spark at scale)."""

from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

import pyarrow as pa

from tureen.definitions import FeatureView, FileSource
from tureen.feature_refs import FeaturePlan, ViewRead
from tureen.offline.entity_rows import EntityRows
from tureen.types import DType


class OfflineEngine(Protocol):
    def historical_features(
        self, entity_rows: pa.Table, plan: FeaturePlan, timestamp_column: str
    ) -> pa.Table:
        """Point-in-time join (DESIGN.md semantics) of ``entity_rows`` with every stored view
        in ``plan.reads``. Returns the entity columns in input order, one row per input row,
        plus one column per feature read, named ``view__feature``. On-demand views and final
        naming are applied by the caller."""
        ...

    def latest_rows(
        self, view: FeatureView, start: datetime | None, end: datetime
    ) -> Iterator[pa.RecordBatch]:
        """For materialization: per entity, the newest row with start <= event_ts < end
        (ties broken by created_ts). Columns: join keys, features, ``event_timestamp`` and
        ``created_timestamp`` (UTC, microseconds)."""
        ...

    def append(self, source: FileSource, table: pa.Table) -> None:
        """Store pushed rows offline, atomically (a new file in the source's folder)."""
        ...

    def source_schema(self, source: FileSource) -> pa.Schema:
        """The Arrow schema of the source's rows; raises NotFoundError if it is missing."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class JoinsInChunks(Protocol):
    """An engine that joins entity rows a bounded chunk at a time (DuckDB). Training sets
    are then streamed to files without being held whole, whatever their size."""

    def historical_chunks(
        self, rows: EntityRows, plan: FeaturePlan, timestamp_column: str
    ) -> Generator[pa.Table, None, None]:
        """``historical_features`` of ``rows``, yielded in input order a chunk at a time
        (each chunk's timestamp column normalized to timestamp[us, UTC])."""
        ...


@runtime_checkable
class ListsFeatureRows(Protocol):
    """An engine that can build a training set without an entity frame, from the feature
    rows themselves (``get_historical_features(entity_df=None, start_date=, end_date=)``)."""

    def feature_row_times(
        self,
        reads: Sequence[ViewRead],
        keys: Sequence[tuple[str, DType]],
        start: datetime | None,
        end: datetime | None,
        entity_filter: Mapping[str, pa.Array],
    ) -> EntityRows:
        """Every distinct (join keys ``keys``, ``event_timestamp``) of the rows of ``reads``
        with start <= event time < end (None: unbounded) whose keys are among
        ``entity_filter``'s values (key -> allowed values; keys absent are not filtered),
        ordered by event time then keys; event_timestamp as timestamp[us, UTC]. The caller
        closes the rows (``EntityRows.close``) when done."""
        ...


@runtime_checkable
class WritesTrainingSets(Protocol):
    """An engine that can write a finished training set as Parquet itself (Spark: from the
    executors, never collected on the driver). ``RetrievalJob.to_parquet`` uses it."""

    def historical_features_to_parquet(
        self,
        entity_rows: pa.Table | str | Path,
        plan: FeaturePlan,
        timestamp_column: str,
        path: str | Path,
        *,
        mode: str = "error",
    ) -> None: ...
