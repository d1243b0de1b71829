"""``ModelRegistry``: the models store of a feature repo, with lineage to its feature store.

``ModelRegistry.for_repo("repo")`` reads ``models:`` from ``tureen.yaml``::

    models: {type: file, path: models}                 # default; relative to the repo
    models: {type: file, path: "s3://bucket/models", storage_options: {anon: false}}

Registering with a feature service derives the model's input signature from the service's
schema (one input per feature, in the service's order, each Field's dtype mapped to its Open
Inference Protocol datatype) and records the registry version the model was trained against.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from tureen.backend_options import ModelsOptions
from tureen.errors import ConfigError, InvalidRequestError
from tureen.models.store import ModelStore
from tureen.models.version import ModelVersion, TensorSig, normalize_framework
from tureen.serving.context import Action, authorize

if TYPE_CHECKING:
    from tureen.store import FeatureStore


def store_from_config(options: Mapping[str, Any], repo_path: Path) -> ModelStore:
    try:
        cfg = ModelsOptions.model_validate(dict(options))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"tureen.yaml: models options: {problems}") from exc
    url = cfg.path
    if "://" not in url and not Path(url).is_absolute():
        url = str((repo_path / url).resolve())
    return ModelStore(url, cfg.storage_options)


class ModelRegistry:
    def __init__(self, store: ModelStore, features: FeatureStore | None = None) -> None:
        self.store = store
        self.features = features

    @classmethod
    def for_repo(cls, repo_path: str | Path = ".") -> ModelRegistry:
        from tureen.store import FeatureStore

        fs = FeatureStore(repo_path)
        cfg = fs.config.models
        if cfg.type != "file":
            raise ConfigError(
                f"tureen.yaml: models.type {cfg.type!r} is unknown; use 'file' with a local "
                "path or any fsspec URL as `path`."
            )
        return cls(store_from_config(cfg.options, fs.repo_path), fs)

    def signature_of(self, feature_service: str) -> tuple[list[TensorSig], int, str]:
        """(inputs, registry version, project) for a feature service of this repo."""
        from tureen.feature_refs import resolve

        if self.features is None:
            raise ConfigError(
                "a feature service was given but this model registry has no feature store; "
                "use ModelRegistry.for_repo(REPO)."
            )
        snap = self.features.snapshot()
        plan = resolve(snap, feature_service)
        inputs = [TensorSig(f.name, f.dtype.oip, (-1,)) for f in plan.output_fields]
        return inputs, snap.version, snap.project

    def register(
        self,
        name: str,
        path: str | Path,
        framework: str,
        metrics: Mapping[str, Any] | None = None,
        feature_service: str | None = None,
        training_set: str | Path | None = None,
        description: str = "",
        outputs: Sequence[TensorSig] = (),
        inputs: Sequence[TensorSig] = (),
        pipeline_run: str | None = None,
        training_snapshot: Mapping[str, Any] | None = None,
        method: str | None = None,
    ) -> ModelVersion:
        """Register the model at ``path`` as the next version of ``name``.

        ``method`` (scikit-learn only): what the served model calls — ``predict`` (labels,
        the default), ``predict_proba`` (class probabilities), ``predict_log_proba`` or
        ``decision_function``. It is written to the version's ``model-settings.json``, and
        the recorded output signature is the one the model server then reports."""
        registry_version: int | None = None
        project = self.features.project if self.features is not None else None
        authorize(Action.DEPLOY, f"{project or ''}/{name}")
        if feature_service is not None:
            derived, registry_version, project = self.signature_of(feature_service)
            inputs = inputs or derived
        ts = None
        if training_set is not None:
            ts = str(training_set)
            if "://" not in ts:
                ts = str(Path(ts).resolve())
        settings: dict[str, Any] = {}
        if normalize_framework(framework) == "sklearn":
            served, method = sklearn_signature(Path(path), method)
            outputs = outputs or served
            if method != "predict":
                settings["method"] = method
        elif method is not None:
            raise InvalidRequestError(
                f"--method chooses which method of a scikit-learn estimator (framework sklearn) "
                f"is served; a "
                f"{framework} model has no such option (its model decides what it returns)."
            )
        return self.store.register(
            name, path, framework, metrics=metrics, description=description,
            inputs=inputs, outputs=outputs, feature_service=feature_service,
            registry_version=registry_version, project=project, training_set=ts,
            pipeline_run=pipeline_run, training_snapshot=training_snapshot,
            settings=settings,
        )

    def list(self, name: str | None = None) -> list[ModelVersion]:
        return self.store.list(name)

    def get(self, name: str, version: int | str | None = None) -> ModelVersion:
        return self.store.get(name, version)

    def best(self, name: str, metric: str, direction: str | None = None) -> ModelVersion:
        return self.store.best(name, metric, direction)

    def delete(self, name: str, version: int | str | None = None) -> builtins.list[int]:
        project = self.features.project if self.features is not None else None
        authorize(Action.DEPLOY, f"{project or ''}/{name}")
        return self.store.delete(name, version)


def parse_model_ref(ref: str) -> tuple[str, str | None]:
    """``"fraud:3"`` → ("fraud", "3"); ``"fraud"`` → ("fraud", None)."""
    name, _, version = ref.partition(":")
    return name, (version or None)


def sklearn_signature(path: Path, method: str | None) -> tuple[list[TensorSig], str]:
    """The outputs the model server will report for the estimator at ``path`` called with
    ``method`` (default: ``model-settings.json``'s, else ``predict``), and that method."""
    import json

    from tureen.serving.runtimes.skl import SKLearnModel

    files = [path] if path.is_file() else sorted(
        p for p in path.iterdir() if p.suffix.lower() in (".joblib", ".pkl", ".pickle"))
    if not files:
        raise InvalidRequestError(f"no scikit-learn model file (*.joblib, *.pkl) in {path}.")
    if method is None and path.is_dir() and (path / "model-settings.json").is_file():
        method = json.loads((path / "model-settings.json").read_text()).get("method")
    method = method or "predict"
    model = SKLearnModel("registering", files[0], method=method)
    try:
        model.load()
    except InvalidRequestError as exc:
        raise InvalidRequestError(
            f"--method {method!r}: {exc} Use predict (labels), predict_proba (class "
            "probabilities), predict_log_proba or decision_function."
        ) from None
    try:
        return [TensorSig(o.name, o.datatype, tuple(o.shape)) for o in model.outputs], method
    finally:
        model.unload()
