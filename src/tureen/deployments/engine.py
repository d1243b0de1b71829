"""One loaded version of a deployment: its model, or its feature transformer and model. The
exact model input of each request (for the inference log) comes from the transformer's
``predict_with_input``."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tureen.deployments.spec import DeploymentSpec
from tureen.models import ModelRegistry
from tureen.serving.model import Headers, Model
from tureen.store import FeatureStore

if TYPE_CHECKING:
    from tureen.transformer.model import FeatureTransformer

class Engine:
    """One loaded version: its model (or transformer + model) and in-flight requests."""

    def __init__(self, version: int, model: Model, transformer: FeatureTransformer | None,
                 entity_fn: Callable[[Any], Mapping[str, Sequence[Any]]] | None,
                 entity_keys: Sequence[str] | None = None,
                 feature_types: Mapping[str, Any] | None = None) -> None:
        self.version = version
        self.entity_keys = entity_keys
        #: feature name -> numpy dtype of its schema (the inference log keeps them)
        self.feature_types = feature_types
        self.model = model
        self.transformer = transformer
        self.entity_fn = entity_fn
        self.inflight = 0
        self.retired = False
        stages = [model.preprocess, model.predict, model.postprocess]
        self.sync = not any(inspect.iscoroutinefunction(s) for s in stages)

    def _bare_sync(self, payload: Any, headers: Headers) -> tuple[Any, Any]:
        m = self.model
        x = m.preprocess(payload, headers)
        return x, m.postprocess(m.predict(x, headers), headers)

    async def call(self, payload: Any, headers: Headers) -> tuple[Any, Any]:
        """(model input as fed, result)."""
        if self.transformer is not None:
            result, fed = await self.transformer.predict_with_input(payload, headers)
            return fed, result
        if self.sync:
            return await asyncio.to_thread(self._bare_sync, payload, headers)
        m = self.model
        fed = await _stage(m.preprocess, payload, headers)
        out = await _stage(m.predict, fed, headers)
        return fed, await _stage(m.postprocess, out, headers)

    def unload(self) -> None:
        if self.transformer is not None:
            self.transformer.unload()
        self.model.unload()
        self.model.ready = False


async def _stage(fn: Callable[..., Any], payload: Any, headers: Headers) -> Any:
    if inspect.iscoroutinefunction(fn):
        return await fn(payload, headers)
    return await asyncio.to_thread(fn, payload, headers)


def build_engine(version: int, spec: DeploymentSpec, store: FeatureStore,
                 models: ModelRegistry, cache_dir: Path) -> Engine:
    """Load ``version`` of the deployment's model (with its transformer, if any)."""
    from tureen.serving.runtimes import apply_declared, model_from_dir, read_settings

    d = models.store.fetch(spec.model, version, cache_dir)
    if spec.feature_service is None:
        model = model_from_dir(spec.model, str(version), d, read_settings(d.parent, d))
        model.load()
        apply_declared(model)
        return Engine(version, model, None, None)
    from tureen.transformer import build_transformer, load_transformer_config
    from tureen.transformer.request_rows import extract

    data: dict[str, Any] = {}
    if spec.transformer and spec.transformer.endswith((".yaml", ".yml")):
        data = load_transformer_config(spec.transformer).model_dump(exclude_none=True)
    elif spec.transformer:
        data["script"] = {"path": spec.transformer}
    data.update(name=spec.name, feature_service=spec.feature_service)
    data["predictor"] = {**dict(data.get("predictor") or {}), "model": spec.model,
                         "model_dir": str(d)}
    data["predictor"].pop("host", None)
    data.setdefault("features", {"source": "local"})
    t = build_transformer(load_transformer_config(data), store=store)
    t.load()
    pred = t.predictor
    assert pred is not None and t.source is not None
    inner: Model = getattr(pred, "model", None) or t
    needed = t.source.needed
    where = dict(t.config.entity_keys)

    def entities(payload: Any) -> Mapping[str, Sequence[Any]]:
        # the join keys and the request-time fields (e.g. amount) the features needed:
        # with them the offline store can recompute exactly what was served (logs skew)
        cols, _ = extract(payload, needed, where)
        return cols

    from tureen.feature_refs import resolve

    keys = tuple(resolve(store.snapshot(), spec.feature_service).join_keys)
    types = {f.name: f.dtype.numpy for f in t.source.fields if f.dtype.element is None}
    return Engine(version, inner, t, entities, keys, types)
