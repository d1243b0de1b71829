"""Register step: a trained model into tureen's model registry, with its lineage — metrics,
feature service, training set and its data snapshot, and the pipeline run that made it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tureen.models import ModelRegistry, ModelVersion
from tureen.models.registry import store_from_config
from tureen.pipelines.steps.repo import repo_config
from tureen.store import FeatureStore

SNAPSHOT_KEYS = ("tureen.project", "tureen.registry_version", "tureen.definitions_sha256",
                 "tureen.entities",
                 "tureen.entities_sha256", "tureen.entity_rows_sha256", "tureen.sources")


def registry(repo: str = "", config: str = "", env: Mapping[str, str] | None = None
             ) -> ModelRegistry:
    path, cfg = repo_config(repo, config, env)
    features = FeatureStore(path, config=cfg)
    return ModelRegistry(store_from_config(cfg.models.options, path), features)


def register(model_dir: str, *, model_name: str, framework: str, metrics: Mapping[str, Any],
             training_set_uri: str, training_set_metadata: Mapping[str, Any],
             feature_service: str = "", pipeline_run: str = "", description: str = "",
             repo: str = "", config: str = "") -> ModelVersion:
    fs = feature_service or training_set_metadata.get("tureen.feature_service") or None
    numeric = {k: float(v) for k, v in metrics.items()
               if isinstance(v, int | float) and not isinstance(v, bool)}
    snapshot = {k.removeprefix("tureen."): training_set_metadata[k] for k in SNAPSHOT_KEYS
                if k in training_set_metadata}
    return registry(repo, config).register(
        model_name, model_dir, framework, metrics=numeric, feature_service=fs,
        training_set=training_set_uri, description=description,
        pipeline_run=pipeline_run or None, training_snapshot=snapshot or None)
