"""The embedded offline engine: DuckDB over Parquet/CSV files, folders, globs, hive
datasets and fsspec URLs.

tureen.yaml::

    offline_store:
      type: duckdb
      threads: 4             # default: all cores
      memory_limit: 4GB      # default: DuckDB's (80% of RAM)
      temp_directory: .tmp   # spill folder, relative to the repo; default: DuckDB's

Point-in-time joins are one ``ASOF LEFT JOIN`` per view over a registered Arrow table that
holds only the join keys, the entity timestamp and a row number, so entity columns are never
copied through DuckDB and rows come back in input order.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Iterator, Sequence
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
from tureen.errors import InvalidRequestError, TureenError
from tureen.feature_refs import FeaturePlan
from tureen.offline import duckdb_sql as sql
from tureen.offline.source_files import FileSet, append_folder, list_files, locate
from tureen.offline.timestamps import UTC_US, to_utc_us
from tureen.types import DType

log = logging.getLogger(__name__)

_ENTITY_VIEW = "__tureen_entities"
_ENTITY_TS = "__tureen_ts"


class DuckDBEngine:
    """OfflineEngine on an in-process DuckDB database (thread-safe: a cursor per call)."""

    def __init__(self, repo_path: Path | str = ".", options: DuckDBOptions | None = None) -> None:
        self.repo_path = Path(repo_path)
        self.options = options or DuckDBOptions()
        config: dict[str, Any] = {}
        if self.options.threads is not None:
            config["threads"] = self.options.threads
        if self.options.memory_limit is not None:
            config["memory_limit"] = self.options.memory_limit
        if self.options.temp_directory is not None:
            tmp = Path(self.options.temp_directory)
            config["temp_directory"] = str(tmp if tmp.is_absolute() else self.repo_path / tmp)
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
    ) -> tuple[sql.Projection, str]:
        source = source_of(view)
        files = self._files(cur, source)
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

    # ---- OfflineEngine -------------------------------------------------------------------
    def historical_features(
        self, entity_rows: pa.Table, plan: FeaturePlan, timestamp_column: str
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
                    cols[key.name] = _entity_keys(entity_rows, key.name, key.dtype)
        keyed = pa.table(cols)
        lo, hi = _min_max_us(ts)
        out = entity_rows
        with self._cursor() as cur:
            cur.register(_ENTITY_VIEW, keyed)
            for read in plan.reads:
                view = read.view
                features = [(f.name, f.dtype) for f in read.features]
                proj, scan = self._projection(cur, view, features)
                ttl_us = round(view.ttl_seconds * 1_000_000)
                where = []
                if hi is not None and lo is not None:
                    where.append(f"{sql.EV} <= {sql.ts_literal(hi)}")
                    if ttl_us > 0:
                        where.append(f"{sql.EV} >= {sql.ts_literal(lo - ttl_us)}")
                outputs = [(f.name, f"{view.name}__{f.name}") for f in read.features]
                query = sql.pit_query(
                    _ENTITY_VIEW, _ENTITY_TS, proj, proj.query(scan, where), outputs, ttl_us
                )
                joined = _arrow(cur, query, proj.what)
                if joined.num_rows != n:
                    raise TureenError(
                        f"internal error: point-in-time join of {view.name!r} returned "
                        f"{joined.num_rows} rows for {n} entity rows."
                    )
                for (_, dtype), (_, name) in zip(features, outputs, strict=True):
                    out = out.append_column(
                        pa.field(name, dtype.arrow), joined.column(name).cast(dtype.arrow)
                    )
            cur.unregister(_ENTITY_VIEW)
        return out

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
            proj, scan = self._projection(cur, view, features)
            where = [f"{sql.EV} < {sql.ts_literal(_micros(end))}"]
            if start is not None:
                where.append(f"{sql.EV} >= {sql.ts_literal(_micros(start))}")
            names = ", ".join(sql.ident(n) for n, _ in [*keys, *features])
            query = (
                f"SELECT {names}, {sql.EV} AS event_timestamp, {sql.CR} AS created_timestamp "
                f"FROM ({sql.latest_query(proj, proj.query(scan, where))})"
            )
            try:
                reader = cur.sql(query).to_arrow_reader(self.options.batch_rows)
                for batch in reader:
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


def _arrow(cur: duckdb.DuckDBPyConnection, query: str, what: str) -> pa.Table:
    try:
        return cur.sql(query).to_arrow_table()
    except (duckdb.Error, pa.ArrowInvalid) as exc:
        raise _read_error(what, exc) from exc


def _describe(cur: duckdb.DuckDBPyConnection, scan: str, source: FileSource) -> dict[str, str]:
    try:
        rel = cur.sql(f"SELECT * FROM {scan} LIMIT 0")
    except duckdb.Error as exc:
        raise _read_error(f"source {source.path!r}", exc) from exc
    return {c: str(t) for c, t in zip(rel.columns, rel.types, strict=True)}


def _entity_keys(rows: pa.Table, key: str, dtype: DType) -> pa.ChunkedArray:
    try:
        values = rows.column(key)
    except KeyError:
        raise InvalidRequestError(
            f"entity rows have no join key column {key!r}; they have: "
            f"{', '.join(rows.column_names)}."
        ) from None
    try:
        return values.cast(dtype.arrow)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidRequestError(
            f"entity column {key!r} has type {values.type}, which does not convert to the "
            f"join key type {dtype.name}: {exc}"
        ) from None


def _min_max_us(ts: pa.ChunkedArray) -> tuple[int | None, int | None]:
    if len(ts) == 0:
        return None, None
    mm = pc.min_max(ts.cast(pa.int64()))
    return mm["min"].as_py(), mm["max"].as_py()


def _micros(when: datetime) -> int:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = when - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


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
