"""Where a FileSource's rows are: a file, a folder (maybe hive-partitioned) or a glob,
on the local disk or behind an fsspec URL.

Relative local paths are relative to the feature repo. Folders are searched recursively for
files of the source's format; names starting with ``.`` or ``_`` (temporary files, Spark's
``_SUCCESS``) are skipped, so a writer can stage a file under a hidden name and rename it.
"""

from __future__ import annotations

import glob
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

import fsspec
from fsspec import AbstractFileSystem

from tureen.definitions import FileSource
from tureen.errors import InvalidRequestError, NotFoundError
from tureen.offline.parquet_stats import cached_file_range

SUFFIXES = {
    "parquet": (".parquet", ".pq", ".parq"),
    "csv": (".csv", ".csv.gz", ".tsv"),
}
_GLOB_CHARS = ("*", "?", "[")


@dataclass(frozen=True)
class Location:
    """A source path resolved: ``path`` is absolute (local) or protocol-less (``fs`` set)."""

    written: str
    path: str
    fs: AbstractFileSystem | None
    file_format: str

    @property
    def is_glob(self) -> bool:
        return any(c in self.path for c in _GLOB_CHARS)

    def url(self, path: str) -> str:
        """The name DuckDB opens ``path`` by (the fsspec URL for remote files)."""
        return path if self.fs is None else str(self.fs.unstrip_protocol(path))


@dataclass(frozen=True)
class FileSet:
    location: Location
    files: tuple[str, ...]
    hive: bool


def locate(source: FileSource, repo_path: Path) -> Location:
    written = source.path
    fmt = source.file_format or "parquet"
    if "://" in written and not written.startswith("file://"):
        fs, path = fsspec.core.url_to_fs(written)
        return Location(written, str(path), fs, fmt)
    local = written.removeprefix("file://")
    p = Path(local).expanduser()
    if not p.is_absolute():
        p = repo_path / p
    return Location(written, os.path.normpath(str(p)), None, fmt)


def _visible(rel_parts: list[str]) -> bool:
    return not any(part.startswith((".", "_")) for part in rel_parts)


def list_files(loc: Location) -> FileSet:
    """The data files of ``loc``, sorted; NotFoundError naming the path when there are none."""
    suffixes = SUFFIXES.get(loc.file_format, (".parquet",))
    base = loc.path
    if loc.is_glob:
        found = _glob(loc)
        base = _static_prefix(loc.path)
    elif _isdir(loc, loc.path):
        found = [f for f in _walk(loc, loc.path) if f.lower().endswith(suffixes)]
    elif _isfile(loc, loc.path):
        return FileSet(loc, (loc.path,), False)
    else:
        raise NotFoundError(
            f"missing source file: {loc.written!r} (resolved to {loc.url(loc.path)}) does not "
            "exist. Create it, or fix the FileSource path (relative paths are relative to the "
            "feature repo)."
        )
    files = []
    for f in sorted(found):
        rel = _relative(f, base)
        if _visible(rel.split("/")):
            files.append(f)
    if not files:
        what = "matches the pattern" if loc.is_glob else f"with suffix {'/'.join(suffixes)} is in"
        raise NotFoundError(
            f"missing source files: no {loc.file_format} file {what} {loc.url(loc.path)!r} "
            f"(FileSource path {loc.written!r}). Write data there or fix the path."
        )
    hive = any("=" in part for f in files for part in _relative(f, base).split("/")[:-1])
    return FileSet(loc, tuple(files), hive)


def _relative(path: str, base: str) -> str:
    rel = posixpath.relpath(path.replace(os.sep, "/"), base.replace(os.sep, "/"))
    return "" if rel.startswith("..") else rel


def _static_prefix(pattern: str) -> str:
    parts = pattern.replace(os.sep, "/").split("/")
    static: list[str] = []
    for part in parts:
        if any(c in part for c in _GLOB_CHARS):
            break
        static.append(part)
    return "/".join(static) or "/"


def _glob(loc: Location) -> list[str]:
    if loc.fs is None:
        return [f for f in glob.glob(loc.path, recursive=True) if os.path.isfile(f)]
    return [str(f) for f in loc.fs.glob(loc.path) if loc.fs.isfile(f)]


def _isdir(loc: Location, path: str) -> bool:
    return os.path.isdir(path) if loc.fs is None else bool(loc.fs.isdir(path))


def _isfile(loc: Location, path: str) -> bool:
    return os.path.isfile(path) if loc.fs is None else bool(loc.fs.isfile(path))


def _walk(loc: Location, root: str) -> list[str]:
    if loc.fs is None:
        out: list[str] = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith((".", "_"))]
            out.extend(os.path.join(dirpath, f) for f in filenames)
        return out
    return [str(f) for f in loc.fs.find(root)]


def append_folder(loc: Location) -> str:
    """The folder new files of ``loc`` are written into.

    A folder source (existing, or a path without a file suffix) is used as is; a glob writes
    into its fixed leading folder, and only when the new file's name would match the pattern
    (``dir/*.parquet`` or ``dir/**/*.parquet``). A single-file source cannot take more rows
    without rewriting it, so it is refused.
    """
    suffixes = SUFFIXES.get(loc.file_format, (".parquet",))
    if loc.is_glob:
        folder = _static_prefix(loc.path)
        tail = loc.path.replace(os.sep, "/")[len(folder):].lstrip("/")
        if tail in {f"*{suffixes[0]}", f"**/*{suffixes[0]}"}:
            return folder
        raise InvalidRequestError(
            f"cannot store pushed rows offline in FileSource {loc.written!r}: the glob is not "
            f"of the form dir/*{suffixes[0]}. Point the push source's batch_source at a folder."
        )
    if _isdir(loc, loc.path):
        return loc.path
    if _isfile(loc, loc.path) or loc.path.lower().endswith(suffixes):
        raise InvalidRequestError(
            f"cannot store pushed rows offline in FileSource {loc.written!r}: it is a single "
            "file, and rows are appended as new files. Point the push source's batch_source "
            "at a folder (move the file into it; every file in the folder is read)."
        )
    return loc.path


def overlapping(files: FileSet, column: str, lo_us: int | None, hi_us: int | None) -> FileSet:
    """The files of a Parquet ``files`` set that may hold rows with ``lo_us <= column <=
    hi_us`` (None: unbounded), judged by footer statistics; files without usable statistics
    are kept. At least one file is always kept (the query still needs a schema; its WHERE
    clause then drops the rows)."""
    if files.location.file_format != "parquet" or (lo_us is None and hi_us is None):
        return files
    keep = []
    for f in files.files:
        found = cached_file_range(f, column, files.location.fs)
        if found is None or ((lo_us is None or found[1] >= lo_us)
                             and (hi_us is None or found[0] <= hi_us)):
            keep.append(f)
    if not keep:
        keep = [files.files[-1]]
    return FileSet(files.location, tuple(keep), files.hive)
