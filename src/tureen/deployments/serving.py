"""The started deployments of a repo as models for ``tureen serve``.

``tureen.feature_server.repo_server`` discovers ``served_models`` here and serves each
started deployment as a model named after it (``/v1/models/<deployment>:predict``,
``/v2/models/<deployment>/infer``, gRPC), next to the feature server.
"""

from __future__ import annotations

from collections.abc import Sequence

from tureen.deployments.runtime import DeploymentModel
from tureen.deployments.service import Deployments
from tureen.models import ModelRegistry
from tureen.serving.model import Model
from tureen.store import FeatureStore


def deployment_model(store: FeatureStore, name: str, refresh_seconds: float = 1.0
                     ) -> DeploymentModel:
    models = ModelRegistry.for_repo(store.repo_path)
    deployments = Deployments(store, models)
    spec = deployments.get(name)
    return DeploymentModel(spec, store, models, spec_source=lambda: deployments.get(name),
                           refresh_seconds=refresh_seconds)


def served_models(store: FeatureStore) -> Sequence[Model]:
    models = ModelRegistry.for_repo(store.repo_path)
    deployments = Deployments(store, models)
    out: list[Model] = []
    for spec in deployments.list():
        if spec.state != "started":
            continue
        name = spec.name
        out.append(DeploymentModel(
            spec, store, models,
            spec_source=lambda n=name: deployments.get(n),  # type: ignore[misc]
        ))
    return out
