"""The latest rows of a deployment's Parquet inference log, reading only the newest files."""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from tureen.console.redact import redact_url
from tureen.deployments import DeploymentSpec
from tureen.inference_log.sinks import parquet_root

MAX_FILES = 50


def latest_rows(repo_path: Path, spec: DeploymentSpec, limit: int) -> dict[str, Any]:
    sink = spec.log_sink
    if spec.logging.value == "NONE":
        return {"columns": [], "rows": [], "note": "this deployment does not log requests "
                "(logging NONE): set a logging mode to see them here."}
    if sink and sink.startswith(("http://", "https://", "kafka://")):
        return {"columns": [], "rows": [], "note": f"requests are logged to "
                f"{redact_url(sink)}, not to Parquet: read them there."}
    root = parquet_root(sink, str(repo_path))
    fs, path = fsspec.core.url_to_fs(root)
    base = posixpath.join(path.rstrip("/"), f"deployment={spec.name}")
    days = sorted(fs.glob(posixpath.join(base, "date=*")), reverse=True)
    tables: list[pa.Table] = []
    rows = 0
    for day in days:
        files = sorted(fs.ls(day, detail=True), key=lambda f: f.get("mtime") or 0,
                       reverse=True)
        for f in files[:MAX_FILES]:
            name = posixpath.basename(f["name"])
            if not (name.startswith("part-") and name.endswith(".parquet")):
                continue
            with fs.open(f["name"], "rb") as fh:
                t = pq.read_table(fh)
            tables.append(t)
            rows += t.num_rows
            if rows >= limit:
                break
        if rows >= limit:
            break
    if not tables:
        return {"columns": [], "rows": [], "note": "no requests logged yet."}
    table = pa.concat_tables(tables, promote_options="permissive")
    table = table.sort_by([("timestamp", "descending"), ("request_id", "ascending"),
                           ("row", "ascending")]).slice(0, limit)
    columns = table.column_names
    return {"columns": columns, "rows": [[_cell(v) for v in r.values()]
                                         for r in table.to_pylist()], "note": None}


def _cell(v: Any) -> Any:
    if isinstance(v, float) and v != v:
        return None
    if isinstance(v, (list, tuple)) and len(v) > 8:
        return [*v[:8], "…"]
    return v
