"""``Deployments``: create, change and delete deployment specs in the registry.

Every change is one atomic read-modify-write of the registry's ``deployments`` section
(``Registry.update_extra``), so concurrent CLI calls never lose each other's changes.
Model references are checked against the model registry when a spec is written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tureen.deployments.spec import (
    Batching,
    Canary,
    DeploymentSpec,
    check_deployment_name,
)
from tureen.errors import ConflictError, InvalidRequestError, NotFoundError, suggest
from tureen.inference_log.record import LogMode
from tureen.models import ModelRegistry
from tureen.serving.context import Action, authorize, permitted
from tureen.store import FeatureStore

SECTION = "deployments"


class Deployments:
    def __init__(self, features: FeatureStore, models: ModelRegistry) -> None:
        self.features = features
        self.models = models

    @classmethod
    def for_repo(cls, repo_path: str | Path = ".") -> Deployments:
        models = ModelRegistry.for_repo(repo_path)
        assert models.features is not None
        return cls(models.features, models)

    # ---- reading ----------------------------------------------------------------------------
    def _all(self, fresh: bool = True) -> dict[str, DeploymentSpec]:
        raw = self.features.registry.snapshot(fresh=fresh).extra.get(SECTION) or {}
        return {n: DeploymentSpec.from_dict(d) for n, d in raw.items()}

    def specs(self) -> dict[str, DeploymentSpec]:
        """Every spec, unchecked: for the serving runtime itself (not a caller's request)."""
        return self._all()

    def list(self) -> list[DeploymentSpec]:
        """The deployments the caller may manage (all of them in process)."""
        p = self.features.project
        return sorted((s for s in self._all().values()
                       if permitted(Action.DEPLOY, f"{p}/{s.name}")), key=lambda s: s.name)

    def get(self, name: str) -> DeploymentSpec:
        p = self.features.project
        authorize(Action.DEPLOY, f"{p}/{name}")
        specs = {n: s for n, s in self._all().items() if permitted(Action.DEPLOY, f"{p}/{n}")}
        if name not in specs:
            raise NotFoundError(
                f"no deployment named {name!r}.{suggest(name, specs)} Deployments: "
                f"{sorted(specs) or 'none'}; create one with `tureen deploy create`."
            )
        return specs[name]

    # ---- writing ----------------------------------------------------------------------------
    def _change(self, name: str, fn: Callable[[DeploymentSpec | None], DeploymentSpec | None],
                summary: str) -> DeploymentSpec | None:
        authorize(Action.DEPLOY, f"{self.features.project}/{name}")
        result: dict[str, DeploymentSpec | None] = {}

        def edit(section: Any) -> Any:
            current = dict(section or {})
            spec = DeploymentSpec.from_dict(current[name]) if name in current else None
            new = fn(spec)
            if new is None:
                current.pop(name, None)
            else:
                current[name] = new.to_dict()
            result["spec"] = new
            return current

        self.features.registry.update_extra(SECTION, edit, summary)
        return result.get("spec")

    def _resolve_version(self, model: str, version: int | str | None) -> int:
        return self.models.get(model, version).version

    def create(
        self,
        name: str,
        model: str,
        version: int | str | None = None,
        *,
        feature_service: str | None = None,
        transformer: str | None = None,
        workers: int = 1,
        logging: LogMode | str = LogMode.NONE,
        log_sink: str | None = None,
        batching: Batching | str | None = None,
        idle_unload_seconds: float | None = None,
    ) -> DeploymentSpec:
        check_deployment_name(name)
        resolved = self._resolve_version(model, version)
        mv = self.models.get(model, resolved)
        fs_name = feature_service or mv.feature_service
        if fs_name is not None:
            self.features.snapshot().feature_service(fs_name)  # NotFoundError with suggestions
        if transformer is not None and not Path(transformer).is_file():
            raise NotFoundError(f"transformer file {transformer} does not exist.")
        if workers < 1:
            raise InvalidRequestError("--workers must be at least 1.")
        if idle_unload_seconds is not None and idle_unload_seconds <= 0:
            raise InvalidRequestError("--idle-unload must be a positive number of seconds.")
        spec = DeploymentSpec(
            name=name, model=model, version=resolved, feature_service=fs_name,
            transformer=str(Path(transformer).resolve()) if transformer else None,
            workers=workers, logging=LogMode.parse(logging), log_sink=log_sink,
            batching=Batching.parse(batching) if isinstance(batching, str) else batching,
            idle_unload_seconds=idle_unload_seconds,
        )

        def fn(old: DeploymentSpec | None) -> DeploymentSpec:
            if old is not None:
                raise ConflictError(
                    f"deployment {name!r} already exists; change it with `tureen deploy update` "
                    "or delete it first."
                )
            return spec

        self._change(name, fn, f"created deployment {name} ({model}:{resolved})")
        return spec

    def set_state(self, name: str, state: str) -> DeploymentSpec:
        self.get(name)
        spec = self._change(name, lambda s: _need(s, name).touched(state=state),
                            f"{state} deployment {name}")
        assert spec is not None
        return spec

    def update(
        self,
        name: str,
        version: int | str | None = None,
        *,
        rollback: bool = False,
        canary_version: int | str | None = None,
        canary_percent: float | None = None,
        promote: bool = False,
        clear_canary: bool = False,
    ) -> DeploymentSpec:
        """Change the served version (or roll back), or set / promote / drop a canary."""
        current = self.get(name)
        if rollback and current.history:
            self._check_rollback(current)
        new_version = None if version is None else self._resolve_version(current.model, version)
        canary_v = (None if canary_version is None
                    else self._resolve_version(current.model, canary_version))

        def fn(old: DeploymentSpec | None) -> DeploymentSpec:
            s = _need(old, name)
            if rollback:
                if not s.history:
                    raise InvalidRequestError(
                        f"deployment {name!r} has no previous version to roll back to."
                    )
                return s.touched(version=s.history[-1], history=s.history[:-1], canary=None)
            if promote:
                if s.canary is None:
                    raise InvalidRequestError(f"deployment {name!r} has no canary to promote.")
                return s.touched(version=s.canary.version, canary=None,
                                 history=(*s.history, s.version)[-20:])
            if clear_canary:
                return s.touched(canary=None)
            if canary_v is not None:
                pct = 10.0 if canary_percent is None else float(canary_percent)
                if canary_v == s.version:
                    raise InvalidRequestError(
                        f"version {canary_v} is already the main version of {name!r}."
                    )
                return s.touched(canary=Canary(canary_v, pct))
            if canary_percent is not None:
                if s.canary is None:
                    raise InvalidRequestError(
                        f"deployment {name!r} has no canary; pass --canary-version too."
                    )
                return s.touched(canary=Canary(s.canary.version, float(canary_percent)))
            if new_version is None:
                raise InvalidRequestError(
                    "nothing to update: pass --version V, --rollback, --canary-version V "
                    "[--canary-percent P], --promote or --clear-canary."
                )
            if new_version == s.version:
                return s
            return s.touched(version=new_version, history=(*s.history, s.version)[-20:],
                             canary=None if s.canary and s.canary.version == new_version
                             else s.canary)

        spec = self._change(name, fn, f"updated deployment {name}")
        assert spec is not None
        return spec

    def _check_rollback(self, spec: DeploymentSpec) -> None:
        """Refuse a rollback to a model version that was deleted since it was served."""
        target = spec.history[-1]
        try:
            self.models.get(spec.model, target)
        except NotFoundError:
            left = [mv.version for mv in self.models.list(spec.model)]
            raise InvalidRequestError(
                f"cannot roll back deployment {spec.name!r} to {spec.model}:{target}: version "
                f"{target} was deleted from the model registry (versions left: {left or 'none'}"
                f"). It keeps serving {spec.model}:{spec.version}; choose a version with "
                f"`tureen deploy update {spec.name} --version V`."
            ) from None

    def delete(self, name: str) -> None:
        self.get(name)
        self._change(name, lambda s: None, f"deleted deployment {name}")


def _need(spec: DeploymentSpec | None, name: str) -> DeploymentSpec:
    if spec is None:
        raise NotFoundError(f"deployment {name!r} was deleted meanwhile.")
    return spec
