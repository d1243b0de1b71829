"""Parquet dataset sink (the default): one row per instance the model saw.

Layout: ``ROOT/deployment=<name>/date=<YYYY-MM-DD>/part-<uuid>.parquet`` (hive partitioning,
readable by DuckDB, Spark, pyarrow.dataset).

Files are bounded, not one per flush: each partition has one open file (a hidden
``.part-<uuid>.parquet.tmp``) that every batch appends a row group to, finished and renamed
when it holds ``roll_bytes`` or is ``roll_seconds`` old (also while idle: the logger's
thread calls ``roll_due``), when the columns change, and on close. Readers never see a
partial file. Once ``compact_files`` finished files of one partition were written by this
sink, they are merged into one; the merged file names the files it replaces in its metadata
(``tureen.replaces``), and ``read_log`` skips those during the moment both exist. At 2,000
requests/s the defaults give a few dozen files a day per worker, not hundreds of thousands.

A write that fails (a full disk) removes the partial file; the logger backs off and counts
the records lost (``InferenceLogger.stats().failed``).

Columns: ``request_id``, ``row`` (index within the request), ``deployment``, ``model_name``,
``model_version``, ``timestamp`` (timestamp[us, UTC]), then ``entity.<key>``,
``request.<field>`` (request-time data the features needed), ``feature.<name>`` and
``prediction.<name>`` for the logged values.
"""

from __future__ import annotations

import json
import logging
import posixpath
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tureen.inference_log.protocol import SinkWriteError
from tureen.inference_log.record import LoggedRequest

log = logging.getLogger(__name__)

ENTITY, REQUEST, FEATURE, PREDICTION = "entity.", "request.", "feature.", "prediction."
META = ("request_id", "row", "deployment", "model_name", "model_version", "timestamp")


def to_table(batch: Sequence[LoggedRequest]) -> pa.Table:
    """One row per instance; columns missing in a request are null."""
    meta: dict[str, list[Any]] = {k: [] for k in META}
    parts: dict[str, list[Any]] = {}  # column -> one chunk per request (None: absent)
    for i, r in enumerate(batch):
        n = max(r.rows, 1)
        if n == 1:
            meta["request_id"].append(r.request_id)
            meta["row"].append(0)
            meta["deployment"].append(r.deployment)
            meta["model_name"].append(r.model_name)
            meta["model_version"].append(r.model_version)
            meta["timestamp"].append(r.timestamp)
        else:
            meta["request_id"].extend([r.request_id] * n)
            meta["row"].extend(range(n))
            meta["deployment"].extend([r.deployment] * n)
            meta["model_name"].extend([r.model_name] * n)
            meta["model_version"].extend([r.model_version] * n)
            meta["timestamp"].extend([r.timestamp] * n)
        for prefix, values in ((ENTITY, r.entities), (REQUEST, r.request_fields),
                               (FEATURE, r.features), (PREDICTION, r.predictions)):
            for k, v in values.items():
                col = parts.get(prefix + k)
                if col is None:
                    col = parts[prefix + k] = [None] * i
                col.append(v if len(v) == n else _fit(v, n))
        for col in parts.values():
            if len(col) <= i:
                col.append(None)
    sizes = [max(r.rows, 1) for r in batch]
    arrays: dict[str, pa.Array] = {
        "request_id": pa.array(meta["request_id"], pa.string()),
        "row": pa.array(meta["row"], pa.int32()),
        "deployment": pa.array(meta["deployment"], pa.string()),
        "model_name": pa.array(meta["model_name"], pa.string()),
        "model_version": pa.array(meta["model_version"], pa.string()),
        "timestamp": pa.array(meta["timestamp"], pa.timestamp("us", tz="UTC")),
    }
    for name, chunks in parts.items():
        arrays[name] = _column(chunks, sizes)
    return pa.table(arrays)


def _fit(v: Any, n: int) -> list[Any]:
    vals = v.tolist() if isinstance(v, np.ndarray) else list(v)
    return vals[:n] if len(vals) >= n else [*vals, *([None] * (n - len(vals)))]


def _column(chunks: list[Any], sizes: list[int]) -> pa.Array:
    """Numeric array chunks become one array without a per-value Python step."""
    if all(isinstance(c, np.ndarray) for c in chunks):
        kinds = {c.dtype.kind for c in chunks}
        if len(kinds) == 1 or kinds <= {"i", "u", "f"}:
            return pa.array(np.concatenate(chunks))
    values: list[Any] = []
    for c, n in zip(chunks, sizes, strict=True):
        if c is None:
            values.extend([None] * n)
        elif isinstance(c, np.ndarray):
            values.extend(c.tolist())
        else:
            values.extend(c)
    return pa.array(values)


REPLACES = b"tureen.replaces"


