"""The offline logs of a stream: Parquet files appended in bounded parts, then compacted.

An event log is a folder (the source's ``batch_source``): every accepted event is one row,
with extra columns — ``_tureen_event_id`` (where it came from: ``partition:offset:kafka
timestamp`` for Kafka, ``ingestion id:row`` over HTTP), ``_tureen_late`` (it arrived behind
the watermark) and ``_tureen_behind_us`` (by how much: a view with ``late_events="update"``
counts it if that is within its ``allowed_lateness``; other windows never count it). A
window log (``<log>/_windows/<view>/``) holds a view's window rows (several rows of one
window end when late events rewrote it: the greatest ``created_timestamp`` is current).
Files are written under a hidden name and renamed, so a reader never sees half a file;
each part carries the stream's watermark state in its Parquet metadata, so a restarted
ingester resumes exactly where the written log ends.

Replays after a crash may append an event twice; compaction merges small parts into large
ones and keeps one row per event id (window rows: one per entity, window end and created
time), and
every reader of the log (backfill, window rebuild) deduplicates the same way, so a
duplicate is never counted.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from pyarrow.fs import FileSystem, FSSpecHandler, LocalFileSystem, PyFileSystem

from tureen.definitions import FileSource
from tureen.errors import BackendUnavailableError
from tureen.offline.source_files import Location, append_folder, locate

EVENT_ID = "_tureen_event_id"
LATE = "_tureen_late"
BEHIND = "_tureen_behind_us"  # how far behind the watermark a late event arrived (null: on time)
STATE_KEY = b"tureen.stream"
_PART = "part-"


@dataclass(frozen=True)
class LogFolder:
    """Where one log's files go: a local folder, or a folder on an fsspec filesystem."""

    path: str
    fs: FileSystem
    written: str

    @classmethod
    def of(cls, source: FileSource, repo_path: Path) -> LogFolder:
        loc: Location = locate(source, repo_path)
        folder = append_folder(loc)
        fs: FileSystem = LocalFileSystem() if loc.fs is None else PyFileSystem(
            FSSpecHandler(loc.fs))
        return cls(folder, fs, loc.written)

    def _mkdir(self) -> None:
        self.fs.create_dir(self.path, recursive=True)

    def parts(self) -> list[str]:
        """The visible part files, oldest first (names sort by write time)."""
        from pyarrow.fs import FileSelector, FileType

        try:
            infos = self.fs.get_file_info(FileSelector(self.path, allow_not_found=True))
        except OSError as exc:
            raise BackendUnavailableError(f"cannot list the stream log {self.written}: {exc}"
                                          ) from exc
        return sorted(i.path for i in infos if i.type == FileType.File
                      and i.base_name.startswith(_PART) and i.base_name.endswith(".parquet"))

    def write(self, table: pa.Table, state: dict[str, Any] | None = None) -> str:
        """Write ``table`` as one new part (atomically: hidden name, then rename)."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        name = f"{_PART}{stamp}-{uuid.uuid4().hex[:8]}.parquet"
        final, tmp = f"{self.path}/{name}", f"{self.path}/.{name}.tmp"
        if state is not None:
            meta = dict(table.schema.metadata or {})
            meta[STATE_KEY] = json.dumps(state, sort_keys=True).encode()
            table = table.replace_schema_metadata(meta)
        try:
            self._mkdir()
            with self.fs.open_output_stream(tmp) as out:
                pq.write_table(table, out, compression="zstd")
            self.fs.move(tmp, final)
        except OSError as exc:
            raise BackendUnavailableError(
                f"writing {table.num_rows} rows to the stream log {self.written} failed: {exc}. "
                "Nothing was committed; the rows are retried."
            ) from exc
        return final

    def states(self) -> list[dict[str, Any]]:
        """The watermark state recorded in each part, oldest first."""
        out = []
        for path in self.parts():
            meta = pq.read_schema(path, filesystem=self.fs).metadata or {}
            raw = meta.get(STATE_KEY)
            if raw:
                out.append(json.loads(raw))
        return out

    def read(self, columns: Sequence[str] | None = None,
             since: tuple[str, int] | None = None) -> pa.Table | None:
        """Every row (or those with ``since[0] >= since[1]`` µs), or None if no parts."""
        parts = self.parts()
        if not parts:
            return None
        ds = pads.dataset(parts, filesystem=self.fs, format="parquet")
        names = ds.schema.names
        cols = [c for c in columns if c in names] if columns is not None else None
        flt = None
        if since is not None and since[0] in names:
            ts = pa.scalar(since[1], pa.int64()).cast(pa.timestamp("us", tz="UTC"))
            flt = pads.field(since[0]) >= ts
        return ds.to_table(columns=cols, filter=flt)

    def remove(self, paths: Sequence[str]) -> None:
        for p in paths:
            try:
                self.fs.delete_file(p)
            except FileNotFoundError:
                pass


def dedupe(table: pa.Table, by: Sequence[str]) -> pa.Table:
    """``table`` keeping the first row of each ``by`` key (rows with a null id are kept)."""
    if table.num_rows == 0 or not all(c in table.column_names for c in by):
        return table
    idx = pa.array(range(table.num_rows), pa.int64())
    marked = table.select(list(by)).append_column("__row", idx)
    if len(by) == 1 and table.column(by[0]).null_count:
        nulls = pc.is_null(table.column(by[0]))
        keep_null = pc.filter(idx, nulls)
        marked = marked.filter(pc.invert(nulls))
    else:
        keep_null = pa.array([], pa.int64())
    firsts = marked.group_by(list(by), use_threads=False).aggregate([("__row", "min")])
    keep = pc.sort_indices(pa.concat_arrays([firsts.column("__row_min").combine_chunks(),
                                             keep_null]))
    rows = pc.take(pa.concat_arrays([firsts.column("__row_min").combine_chunks(), keep_null]),
                   keep)
    return table.take(rows)


def merge_states(states: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One state from several parts: the newest event time per partition, the highest
    watermark and closed window ends (all only ever move forward)."""
    out: dict[str, Any] = {"newest": {}, "watermark": None, "closed": {}, "positions": {}}
    for s in states:
        for p, ts in s.get("newest", {}).items():
            cur = out["newest"].get(p)
            out["newest"][p] = ts if cur is None else max(cur, ts)
        wm = s.get("watermark")
        if wm is not None:
            out["watermark"] = wm if out["watermark"] is None else max(out["watermark"], wm)
        for key in ("closed", "positions"):
            for v, c in s.get(key, {}).items():
                cur = out[key].get(v)
                out[key][v] = c if cur is None else max(cur, c)
    return out


