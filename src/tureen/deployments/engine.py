"""One loaded version of a deployment: its model, or its feature transformer and model, and
how the exact model input of each request is captured for the inference log."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tureen.deployments.spec import DeploymentSpec
from tureen.models import ModelRegistry
from tureen.serving.model import Headers, Model
from tureen.store import FeatureStore

#: the model input the transformer built for the current request (see _capturing)
_captured: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar(
    "tureen_deployment_capture", default=None)


class Engine:
    """One loaded version: its model (or transformer + model) and in-flight requests."""

    def __init__(self, version: int, model: Model, transformer: Model | None,
                 entity_fn: Callable[[Any], Mapping[str, Sequence[Any]]] | None,
                 entity_keys: Sequence[str] | None = None) -> None:
        self.version = version
        self.entity_keys = entity_keys
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
            holder: list[Any] = []
            token = _captured.set(holder)
            try:
                result = await self.transformer.predict(payload, headers)
            finally:
                _captured.reset(token)
            if isinstance(result, _WithInput):  # this request was part of a merged batch
                return result.fed, result.result
            return (holder[-1] if holder else None), result
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


@dataclass
class _WithInput:
    """A merged-batch result for one request, with that request's slice of the model input."""

    result: Any
    fed: Any


def _split_input(x: Any, counts: list[int]) -> list[Any]:
    from tureen.transformer.predictor import ModelInput

    bounds = np.cumsum([0, *counts]).tolist()
    spans = list(itertools.pairwise(bounds))
    if x.matrix is not None:
        return [ModelInput(matrix=x.matrix[a:b], names=x.names) for a, b in spans]
    return [ModelInput(columns=[(n, c[a:b]) for n, c in (x.columns or [])], names=x.names)
            for a, b in spans]


def _logged(transformer: Any) -> Any:
    """The fused transformer merges concurrent requests into one model call. To log each
    request's own features, the merged model input is split back by rows and travels with
    each request's result (unwrapped in ``_Engine.call``)."""
    from tureen.transformer.fused import FusedFeatureTransformer

    if type(transformer) is not FusedFeatureTransformer:
        return transformer

    class _LoggedFused(FusedFeatureTransformer):
        def _compute(self, batch: list[Any]) -> list[Any]:
            holder: list[Any] = []
            token = _captured.set(holder)
            try:
                out = super()._compute(batch)
            finally:
                _captured.reset(token)
            counts = [item.rows for item in batch]
            if len(holder) == 1 and len(batch) > 1:  # one merged call
                fed = _split_input(holder[0], counts)
            elif len(holder) == len(batch):  # one call per request
                fed = holder
            else:  # some requests failed before the model: no input to pair reliably
                fed = [None] * len(batch)
            return [o if isinstance(o, BaseException) else _WithInput(o, f)
                    for o, f in zip(out, fed, strict=True)]

    return _LoggedFused(transformer.config, store=transformer.store,
                        resolve_model=transformer.resolve_model)


def _capturing(predictor: Any) -> Any:
    """Wrap a transformer's in-process predictor so the model input can be logged."""
    from tureen.transformer.predictor import InProcessPredictor, ModelInput

    class _CapturingPredictor(InProcessPredictor):
        def call_sync(self, x: ModelInput, headers: Headers) -> Any:
            holder = _captured.get()
            if holder is not None:
                holder.append(x)
            return super().call_sync(x, headers)

        async def call(self, x: ModelInput, headers: Headers) -> Any:
            holder = _captured.get()
            if holder is not None:
                holder.append(x)
            return await super().call(x, headers)

    return _CapturingPredictor(predictor.model)


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
    t = _logged(build_transformer(load_transformer_config(data), store=store))
    t.load()
    pred = t.predictor
    assert pred is not None and t.source is not None
    inner: Model = getattr(pred, "model", None) or t
    if hasattr(pred, "model"):  # in process: capture the exact model input for the log
        t.predictor = _capturing(pred)
    needed = t.source.needed
    where = dict(t.config.entity_keys)

    def entities(payload: Any) -> Mapping[str, Sequence[Any]]:
        # the join keys and the request-time fields (e.g. amount) the features needed:
        # with them the offline store can recompute exactly what was served (logs skew)
        cols, _ = extract(payload, needed, where)
        return cols

    from tureen.feature_refs import resolve

    keys = tuple(resolve(store.snapshot(), spec.feature_service).join_keys)
    return Engine(version, inner, t, entities, keys)