class _Part:
    """One open file: a ParquetWriter on a hidden temporary path."""

    def __init__(self, sink: ParquetSink, folder: str, schema: pa.Schema) -> None:
        self.name = f"part-{uuid.uuid4().hex}.parquet"
        self.folder = folder
        self.tmp = posixpath.join(folder, f".{self.name}.tmp")
        self.schema = schema
        self.opened = sink.clock()
        self.bytes = 0
        self.rows = 0
        self._fs = sink.fs
        self._file = sink.fs.open(self.tmp, "wb")
        try:
            self.writer = pq.ParquetWriter(self._file, schema, compression=sink.compression)
        except BaseException:
            self._file.close()
            raise

    def append(self, table: pa.Table) -> None:
        self.writer.write_table(table)
        self.bytes += table.nbytes
        self.rows += table.num_rows

    def finish(self) -> str:
        self.writer.close()
        self._file.close()
        final = posixpath.join(self.folder, self.name)
        self._fs.mv(self.tmp, final)
        return final

    def abort(self) -> None:
        """Close and remove the partial file, whatever state the writer is in."""
        for close in (self.writer.close, self._file.close):
            try:
                close()
            except Exception:  # a full disk may refuse the footer too
                log.debug("closing %s after a failed write", self.tmp, exc_info=True)
        try:
            self._fs.rm(self.tmp)
        except (FileNotFoundError, OSError):
            log.warning("could not remove the partial inference log file %s", self.tmp)


class ParquetSink:
    def __init__(
        self,
        root: str | Path,
        storage_options: Mapping[str, Any] | None = None,
        compression: str = "zstd",
        *,
        roll_seconds: float = 60.0,
        roll_bytes: int = 128 * 1024 * 1024,
        compact_files: int = 32,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = str(root)
        fs, path = fsspec.core.url_to_fs(self.url, **dict(storage_options or {}))
        self.fs: Any = fs
        self.root: str = path.rstrip("/")
        self.compression = compression
        self.roll_seconds = roll_seconds
        self.roll_bytes = roll_bytes
        self.compact_files = max(2, compact_files)
        self.clock = clock
        self.files_written = 0
        self._open: dict[tuple[str, str], _Part] = {}
        #: finished small files per partition, not yet compacted: (path, rows)
        self._finished: dict[tuple[str, str], list[tuple[str, int]]] = defaultdict(list)

    def write(self, batch: Sequence[LoggedRequest]) -> None:
        groups: dict[tuple[str, str], list[LoggedRequest]] = defaultdict(list)
        for r in batch:
            groups[(r.deployment, r.timestamp.date().isoformat())].append(r)
        for key, records in groups.items():
            table = to_table(records)
            part = self._open.get(key)
            if part is not None and not part.schema.equals(table.schema):
                self._finish(key)  # the columns changed: a new file
                part = None
            if part is None:
                folder = posixpath.join(self.root, f"deployment={key[0]}", f"date={key[1]}")
                self.fs.makedirs(folder, exist_ok=True)
                part = self._open[key] = _Part(self, folder, table.schema)
            try:
                part.append(table)
            except BaseException as exc:
                del self._open[key]
                part.abort()
                lost = part.rows  # rows of earlier batches in the same file are gone too
                raise SinkWriteError(
                    f"writing {part.tmp} failed ({exc}); the partial file was removed",
                    failed=len(batch), lost_earlier=lost) from exc
            if part.bytes >= self.roll_bytes:
                try:
                    self._finish(key)
                except SinkWriteError as exc:  # this batch's rows were in that file too
                    raise SinkWriteError(str(exc), failed=len(batch),
                                         lost_earlier=exc.lost_earlier - table.num_rows
                                         ) from exc

    def roll_due(self) -> int:
        """Finish every open file older than ``roll_seconds`` (called while idle too)."""
        now = self.clock()
        due = [k for k, p in self._open.items() if now - p.opened >= self.roll_seconds]
        for key in due:
            self._finish(key)
        return len(due)

    def _finish(self, key: tuple[str, str]) -> None:
        part = self._open.pop(key)
        try:
            final = part.finish()
        except BaseException as exc:
            part.abort()
            raise SinkWriteError(f"finishing {part.tmp} failed ({exc}); the file was removed",
                                 failed=0, lost_earlier=part.rows) from exc
        self.files_written += 1
        done = self._finished[key]
        done.append((final, part.rows))
        if len(done) >= self.compact_files:
            self._compact(key)

    def _compact(self, key: tuple[str, str]) -> None:
        """Merge this sink's small finished files of one partition into one file."""
        sources = self._finished.pop(key)
        folder = posixpath.dirname(sources[0][0])
        name = f"part-{uuid.uuid4().hex}.parquet"
        tmp = posixpath.join(folder, f".{name}.tmp")
        try:
            tables = []
            for path, _ in sources:
                with self.fs.open(path, "rb") as f:
                    tables.append(pq.read_table(f))
            merged = pa.concat_tables(tables, promote_options="permissive")
            replaces = json.dumps([posixpath.basename(p) for p, _ in sources]).encode()
            merged = merged.replace_schema_metadata({**(merged.schema.metadata or {}),
                                                     REPLACES: replaces})
            with self.fs.open(tmp, "wb") as f:
                pq.write_table(merged, f, compression=self.compression)
            self.fs.mv(tmp, posixpath.join(folder, name))
        except Exception as exc:  # the small files stay as they are: nothing is lost
            log.warning("inference log: compacting %d files in %s failed: %s", len(sources),
                        folder, exc)
            try:
                self.fs.rm(tmp)
            except (FileNotFoundError, OSError):
                pass
            return
        for path, _ in sources:
            self.fs.rm(path)
        if merged.nbytes < self.roll_bytes // 2:  # small enough to merge again later
            self._finished[key].append((posixpath.join(folder, name), merged.num_rows))

    def flush(self) -> None:
        """Finish every open file (readers see everything written so far)."""
        for key in list(self._open):
            self._finish(key)

    def close(self) -> None:
        self.flush()
