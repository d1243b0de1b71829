"""The embedded offline engine: DuckDB over Parquet/CSV files, folders, globs, hive
datasets and fsspec URLs.

tureen.yaml::

    offline_store:
      type: duckdb
      threads: 4             # default: all cores
      memory_limit: 6GB      # default: half of the machine's memory
      temp_directory: .tmp   # spill folder, relative to the repo; default: <tmp>/tureen-spill
      chunk_rows: 1000000    # entity rows joined at a time when streaming a training set

Point-in-time joins are one ``ASOF LEFT JOIN`` per view over a registered Arrow table that
holds only the join keys, the entity timestamp and a row number, so entity columns are never
copied through DuckDB and rows come back in input order. Entity rows larger than one chunk
(``historical_chunks``) are joined ``chunk_rows`` at a time against each view's rows staged
once in a temporary table; past ``memory_limit`` DuckDB spills to ``temp_directory``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tureen.backend_options import DuckDBOptions as DuckDBOptions  # re-exported
from tureen.definitions import FeatureView, FileSource, source_of
from tureen.errors import BackendUnavailableError, InvalidRequestError, TureenError
from tureen.feature_refs import FeaturePlan, ViewRead
from tureen.offline import duckdb_sql as sql
from tureen.offline.duckdb_interrupt import interruptible
from tureen.offline.entity_rows import EntityRows, entity_keys, entity_rows
from tureen.offline.source_files import (
    FileSet,
    append_folder,
    list_files,
    locate,
    overlapping,
)
from tureen.offline.timestamps import UTC_US, micros, normalize_column, to_utc_us
from tureen.types import DType

log = logging.getLogger(__name__)

_ENTITY_VIEW = "__tureen_entities"
_ENTITY_TS = "__tureen_ts"


def machine_memory_bytes() -> int:
    """Physical memory, or the cgroup (container) limit when that is lower."""
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return int(total)


def default_memory_limit() -> str:
    return f"{machine_memory_bytes() // 2 // (1024 * 1024)}MiB"


class DuckDBEngine:
    """OfflineEngine on an in-process DuckDB database (thread-safe: a cursor per call)."""

    def __init__(self, repo_path: Path | str = ".", options: DuckDBOptions | None = None) -> None:
        self.repo_path = Path(repo_path)
        opts = options or DuckDBOptions()
        updates: dict[str, Any] = {}
        if opts.memory_limit is None:
            updates["memory_limit"] = default_memory_limit()
        if opts.temp_directory is None:
            updates["temp_directory"] = str(Path(tempfile.gettempdir()) / "tureen-spill")
        elif opts.temp_directory and not Path(opts.temp_directory).is_absolute():
            updates["temp_directory"] = str(self.repo_path / opts.temp_directory)
        self.options = opts.model_copy(update=updates)
        config: dict[str, Any] = {"memory_limit": self.options.memory_limit,
                                  "temp_directory": self.options.temp_directory}
        if self.options.threads is not None:
            config["threads"] = self.options.threads
        if self.options.temp_directory:
            # DuckDB makes the folder itself (and removes it when it made it), not its parents.
            Path(self.options.temp_directory).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(":memory:", config=config)
        except duckdb.Error as exc:
            raise InvalidRequestError(f"offline_store (duckdb) options rejected: {exc}") from exc
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, options: dict[str, Any], repo_path: Path, project: str) -> DuckDBEngine:
        return cls(repo_path, DuckDBOptions(**options))

    # ---- plumbing ------------------------------------------------------------------------
    @contextmanager
    def _cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lock:
            cur = self._con.cursor()
        try:
            cur.execute("SET TimeZone = 'UTC'")
            yield cur
        finally:
            cur.close()

    def _files(self, cur: duckdb.DuckDBPyConnection, source: FileSource) -> FileSet:
        files = list_files(locate(source, self.repo_path))
        fs = files.location.fs
        if fs is not None:
            name = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
            with self._lock:  # filesystems are registered database-wide, once per protocol
                if not cur.filesystem_is_registered(name):
                    cur.register_filesystem(fs)
        return files

    def _projection(
        self,
        cur: duckdb.DuckDBPyConnection,
        view: FeatureView,
        features: Sequence[tuple[str, DType]],
        events: tuple[int | None, int | None] = (None, None),
    ) -> tuple[sql.Projection, str]:
        """The view's logical columns over its source files; with ``events`` (µs bounds,
        inclusive), files whose footers show no event time in that range are not read."""
        source = source_of(view)
        files = self._files(cur, source)
        listed = len(files.files)
        files = overlapping(files, source.timestamp_field, *events)
        if len(files.files) < listed:
            log.debug("feature view %s: reading %d of %d files (the others hold no rows in "
                      "the time range)", view.name, len(files.files), listed)
        keys = [(f.name, f.dtype) for f in view.key_fields]
        what = f"feature view {view.name!r}"
        scan = sql.scan(files)
        columns = _describe(cur, scan, source)
        if files.location.file_format == "csv":
            declared = sql.csv_types(source, [*keys, *features])
            typed = {k: v for k, v in declared.items() if k in columns}
            scan = sql.scan(files, typed)
            columns = _describe(cur, scan, source)
        return sql.Projection(source, columns, keys, features, what), scan

    # ---- point-in-time joins ---------------------------------------------------------------
    def _view_source(
        self, cur: duckdb.DuckDBPyConnection, read: ViewRead, bounds: tuple[int, int] | None
    ) -> tuple[sql.Projection, str]:
        """The projection of one view read and the SQL of its keyed rows, limited to the
        rows entity times within ``bounds`` (min, max µs) can match."""
        view = read.view
        ttl_us = round(view.ttl_seconds * 1_000_000)
        where = []
        events: tuple[int | None, int | None] = (None, None)
        if bounds is not None:
            lo, hi = bounds
            events = (lo - ttl_us if ttl_us > 0 else None, hi)
            where.append(f"{sql.EV} <= {sql.ts_literal(hi)}")
            if ttl_us > 0:
                where.append(f"{sql.EV} >= {sql.ts_literal(lo - ttl_us)}")
        features = [(f.name, f.dtype) for f in read.features]
        proj, scan = self._projection(cur, view, features, events)
        return proj, sql.keyed_source(proj, proj.query(scan, where))

    def _join(
        self,
        cur: duckdb.DuckDBPyConnection,
        entity_rows: pa.Table,
        plan: FeaturePlan,
        timestamp_column: str,
        sources: Sequence[tuple[sql.Projection, str]],
    ) -> pa.Table:
        n = entity_rows.num_rows
        ts = to_utc_us(entity_rows.column(timestamp_column), timestamp_column)
        if ts.null_count:
            raise InvalidRequestError(
                f"entity rows have {ts.null_count} null values in {timestamp_column!r}; every "
                "row needs a timestamp."
            )
        cols: dict[str, pa.ChunkedArray | pa.Array] = {
            sql.ROW: pa.array(np.arange(n, dtype=np.int64)),
            _ENTITY_TS: ts,
        }
        for read in plan.reads:
            for key in read.view.key_fields:
                if key.name not in cols:
                    cols[key.name] = entity_keys(entity_rows, key.name, key.dtype)
        out = entity_rows
        cur.register(_ENTITY_VIEW, pa.table(cols))
        try:
            for read, (proj, keyed) in zip(plan.reads, sources, strict=True):
                view = read.view
                outputs = [(f.name, f"{view.name}__{f.name}") for f in read.features]
                ttl_us = round(view.ttl_seconds * 1_000_000)
                query = sql.pit_query(_ENTITY_VIEW, _ENTITY_TS, proj, keyed, outputs, ttl_us)
                joined = _arrow(cur, query, proj.what, self.options)
                if joined.num_rows != n:
                    raise TureenError(
                        f"internal error: point-in-time join of {view.name!r} returned "
                        f"{joined.num_rows} rows for {n} entity rows."
                    )
                for f, (_, name) in zip(read.features, outputs, strict=True):
                    out = out.append_column(
                        pa.field(name, f.dtype.arrow), joined.column(name).cast(f.dtype.arrow)
                    )
        finally:
            cur.unregister(_ENTITY_VIEW)
        return out

    # ---- OfflineEngine -------------------------------------------------------------------
    def historical_features(
        self, entity_rows: pa.Table, plan: FeaturePlan, timestamp_column: str
    ) -> pa.Table:
        ts = to_utc_us(entity_rows.column(timestamp_column), timestamp_column)
        bounds = _min_max_us(ts)
        with self._cursor() as cur:
            sources = [self._view_source(cur, read, bounds) for read in plan.reads]
            return self._join(cur, entity_rows, plan, timestamp_column, sources)

    def historical_chunks(
        self, rows: EntityRows, plan: FeaturePlan, timestamp_column: str
    ) -> Generator[pa.Table, None, None]:
        """The point-in-time join of ``rows`` in chunks of ``chunk_rows`` entity rows, in
        input order: each view's rows are read once into a DuckDB temporary table (which
        spills to ``temp_directory`` past ``memory_limit``) and every chunk is joined
        against it, so memory is bounded by the chunk, whatever the number of entity rows."""
        size = self.options.chunk_rows
        if rows.num_rows <= size:  # one chunk: join it directly, nothing to stage
            table = rows.table if rows.table is not None else normalize_column(
                rows.read_all(), timestamp_column)
            yield self.historical_features(table, plan, timestamp_column)
            return
        bounds = rows.timestamp_bounds(timestamp_column)
        with self._cursor() as cur:
            staged: list[str] = []
            try:
                sources = []
                for read in plan.reads:
                    proj, keyed = self._view_source(cur, read, bounds)
                    name = f"__tureen_stage_{uuid.uuid4().hex}"
                    # sorted as the ASOF join sorts (keys, time): each chunk's join then
                    # sorts presorted rows (~20% less work per chunk)
                    order = ", ".join([*(sql.ident(k) for k, _ in proj.keys), sql.EV])
                    _execute(cur, f"CREATE TEMP TABLE {sql.ident(name)} AS {keyed} "
                             f"ORDER BY {order}", proj.what, self.options)
                    staged.append(name)
                    sources.append((proj, f"SELECT * FROM {sql.ident(name)}"))
                for chunk in rows.chunks(size):
                    chunk = normalize_column(chunk, timestamp_column)
                    yield self._join(cur, chunk, plan, timestamp_column, sources)
            finally:
                for name in staged:
                    cur.execute(f"DROP TABLE IF EXISTS {sql.ident(name)}")

    def feature_row_times(
        self,
        reads: Sequence[ViewRead],
        keys: Sequence[tuple[str, DType]],
        start: datetime | None,
        end: datetime | None,
        entity_filter: Mapping[str, pa.Array],
    ) -> EntityRows:
        """Every distinct (join keys, event time) of the views' rows with start <= event <
        end whose keys pass ``entity_filter`` (key -> allowed values), ordered by event time
        then keys. Written by DuckDB to a temporary Parquet file (removed by ``close()``), so
        a feature log of any size becomes entity rows streamed a chunk at a time."""
        folder = Path(tempfile.mkdtemp(prefix=".tureen-rows-", dir=self._scratch()))
        path = folder / "rows.parquet"
        names = [sql.ident(k) for k, _ in keys]
        with self._cursor() as cur:
            filters = []
            try:
                for i, values in enumerate(entity_filter.values()):
                    name = f"__tureen_filter_{uuid.uuid4().hex}_{i}"
                    cur.register(name, pa.table({"v": values}))
                    filters.append(name)
                selects = []
                for read in reads:
                    span = (None if start is None else micros(start),
                            None if end is None else micros(end))
                    proj, scan = self._projection(cur, read.view, [], span)
                    where = [f"{k} IS NOT NULL" for k in names]
                    if start is not None:
                        where.append(f"{sql.EV} >= {sql.ts_literal(micros(start))}")
                    if end is not None:
                        where.append(f"{sql.EV} < {sql.ts_literal(micros(end))}")
                    where += [f"{sql.ident(k)} IN (SELECT v FROM {sql.ident(t)})"
                              for k, t in zip(entity_filter, filters, strict=True)]
                    selects.append(f"SELECT {', '.join(names)}, {sql.EV} AS event_timestamp "
                                   f"FROM ({proj.query(scan, where)})")
                query = (f"SELECT DISTINCT * FROM ({' UNION ALL '.join(selects)}) "
                         f"ORDER BY event_timestamp, {', '.join(names)}")
                what = ", ".join(f"feature view {r.view.name!r}" for r in reads)
                _execute(cur, f"COPY ({query}) TO {sql.literal(str(path))} (FORMAT parquet)",
                         what, self.options)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            finally:
                for name in filters:
                    cur.unregister(name)
        rows = entity_rows(path)
        rows.cleanup = lambda: shutil.rmtree(folder, ignore_errors=True)
        return rows

    def _scratch(self) -> Path:
        """A folder for temporary files: the spill folder's parent, else the system's."""
        spill = self.options.temp_directory
        return Path(spill).parent if spill else Path(tempfile.gettempdir())

    def latest_rows(
        self, view: FeatureView, start: datetime | None, end: datetime
    ) -> Iterator[pa.RecordBatch]:
        features = [(f.name, f.dtype) for f in view.features]
        keys = [(f.name, f.dtype) for f in view.key_fields]
        schema = pa.schema(
            [pa.field(n, dt.arrow) for n, dt in [*keys, *features]]
            + [pa.field("event_timestamp", UTC_US), pa.field("created_timestamp", UTC_US)]
        )
        with self._cursor() as cur:
            span = (None if start is None else micros(start), micros(end))
            proj, scan = self._projection(cur, view, features, span)
            where = [f"{sql.EV} < {sql.ts_literal(micros(end))}"]
            if start is not None:
                where.append(f"{sql.EV} >= {sql.ts_literal(micros(start))}")
            names = ", ".join(sql.ident(n) for n, _ in [*keys, *features])
            query = (
                f"SELECT {names}, {sql.EV} AS event_timestamp, {sql.CR} AS created_timestamp "
                f"FROM ({sql.latest_query(proj, proj.query(scan, where))}) "
                # in key order: an online store's index then grows at one end (SQLite
                # writes ~1.5x faster than in hash order), and batches sort for free
                f"ORDER BY {', '.join(sql.ident(n) for n, _ in keys)}"
            )
            try:
                # each step in ``interruptible``: a Ctrl-C stops the query before the caller
                # (materialize) hears of it, as a KeyboardInterrupt
                reader = interruptible(
                    cur, lambda: cur.sql(query).to_arrow_reader(self.options.batch_rows))
                while (batch := interruptible(cur, lambda: _next_batch(reader))) is not None:
                    if batch.num_rows:
                        yield pa.RecordBatch.from_arrays(
                            [c.cast(f.type) for c, f in zip(batch.columns, schema, strict=True)],
                            schema=schema,
                        )
            except (duckdb.Error, pa.ArrowInvalid) as exc:
                raise _read_error(proj.what, exc) from exc

    def append(self, source: FileSource, table: pa.Table) -> None:
        """Write ``table`` as a new file in the source's folder (see ``append_folder``).

        Columns named like a feature that ``field_mapping`` reads from another column are
        renamed back, so the file reads like the rest of the source. The file is written
        under a hidden temporary name and renamed, so readers never see half a file.
        """
        loc = locate(source, self.repo_path)
        folder = append_folder(loc)
        if table.num_rows == 0:
            return
        if source.timestamp_field not in table.column_names:
            raise InvalidRequestError(
                f"rows pushed to {source.path!r} have no {source.timestamp_field!r} column; "
                f"they have: {', '.join(table.column_names)}."
            )
        table = _to_physical(source, table)
        suffix = ".csv" if loc.file_format == "csv" else ".parquet"
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        name = f"part-{stamp}-{uuid.uuid4().hex[:8]}{suffix}"
        final, tmp = f"{folder}/{name}", f"{folder}/.{name}.tmp"
        fs = loc.fs
        if fs is None:
            os.makedirs(folder, exist_ok=True)
            _write(table, tmp, loc.file_format)
            os.replace(tmp, final)
        else:
            fs.makedirs(folder, exist_ok=True)
            with fs.open(tmp, "wb") as fh:
                _write(table, fh, loc.file_format)
            fs.mv(tmp, final)

    def source_schema(self, source: FileSource) -> pa.Schema:
        with self._cursor() as cur:
            files = self._files(cur, source)
            query = f"SELECT * FROM {sql.scan(files)} LIMIT 0"
            schema: pa.Schema = _arrow(cur, query, f"source {source.path!r}").schema
        mapping = dict(source.field_mapping)
        return pa.schema([f.with_name(mapping.get(f.name, f.name)) for f in schema])

    def close(self) -> None:
        self._con.close()


# ---- helpers -------------------------------------------------------------------------------
def _read_error(what: str, exc: Exception) -> InvalidRequestError:
    return InvalidRequestError(
        f"{what}: reading its source failed: {exc}. Check that the files hold the columns "
        "and types the definition declares."
    )


def _next_batch(reader: pa.RecordBatchReader) -> pa.RecordBatch | None:
    try:
        return reader.read_next_batch()
    except StopIteration:
        return None


def _out_of_memory(options: DuckDBOptions, exc: Exception) -> BackendUnavailableError:
    return BackendUnavailableError(
        f"the DuckDB offline engine ran out of memory (memory_limit {options.memory_limit}, "
        f"temp_directory {options.temp_directory or 'off'}): {str(exc).splitlines()[0]} "
        "Give offline_store.temp_directory a folder with free disk so it can spill, raise "
        "offline_store.memory_limit, or lower offline_store.chunk_rows."
    )


def _arrow(
    cur: duckdb.DuckDBPyConnection, query: str, what: str, options: DuckDBOptions | None = None
) -> pa.Table:
    try:
        table: pa.Table = interruptible(cur, lambda: cur.sql(query).to_arrow_table())
        return table
    except duckdb.OutOfMemoryException as exc:
        raise _out_of_memory(options or DuckDBOptions(), exc) from exc
    except (duckdb.Error, pa.ArrowInvalid) as exc:
        raise _read_error(what, exc) from exc


def _execute(cur: duckdb.DuckDBPyConnection, query: str, what: str,
             options: DuckDBOptions) -> None:
    try:
        interruptible(cur, lambda: cur.execute(query))
    except duckdb.OutOfMemoryException as exc:
        raise _out_of_memory(options, exc) from exc
    except duckdb.Error as exc:
        raise _read_error(what, exc) from exc


def _describe(cur: duckdb.DuckDBPyConnection, scan: str, source: FileSource) -> dict[str, str]:
    try:
        rel = cur.sql(f"SELECT * FROM {scan} LIMIT 0")
    except duckdb.Error as exc:
        raise _read_error(f"source {source.path!r}", exc) from exc
    return {c: str(t) for c, t in zip(rel.columns, rel.types, strict=True)}




def _min_max_us(ts: pa.ChunkedArray) -> tuple[int, int] | None:
    if len(ts) == 0 or ts.null_count == len(ts):
        return None
    mm = pc.min_max(ts.cast(pa.int64()))
    return int(mm["min"].as_py()), int(mm["max"].as_py())




def _to_physical(source: FileSource, table: pa.Table) -> pa.Table:
    back = {dst: src for src, dst in source.field_mapping.items()}
    names = [
        back[n] if n in back and back[n] not in table.column_names else n
        for n in table.column_names
    ]
    table = table.rename_columns(names)
    for col in (source.timestamp_field, source.created_timestamp_column):
        if col and col in table.column_names:
            idx = table.schema.get_field_index(col)
            table = table.set_column(idx, pa.field(col, UTC_US), to_utc_us(table[col], col))
    return table


def _write(table: pa.Table, where: Any, file_format: str) -> None:
    if file_format == "csv":
        pacsv.write_csv(table, where)
    else:
        pq.write_table(table, where)
