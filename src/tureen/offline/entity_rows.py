"""The entity rows of a training set: an Arrow table in memory, or Parquet files read in chunks.

``entity_rows(entity_df)`` accepts a pandas DataFrame, an Arrow table, a CSV file (read into
Arrow), or a Parquet file or folder. A Parquet input is never loaded whole: its schema, row
count and timestamp bounds come from the file footers, and :meth:`EntityRows.chunks` reads it
a bounded number of rows at a time (never through pandas). Rows keep the input order: the
files of a folder by name (hidden ``.``/``_`` names skipped, as for sources), then the rows
within each file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tureen.errors import InvalidRequestError, NotFoundError
from tureen.offline.parquet_stats import file_range, leaf_index
from tureen.offline.timestamps import UTC_US
from tureen.types import DType

EntityInput: TypeAlias = pd.DataFrame | pa.Table | str | Path
_PARQUET = (".parquet", ".pq", ".parq")


@dataclass
class EntityRows:
    """Entity rows with a known schema; ``table`` is set for rows held in memory, ``files``
    for Parquet files streamed in chunks."""

    schema: pa.Schema
    table: pa.Table | None = None
    files: tuple[str, ...] = ()
    path: str | None = None  # the file or folder ``files`` were listed from
    cleanup: Callable[[], None] | None = None  # removes temporary files behind the rows
    _footers: list[pq.FileMetaData] = field(default_factory=list, repr=False)

    def close(self) -> None:
        if self.cleanup is not None:
            self.cleanup()
            self.cleanup = None

    @property
    def num_rows(self) -> int:
        if self.table is not None:
            return int(self.table.num_rows)
        return sum(int(m.num_rows) for m in self._footers)

    def chunks(self, rows: int) -> Iterator[pa.Table]:
        """The rows in order, ``rows`` at a time (the last chunk may be shorter; an empty
        input yields one empty chunk, so the output still has a schema)."""
        if self.table is not None:
            if self.table.num_rows <= rows:
                yield self.table
                return
            for start in range(0, self.table.num_rows, rows):
                yield self.table.slice(start, rows)
            return
        pending: list[pa.RecordBatch] = []
        count = 0
        yielded = False
        for path in self.files:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
                batch = _conform(batch, self.schema, path)
                while batch.num_rows:
                    take = min(rows - count, batch.num_rows)
                    pending.append(batch.slice(0, take))
                    batch = batch.slice(take)
                    count += take
                    if count == rows:
                        yield pa.Table.from_batches(pending, self.schema)
                        yielded = True
                        pending, count = [], 0
        if pending or not yielded:
            yield pa.Table.from_batches(pending, self.schema)

    def read_all(self) -> pa.Table:
        """Every row as one Arrow table (for results held in memory)."""
        if self.table is not None:
            return self.table
        return pa.concat_tables(
            [_conform_table(pq.read_table(f), self.schema, f) for f in self.files]
        ) if self.files else self.schema.empty_table()

    def timestamp_bounds(self, column: str) -> tuple[int, int] | None:
        """(min, max) µs UTC of ``column`` when cheaply known (a table, or Parquet footers with
        statistics on a timestamp column); None when unknown or there are no rows."""
        if self.table is not None:
            col = self.table.column(column)
            if col.type != UTC_US or len(col) == 0 or col.null_count == len(col):
                return None
            mm = pc.min_max(col.cast(pa.int64()))
            return int(mm["min"].as_py()), int(mm["max"].as_py())
        typ = self.schema.field(column).type
        if not pa.types.is_timestamp(typ):
            return None
        ranges = []
        for meta in self._footers:
            if meta.num_rows == 0:
                continue
            found = file_range(meta, column)
            if found is None:
                return None
            ranges.append(found)
        if not ranges:
            return None
        return min(r[0] for r in ranges), max(r[1] for r in ranges)

    def null_count(self, column: str) -> int | None:
        """Nulls in ``column`` when known without reading the data (None: unknown)."""
        if self.table is not None:
            return int(self.table.column(column).null_count)
        total = 0
        for meta in self._footers:
            idx = leaf_index(meta, column)
            if idx is None:
                return None
            for g in range(meta.num_row_groups):
                stats = meta.row_group(g).column(idx).statistics
                if stats is None or not stats.has_null_count:
                    return None
                total += int(stats.null_count)
        return total


def entity_rows(entity_df: EntityInput) -> EntityRows:
    """Wrap any accepted entity input (see the module docstring)."""
    if isinstance(entity_df, pa.Table):
        return EntityRows(entity_df.schema, table=entity_df)
    if isinstance(entity_df, pd.DataFrame):
        table = _from_pandas(entity_df)
        return EntityRows(table.schema, table=table)
    if isinstance(entity_df, (str, Path)):
        return _from_path(Path(entity_df))
    raise InvalidRequestError(
        f"entity_df must be a pandas DataFrame, a pyarrow Table or a path to a Parquet/CSV "
        f"file or a folder of Parquet files, not {type(entity_df).__name__}."
    )


def _from_pandas(frame: pd.DataFrame) -> pa.Table:
    for col in frame.columns:
        if frame[col].dtype == object and _looks_like_datetimes(frame[col]):
            # Python datetimes with mixed offsets: normalize to one UTC column.
            frame = frame.assign(**{col: pd.to_datetime(frame[col], utc=True)})
    return pa.Table.from_pandas(frame, preserve_index=False)


def _looks_like_datetimes(col: pd.Series) -> bool:
    first = col.dropna()
    if first.empty:
        return False
    return bool(hasattr(first.iloc[0], "tzinfo") and hasattr(first.iloc[0], "year"))


def _from_path(path: Path) -> EntityRows:
    if not path.exists():
        raise NotFoundError(
            f"entity file {str(path)!r} does not exist; pass a Parquet or CSV file (or a folder "
            "of Parquet files) of entity rows (join keys and an event_timestamp column)."
        )
    name = path.name.lower()
    if path.is_file() and name.endswith((".csv", ".tsv", ".csv.gz")):
        table = pacsv.read_csv(str(path))
        return EntityRows(table.schema, table=table)
    if path.is_dir():
        files = sorted(
            str(f) for f in path.rglob("*")
            if f.is_file() and f.name.lower().endswith(_PARQUET)
            and not any(p.startswith((".", "_")) for p in f.relative_to(path).parts)
        )
        if not files:
            raise NotFoundError(
                f"entity folder {str(path)!r} holds no Parquet files (*.parquet); write the "
                "entity rows there or pass a file."
            )
    else:
        files = [str(path)]
    try:
        footers = [pq.read_metadata(f) for f in files]
        schema = pq.read_schema(files[0])
    except (OSError, pa.ArrowInvalid) as exc:
        raise InvalidRequestError(
            f"entity rows {str(path)!r} are not readable Parquet: {exc}. Pass a Parquet or CSV "
            "file (CSV needs a .csv suffix)."
        ) from None
    schema = schema.remove_metadata()
    return EntityRows(schema, files=tuple(files), path=str(path), _footers=footers)


def _conform(batch: pa.RecordBatch, schema: pa.Schema, path: str) -> pa.RecordBatch:
    if batch.schema.equals(schema):
        return batch
    table = _conform_table(pa.Table.from_batches([batch]), schema, path).combine_chunks()
    return table.to_batches()[0] if table.num_rows else pa.RecordBatch.from_pylist([], schema)


def _conform_table(table: pa.Table, schema: pa.Schema, path: str) -> pa.Table:
    """``table`` (one file of a folder) in the first file's schema."""
    missing = [n for n in schema.names if n not in table.column_names]
    if missing:
        raise InvalidRequestError(
            f"entity file {path!r} lacks column(s) {', '.join(map(repr, missing))} that the "
            "first file of the folder has; every file needs the same columns."
        )
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidRequestError(
            f"entity file {path!r} has column types that do not convert to the first file's "
            f"({exc}); write every file with the same schema."
        ) from None


def entity_keys(rows: pa.Table, key: str, dtype: DType) -> pa.ChunkedArray:
    """Entity rows' ``key`` column cast to the join key's type, or a clear error."""
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
