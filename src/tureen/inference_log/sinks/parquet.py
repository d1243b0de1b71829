"""Parquet dataset sink (the default): one row per instance the model saw.

Layout: ``ROOT/deployment=<name>/date=<YYYY-MM-DD>/part-<uuid>.parquet`` (hive partitioning,
readable by DuckDB, Spark, pyarrow.dataset). Each file is written under a hidden temporary
name and renamed when complete, so readers never see a partial file.

Columns: ``request_id``, ``row`` (index within the request), ``deployment``, ``model_name``,
``model_version``, ``timestamp`` (timestamp[us, UTC]), then ``entity.<key>``,
``request.<field>`` (request-time data the features needed), ``feature.<name>`` and
``prediction.<name>`` for the logged values.
"""

from __future__ import annotations

import posixpath
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tureen.inference_log.record import LoggedRequest

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


class ParquetSink:
    def __init__(
        self,
        root: str | Path,
        storage_options: Mapping[str, Any] | None = None,
        compression: str = "zstd",
    ) -> None:
        self.url = str(root)
        fs, path = fsspec.core.url_to_fs(self.url, **dict(storage_options or {}))
        self.fs: Any = fs
        self.root: str = path.rstrip("/")
        self.compression = compression
        self.files_written = 0

    def write(self, batch: Sequence[LoggedRequest]) -> None:
        groups: dict[tuple[str, str], list[LoggedRequest]] = defaultdict(list)
        for r in batch:
            groups[(r.deployment, r.timestamp.date().isoformat())].append(r)
        for (deployment, day), records in groups.items():
            folder = posixpath.join(self.root, f"deployment={deployment}", f"date={day}")
            self.fs.makedirs(folder, exist_ok=True)
            name = f"part-{uuid.uuid4().hex}.parquet"
            tmp = posixpath.join(folder, f".{name}.tmp")
            with self.fs.open(tmp, "wb") as f:
                pq.write_table(to_table(records), f, compression=self.compression)
            self.fs.mv(tmp, posixpath.join(folder, name))
            self.files_written += 1

    def close(self) -> None:
        pass
