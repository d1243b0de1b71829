"""Read a Parquet inference log back as one table (one row per served instance)."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping
from datetime import date
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from tureen.errors import NotFoundError
from tureen.inference_log.sinks.parquet import ENTITY, FEATURE, PREDICTION, REPLACES, REQUEST


def read_log(
    root: str,
    deployment: str,
    start: date | None = None,
    end: date | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> pa.Table:
    """Every logged row of ``deployment`` (dates in [start, end] when given), oldest first."""
    fs, path = fsspec.core.url_to_fs(root, **dict(storage_options or {}))
    base = posixpath.join(path.rstrip("/"), f"deployment={deployment}")
    files = sorted(fs.glob(posixpath.join(base, "date=*", "part-*.parquet")))
    picked = []
    for f in files:
        day = date.fromisoformat(posixpath.basename(posixpath.dirname(f))[len("date="):])
        if (start is None or day >= start) and (end is None or day <= end):
            picked.append(f)
    if not picked:
        raise NotFoundError(
            f"no inference log for deployment {deployment!r} under {root}"
            + (f" between {start} and {end}" if start or end else "")
            + ". Serve requests with logging ALL or MODEL_INPUTS (parquet sink) first."
        )
    tables: dict[str, pa.Table] = {}
    replaced: set[str] = set()
    for f in picked:
        try:
            with fs.open(f, "rb") as fh:
                t = pq.read_table(fh)
        except FileNotFoundError:  # compacted away since the listing
            continue
        tables[f] = t
        meta = t.schema.metadata or {}
        if REPLACES in meta:  # a compacted file; its sources may linger for a moment
            folder = posixpath.dirname(f)
            replaced |= {posixpath.join(folder, n) for n in json.loads(meta[REPLACES])}
    kept = [t.replace_schema_metadata(None) for f, t in tables.items() if f not in replaced]
    if not kept:
        raise NotFoundError(f"no inference log for deployment {deployment!r} under {root}.")
    tables_list = kept
    table = pa.concat_tables(tables_list, promote_options="permissive")
    return table.sort_by([("timestamp", "ascending"), ("request_id", "ascending"),
                          ("row", "ascending")])


def columns_with(table: pa.Table, prefix: str) -> list[str]:
    """Unprefixed names of the columns starting with ``prefix`` (ENTITY, FEATURE...)."""
    return [c[len(prefix):] for c in table.column_names if c.startswith(prefix)]


__all__ = ["ENTITY", "FEATURE", "PREDICTION", "REQUEST", "columns_with", "read_log"]