def compact(log: LogFolder, by: Sequence[str], min_files: int, target_rows: int,
            sort_by: str | None = None) -> tuple[int, int]:
    """Merge the log's parts into files of about ``target_rows`` rows, one row per ``by``
    key. Returns (files before, files after); a log with fewer than ``min_files`` parts is
    left alone. New files are written before the old ones are removed, so a crash in
    between leaves duplicates (removed by the next compaction), never a gap."""
    every = log.parts()
    parts = [p for p in every if _rows(log, p) < target_rows // 2]  # big ones stay as they are
    if len(parts) < min_files:
        return len(every), len(every)
    states = []
    for p in parts:
        raw = (pq.read_schema(p, filesystem=log.fs).metadata or {}).get(STATE_KEY)
        if raw:
            states.append(json.loads(raw))
    table = pads.dataset(parts, filesystem=log.fs, format="parquet").to_table()
    table = dedupe(table, by)
    if sort_by is not None and sort_by in table.column_names:
        table = table.sort_by(sort_by)
    state = merge_states(states) if states else None
    written = 0
    for start in range(0, max(table.num_rows, 1), target_rows):
        log.write(table.slice(start, target_rows).replace_schema_metadata(None), state)
        written += 1
    log.remove(parts)
    return len(every), len(every) - len(parts) + written


def _rows(log: LogFolder, path: str) -> int:
    return int(pq.read_metadata(path, filesystem=log.fs).num_rows)
