"""Training-set step: a point-in-time-correct training set, pinned to a data snapshot.

The snapshot is what decides the rows: a digest of the definitions the features come from
(the registry version is recorded too, but it also moves when deployments change), a digest
of the entity source, and a fingerprint (size, modification time) of every source file the
features are read from. ``snapshot()`` computes it cheaply — the local runner uses it in the
task's cache key, so a rerun on the same snapshot reuses the set and a rerun on changed data
builds a new one. ``build()`` writes the set as one Parquet file and returns the metadata
recorded on the ``Dataset`` artifact: the snapshot plus a sha256 of the entity rows as read,
the feature names, the row count. A set built at a registry version other than
``pin_registry_version`` is refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.dataset as pads

from tureen.definitions import FileSource, source_of
from tureen.errors import ConflictError, InvalidRequestError
from tureen.feature_refs import resolve
from tureen.offline.source_files import list_files, locate
from tureen.pipelines.steps.repo import repo_config
from tureen.store import FeatureStore

_CHUNK = 1 << 20


def _features(feature_service: str, features: Sequence[str] | None) -> str | list[str]:
    if features:
        if feature_service:
            raise InvalidRequestError("give feature_service or features, not both.")
        return list(features)
    if not feature_service:
        raise InvalidRequestError("give a feature_service (or a list of view:feature).")
    return feature_service


def _entity_path(repo: Path, entities: str) -> str:
    if not entities:
        raise InvalidRequestError("entities: give the Parquet or CSV file of entity rows "
                                  "(keys, event_timestamp, labels), relative to the repo.")
    if "://" in entities:
        return entities
    p = Path(entities).expanduser()
    p = p if p.is_absolute() else repo / p
    if not p.exists():
        raise InvalidRequestError(f"entities: {p} does not exist.")
    return str(p)


def _file_digest(path: str) -> str:
    import fsspec

    h = hashlib.sha256()
    with fsspec.open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _sources(store: FeatureStore, refs: str | list[str]) -> dict[str, str]:
    """view -> fingerprint of its source files."""
    plan = resolve(store.snapshot(), refs)
    out: dict[str, str] = {}
    for read in plan.reads:
        src = source_of(read.view)
        if not isinstance(src, FileSource):
            out[read.view.name] = f"{type(src).__name__}:{getattr(src, 'name', '')}"
            continue
        fileset = list_files(locate(src, store.repo_path))
        h = hashlib.sha256()
        for f in fileset.files:
            fs = fileset.location.fs
            if fs is None:
                st = Path(f).stat()
                info = {"size": str(st.st_size), "mtime_ns": str(st.st_mtime_ns)}
            else:
                raw = fs.info(f)
                info = {k: str(raw.get(k)) for k in ("size", "mtime", "LastModified", "ETag",
                                                       "etag", "md5Hash") if k in raw}
            h.update(json.dumps([f, info], sort_keys=True).encode())
        out[read.view.name] = f"{len(fileset.files)} files, {h.hexdigest()[:16]}"
    return out


def definitions_digest(store: FeatureStore, refs: str | list[str]) -> str:
    """sha256 of the definitions the training set depends on (the views it reads, the
    on-demand views it runs, the service): unlike the registry version, it does not move when
    unrelated definitions, deployments or materialization records change."""
    snap = store.snapshot()
    plan = resolve(snap, refs)
    parts = {"views": [r.view.to_dict() for r in plan.reads],
             "on_demand": [v.to_dict() for v in plan.on_demand],
             "refs": [r.ref for r in plan.refs]}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def snapshot(repo: str = "", config: str = "", feature_service: str = "",
             features: Sequence[str] | None = None, entities: str = "",
             env: Mapping[str, str] | None = None) -> dict[str, Any]:
    path, cfg = repo_config(repo, config, env)
    store = FeatureStore(path, config=cfg)
    refs = _features(feature_service, features)
    return {
        "project": store.project,
        "definitions_sha256": definitions_digest(store, refs),
        "entities_sha256": _file_digest(_entity_path(path, entities)),
        "sources": _sources(store, refs),
    }


def entity_rows_digest(frame: pd.DataFrame) -> str:
    """sha256 of the entity rows in order (column names, dtypes and a hash of every row)."""
    h = hashlib.sha256(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()


def read_entities(path: str) -> pd.DataFrame:
    lowered = path.lower()
    if lowered.endswith((".csv", ".csv.gz", ".tsv")):
        return pd.read_csv(path, sep="\t" if lowered.endswith(".tsv") else ",")
    return pd.read_parquet(path)


def build(out_path: str, *, repo: str = "", config: str = "", feature_service: str = "",
          features: Sequence[str] | None = None, entities: str = "",
          pin_registry_version: int = 0, timestamp_column: str = "") -> dict[str, Any]:
    """Write the training set to ``out_path`` (Parquet); returns the artifact metadata.
    ``timestamp_column``: the entity rows' time column (default: ``event_timestamp``)."""
    path, cfg = repo_config(repo, config)
    store = FeatureStore(path, config=cfg)
    refs = _features(feature_service, features)
    snap = store.snapshot()
    if pin_registry_version and snap.version != pin_registry_version:
        raise ConflictError(
            f"the registry is at version {snap.version}, but this training set is pinned to "
            f"version {pin_registry_version}; apply the definitions of that version or change "
            "pin_registry_version.")
    entity_path = _entity_path(path, entities)
    frame = read_entities(entity_path)
    job = store.get_historical_features(frame, refs, timestamp_column=timestamp_column or None)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    # One Parquet file at the artifact's path (what a KFP component reading `dataset.path`
    # expects): a path without a suffix would make a dataset folder, so write it suffixed.
    staged = out.with_name(out.name + ".parquet")
    job.to_parquet(staged)
    staged.replace(out)
    written = pads.dataset(out, format="parquet")
    return {
        "tureen.project": snap.project,
        "tureen.registry_version": snap.version,
        "tureen.definitions_sha256": definitions_digest(store, refs),
        "tureen.feature_service": feature_service or None,
        "tureen.features": list(job.feature_names),
        "tureen.entities": entities,
        "tureen.entities_sha256": _file_digest(entity_path),
        "tureen.entity_rows_sha256": entity_rows_digest(frame),
        "tureen.sources": _sources(store, refs),
        "rows": written.count_rows(),
        "columns": list(written.schema.names),
        "format": "parquet",
    }
