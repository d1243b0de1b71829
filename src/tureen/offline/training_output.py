"""Writing a training set chunk by chunk: staged, then renamed into place.

``write_chunks`` writes the chunks of a training set (Arrow tables, in row order) as

- one Parquet file when the path ends in ``.parquet`` / ``.pq`` / ``.parq``,
- one CSV file when it ends in ``.csv``,
- otherwise a Parquet dataset folder of ``part-NNNNN.parquet`` files (rows in file-name order).

Everything is written under a hidden staging name next to the destination (``.NAME.staging-
<id>``) and renamed to the destination only once the last chunk is written. Any failure —
including Ctrl-C (KeyboardInterrupt) — removes the staging file or folder, so the destination
holds either the previous content or the complete new training set, never a partial one.
Local paths and fsspec URLs work alike.
"""

from __future__ import annotations

import contextlib
import posixpath
import signal
import threading
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tureen.errors import InvalidRequestError

Progress = Callable[[int, int], None]
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
ROWS_PER_PART = 10_000_000
#: file formats a user may ask for by extension that tureen does not write: refused rather
#: than written as Parquet under that name
OTHER_FORMATS = (".json", ".jsonl", ".ndjson", ".tsv", ".txt", ".xlsx", ".xls", ".feather",
                 ".arrow", ".ipc", ".orc", ".avro", ".pkl", ".pickle", ".h5", ".hdf5", ".npy",
                 ".npz")


def output_kind(path: str | Path) -> str:
    """``parquet-file``, ``csv`` or ``parquet-folder`` for a destination path; another
    file format's extension (``.json``, ``.xlsx``, ...) is refused."""
    name = str(path).lower().rstrip("/")
    if name.endswith(OTHER_FORMATS):
        raise InvalidRequestError(
            f"output {str(path)!r}: tureen writes .parquet (.pq) or .csv files, or a Parquet "
            f"dataset folder (a name without a suffix), not {posixpath.splitext(name)[1]}; "
            "choose one of those."
        )
    if name.endswith(".csv"):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet-file"
    return "parquet-folder"


def write_chunks(
    chunks: Iterable[pa.Table],
    path: str | Path,
    *,
    total_rows: int | None = None,
    progress: Progress | None = None,
    rows_per_part: int = ROWS_PER_PART,
) -> int:
    """Write ``chunks`` to ``path`` (see the module docstring); returns the rows written.
    ``progress(rows_done, total_rows)`` is called after each chunk (total 0 if unknown)."""
    fs, dest = fsspec.core.url_to_fs(str(path))
    dest = dest.rstrip("/")
    parent, name = posixpath.split(dest)
    if not name:
        raise InvalidRequestError(f"output path {str(path)!r} names no file or folder.")
    if parent:
        fs.makedirs(parent, exist_ok=True)
    kind = output_kind(dest)
    if kind != "parquet-folder" and fs.isdir(dest):
        raise InvalidRequestError(
            f"output {str(path)!r} is an existing folder; name a file ending in "
            ".parquet/.csv, or a folder without a suffix for a Parquet dataset."
        )
    staging = posixpath.join(parent, f".{name}.staging-{uuid.uuid4().hex[:12]}")
    done = 0
    # One writer thread: chunk k is compressed and written while chunk k+1 is joined (both
    # release the GIL); at most two chunks are held at a time.
    writer = ThreadPoolExecutor(1, thread_name_prefix="tureen-writer")
    sink = _Sink(fs, staging, kind, rows_per_part)
    ctrl_c = _CtrlC()
    try:
        ctrl_c.install()
        sink.open()
        pending: Future[None] | None = None
        for chunk in chunks:
            if pending is not None:
                pending.result()
                if progress is not None:
                    progress(done, total_rows or 0)
            pending = writer.submit(sink.write, chunk)
            done += chunk.num_rows
        if pending is not None:
            pending.result()
            if progress is not None:
                progress(done, total_rows or 0)
        sink.close()
        ctrl_c.check()  # an engine may have ended its input early on the interrupt
        _replace(fs, staging, dest)
    except BaseException as exc:
        # Let the writer thread finish (or drop its queued chunk) before closing the files
        # and removing the staging output: nothing may write there after the removal.
        writer.shutdown(wait=True, cancel_futures=True)
        with suppress(Exception):
            sink.close()
        if fs.exists(staging):
            fs.rm(staging, recursive=True)
        if ctrl_c.pressed and not isinstance(exc, KeyboardInterrupt):
            # DuckDB reports a query stopped by Ctrl-C as an error ("Query interrupted")
            raise KeyboardInterrupt from exc
        raise
    finally:
        ctrl_c.restore()
        writer.shutdown(wait=True)
    return done


