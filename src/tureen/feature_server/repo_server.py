"""What ``tureen serve`` serves for a feature repo, in one place (the serving composition root).

``repo_models(store, transformers)`` returns the Models of one server:

1. every FeatureService as a model (``feature_service_models``);
2. the feature transformers configured in ``tureen.yaml`` (``serving.transformers``) or given
   on the command line;
3. whatever the registered **model providers** return. A provider is a function
   ``(store: FeatureStore) -> Sequence[Model]``; register one with
   ``register_model_provider(fn)``, or expose ``tureen.deployments.serving:served_models``
   (imported if present). This is the seam for started deployments.

In-process predictors named by a transformer (``predictor.model``) resolve to a provider's
model of that name, else to the latest version in the repo's model store
(``models/<name>/<version>/``).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tureen.errors import ConfigError, NotFoundError
from tureen.feature_server.service_model import feature_service_models
from tureen.serving.model import Model
from tureen.store import FeatureStore
from tureen.transformer import TransformerConfig, build_transformer, load_transformer_config

log = logging.getLogger(__name__)

ModelProvider = Callable[[FeatureStore], Sequence[Model]]
_PROVIDERS: list[ModelProvider] = []
#: providers discovered by import when present (module:function)
DISCOVERED = ("tureen.deployments.serving:served_models",)


def register_model_provider(provider: ModelProvider) -> None:
    """Add models to every ``tureen serve`` of this process (e.g. started deployments)."""
    if provider not in _PROVIDERS:
        _PROVIDERS.append(provider)


def _discovered() -> list[ModelProvider]:
    found: list[ModelProvider] = []
    for ref in DISCOVERED:
        mod_name, _, fn = ref.partition(":")
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and mod_name.startswith(exc.name):
                continue
            raise
        provider = getattr(mod, fn, None)
        if provider is not None:
            found.append(provider)
    return found


def transformer_configs(store: FeatureStore, extra: Sequence[str | Path] = ()
                        ) -> list[TransformerConfig]:
    """``serving.transformers`` of tureen.yaml plus config files given explicitly."""
    configs: list[TransformerConfig] = []
    for item in store.config.serving.transformers:
        if isinstance(item, str):
            path = Path(item)
            configs.append(load_transformer_config(
                path if path.is_absolute() else store.repo_path / path))
        else:
            configs.append(load_transformer_config(item))
    configs += [load_transformer_config(p) for p in extra]
    return configs


def model_resolver(store: FeatureStore, served: Sequence[Model]) -> Callable[[str], Model]:
    by_name = {m.name: m for m in served}

    def resolve(name: str) -> Model:
        if name in by_name:
            return by_name[name]
        path = latest_model_dir(store, name)
        from tureen.serving.runtimes import model_from_dir, read_settings

        return model_from_dir(name, path.name, path, read_settings(path.parent, path))

    return resolve


def latest_model_dir(store: FeatureStore, name: str) -> Path:
    """``<models>/<name>/<highest version>`` of the repo's model store (local paths only)."""
    opts: dict[str, Any] = store.config.models.options
    root = Path(str(opts.get("path", "models")))
    if not root.is_absolute():
        root = store.repo_path / root
    versions = sorted((p for p in (root / name).glob("*") if p.is_dir() and p.name.isdigit()),
                      key=lambda p: int(p.name)) if (root / name).is_dir() else []
    if not versions:
        raise NotFoundError(
            f"no model {name!r} in {root}: register it (tureen models register) or point "
            "predictor.model_dir at its files."
        )
    return versions[-1]


def repo_models(
    store: FeatureStore,
    transformers: Sequence[TransformerConfig] = (),
    *,
    feature_services: bool = True,
    providers: Sequence[ModelProvider] | None = None,
) -> list[Model]:
    """Every model one ``tureen serve`` of this repo serves (built, not loaded)."""
    models: list[Model] = []
    if feature_services:
        models += feature_service_models(store)
    provided: list[Model] = []
    for provider in [*_PROVIDERS, *_discovered()] if providers is None else providers:
        provided += list(provider(store))
    models += provided
    resolve = model_resolver(store, provided)
    for cfg in transformers:
        models.append(build_transformer(cfg, store=store, resolve_model=resolve))
    names = [m.name for m in models]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(
            f"more than one served model is named {dupes}: feature services, transformers and "
            "deployments share one namespace; rename one."
        )
    return models
