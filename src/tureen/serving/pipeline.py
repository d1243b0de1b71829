"""How the data plane runs one model version: its stages (sync or async, inline or in the
model's own threads), its adaptive batcher, whether it is decoupled. Built once per loaded
version (``build_pipeline``)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from tureen.serving.batching import Batcher, OnBatch
from tureen.serving.inline import InlineBudget
from tureen.serving.model import Model
from tureen.serving.model_config import is_decoupled
from tureen.serving.runtimes.base import ArrayModel

Stage = Callable[..., Any]
RunBlocking = Callable[..., Awaitable[Any]]


def _overrides(model: Model, name: str) -> bool:
    return getattr(type(model), name) is not getattr(Model, name)


def _is_async(fn: Stage) -> bool:
    return inspect.iscoroutinefunction(fn)


@dataclass
class Pipeline:
    """How to run one model's stages; built once per loaded model version."""

    pre: Stage | None
    pre_async: bool
    predict: Stage
    predict_async: bool
    post: Stage | None
    post_async: bool
    all_sync: bool
    batcher: Batcher | None
    #: the batcher takes decoded arrays (built-in runtimes), not raw payloads
    batch_arrays: bool
    #: this model's own threads: a model that blocks them all cannot starve the others
    executor: ThreadPoolExecutor
    #: whether its sync work is short enough to run on the event loop
    budget: InlineBudget
    #: predict yields several responses per request (see serving.streaming)
    decoupled: bool = False


def build_pipeline(model: Model, threads: int, run_blocking: RunBlocking,
                   on_batch: OnBatch) -> Pipeline:
    """``model``'s pipeline; ``on_batch`` records each batch a batching model ran."""
    executor = ThreadPoolExecutor(max_workers=threads,
                                  thread_name_prefix=f"tureen-{model.name}-{model.version}")
    pre = model.preprocess if _overrides(model, "preprocess") else None
    post = model.postprocess if _overrides(model, "postprocess") else None
    pre_a = pre is not None and _is_async(pre)
    post_a = post is not None and _is_async(post)
    pred_a = _is_async(model.predict)
    batcher = None
    arrays = isinstance(model, ArrayModel) and type(model).predict is ArrayModel.predict
    budget = InlineBudget(model.inline_budget_ms)
    if model.max_batch_size > 1:
        run_predict: Callable[[Any], Awaitable[Any]]
        now_predict: Callable[[Any], Any] | None = None
        if arrays and isinstance(model, ArrayModel):  # (arrays implies it; for mypy)
            now_predict = partial(budget.timed, model.predict_array)

            async def run_predict(x: Any, _m: Any = model) -> Any:
                if budget.inline():
                    return budget.timed(_m.predict_array, x)
                return await run_blocking(budget.timed, _m.predict_array, x,
                                          executor=executor)
        else:
            if not pred_a:
                def now_predict(payload: Any, _m: Model = model) -> Any:
                    return budget.timed(_m.predict, payload, {})

            async def run_predict(payload: Any, _m: Model = model, _a: bool = pred_a) -> Any:
                if _a:
                    return await _m.predict(payload, {})
                if budget.inline():
                    return budget.timed(_m.predict, payload, {})
                return await run_blocking(budget.timed, _m.predict, payload, {},
                                          executor=executor)

        def now(_p: Callable[[Any], Any] | None = now_predict) -> Callable[[Any], Any] | None:
            return _p if _p is not None and budget.inline() else None

        batcher = Batcher(run_predict, model.max_batch_size, model.max_latency_ms, on_batch,
                          now)
    return Pipeline(
        pre, pre_a, model.predict, pred_a, post, post_a,
        not (pre_a or pred_a or post_a) and batcher is None, batcher,
        arrays and batcher is not None, executor, budget, is_decoupled(model),
    )