class _CtrlC:
    """Remembers a Ctrl-C (SIGINT) while a training set is written. Engines catch SIGINT
    themselves — DuckDB stops the query and may end a scan of Python data as if the input
    were complete — so the writer cannot rely on a KeyboardInterrupt reaching it: the staged
    output is renamed into place only if no Ctrl-C came. Only in the main thread; the
    handler already installed (Python's, or one a library such as PySpark set) still runs
    after the interrupt is noted, and an ignored SIGINT stays ignored."""

    def __init__(self) -> None:
        self.pressed = False
        self._previous: Any = None
        self._installed = False

    def _handler(self, signum: int, frame: Any) -> None:
        self.pressed = True
        previous = self._previous
        if callable(previous):
            previous(signum, frame)
        raise KeyboardInterrupt

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGINT)
        if previous in (signal.SIG_IGN, None):
            return
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGINT, self._handler)
            self._previous, self._installed = previous, True

    def restore(self) -> None:
        if self._installed:
            self._installed = False
            signal.signal(signal.SIGINT, self._previous)

    def check(self) -> None:
        if self.pressed:
            raise KeyboardInterrupt


class _Sink:
    """Writers for one staged output; parts of a folder roll over every ``rows_per_part``."""

    def __init__(self, fs: Any, staging: str, kind: str, rows_per_part: int) -> None:
        self.fs, self.staging, self.kind, self.rows_per_part = fs, staging, kind, rows_per_part
        self._stack = ExitStack()
        self._writer: Any = None
        self._schema: pa.Schema | None = None
        self._part = 0
        self._in_part = 0

    def open(self) -> None:
        if self.kind == "parquet-folder":
            self.fs.makedirs(self.staging, exist_ok=False)

    def close(self) -> None:
        self._stack.close()

    def _open(self, schema: pa.Schema) -> None:
        if self.kind == "parquet-folder":
            target = posixpath.join(self.staging, f"part-{self._part:05d}.parquet")
            self._part += 1
        else:
            target = self.staging
        fh = self._stack.enter_context(self.fs.open(target, "wb"))
        if self.kind == "csv":
            self._writer = pacsv.CSVWriter(fh, schema)
        else:
            # Dictionary-encode keys, strings and the like, not numeric features: their
            # values rarely repeat, and trying costs about half the write time.
            dictionary = [f.name for f in schema
                          if not (pa.types.is_floating(f.type) or pa.types.is_timestamp(f.type))]
            self._writer = pq.ParquetWriter(fh, schema, use_dictionary=dictionary)
        self._stack.callback(self._writer.close)
        self._in_part = 0

    def write(self, chunk: pa.Table) -> None:
        if self._schema is None:
            self._schema = chunk.schema
        elif not chunk.schema.equals(self._schema):
            chunk = chunk.cast(self._schema)
        if self._writer is None:
            self._open(self._schema)
        elif self.kind == "parquet-folder" and self._in_part >= self.rows_per_part:
            self._stack.close()
            self._stack = ExitStack()
            self._open(self._schema)
        if chunk.num_rows:
            self._writer.write_table(chunk)
        self._in_part += chunk.num_rows


def write_staged(path: str | Path, write: Callable[[str], None]) -> None:
    """``write(staging)`` (an engine writing the whole output itself, e.g. Spark) under a
    hidden staging name next to ``path``, then moved into place replacing what was there;
    nothing partial is left behind on failure."""
    fs, dest = fsspec.core.url_to_fs(str(path))
    dest = dest.rstrip("/")
    parent, name = posixpath.split(dest)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    staging = posixpath.join(parent, f".{name}.staging-{uuid.uuid4().hex[:12]}")
    local = "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))
    try:
        write(staging if local else fs.unstrip_protocol(staging))
        _replace(fs, staging, dest)
    except BaseException:
        if fs.exists(staging):
            fs.rm(staging, recursive=True)
        raise


def _replace(fs: Any, staging: str, dest: str) -> None:
    """Move ``staging`` to ``dest``, replacing what is there (an old folder is moved aside
    first and removed after, so ``dest`` is never a mix of old and new parts)."""
    if not fs.exists(dest):
        fs.mv(staging, dest, recursive=True)
        return
    if fs.isdir(dest):
        parent, name = posixpath.split(dest)
        aside = posixpath.join(parent, f".{name}.old-{uuid.uuid4().hex[:12]}")
        fs.mv(dest, aside, recursive=True)
        try:
            fs.mv(staging, dest, recursive=True)
        except BaseException:
            fs.mv(aside, dest, recursive=True)
            raise
        fs.rm(aside, recursive=True)
        return
    fs.mv(staging, dest)
