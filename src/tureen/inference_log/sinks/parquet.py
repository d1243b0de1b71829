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
import pyarrow as pa
import pyarrow.parquet as pq

from tureen.inference_log.record import LoggedRequest

ENTITY, REQUEST, FEATURE, PREDICTION = "entity.", "request.", "feature.", "prediction."
META = ("request_id", "row", "deployment", "model_name", "model_version", "timestamp")


def to_table(batch: Sequence[LoggedRequest]) -> pa.Table:
    """One row per instance; columns missing in a request are null."""
    cols: dict[str, list[Any]] = {k: [] for k in META}
    n_total = 0
    for r in batch:
        n = max(r.rows, 1)
        cols["request_id"].extend([r.request_id] * n)
        cols["row"].extend(range(n))
        cols["deployment"].extend([r.deployment] * n)
        cols["model_name"].extend([r.model_name] * n)
        cols["model_version"].extend([r.model_version] * n)
        cols["timestamp"].extend([r.timestamp] * n)
        for prefix, values in ((ENTITY, r.entities), (REQUEST, r.request_fields),
                               (FEATURE, r.features), (PREDICTION, r.predictions)):
            for k, v in values.items():
                col = cols.get(prefix + k)
                if col is None:
                    col = cols[prefix + k] = [None] * n_total
                col.extend(v[:n] if len(v) >= n else [*v, *([None] * (n - len(v)))])
        n_total += n
        for col in cols.values():
            if len(col) < n_total:
                col.extend([None] * (n_total - len(col)))
    arrays = {}
    for k, v in cols.items():
        if k == "timestamp":
            arrays[k] = pa.array(v, pa.timestamp("us", tz="UTC"))
        elif k == "row":
            arrays[k] = pa.array(v, pa.int32())
        else:
            arrays[k] = pa.array(v)
    return pa.table(arrays)


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
