"""The started deployments of a repo as models for ``tureen serve``.

``tureen.feature_server.repo_server`` discovers ``served_models`` here and serves each
started deployment as a model named after it (``/v1/models/<deployment>:predict``,
``/v2/models/<deployment>/infer``, gRPC), next to the feature server.
"""

from __future__ import annotations

from collections.abc import Sequence

from tureen.deployments.runtime import DeploymentModel
from tureen.deployments.service import Deployments
from tureen.deployments.spec import DeploymentSpec
from tureen.errors import NotFoundError
from tureen.models import ModelRegistry
from tureen.serving.model import Model
from tureen.store import FeatureStore


def deployment_model(store: FeatureStore, name: str, refresh_seconds: float = 1.0
                     ) -> DeploymentModel:
    models = ModelRegistry.for_repo(store.repo_path)
    deployments = Deployments(store, models)
    spec = deployments.get(name) if name not in deployments.specs() else _spec(deployments, name)
    return DeploymentModel(spec, store, models, spec_source=lambda: _spec(deployments, name),
                           refresh_seconds=refresh_seconds)


def _spec(deployments: Deployments, name: str) -> DeploymentSpec:
    """The runtime re-reads its own spec (not on a caller's behalf: no role check)."""
    spec = deployments.specs().get(name)
    if spec is None:
        raise NotFoundError(f"deployment {name!r} was deleted while it was served.")
    return spec


def served_models(store: FeatureStore) -> Sequence[Model]:
    models = ModelRegistry.for_repo(store.repo_path)
    deployments = Deployments(store, models)
    out: list[Model] = []
    for spec in sorted(deployments.specs().values(), key=lambda s: s.name):
        if spec.state != "started":
            continue
        name = spec.name
        out.append(DeploymentModel(
            spec, store, models,
            spec_source=lambda n=name: _spec(deployments, n),  # type: ignore[misc]
        ))
    return out
