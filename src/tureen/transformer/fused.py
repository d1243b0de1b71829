"""``FusedFeatureTransformer``: features from the in-process store, an in-process sync model,
no network hop.

The chain is CPU work plus a local SQLite point read, so a thread-pool hop costs more than
the work and the GIL serializes it anyway: a call runs inline on the event loop while the
recent average (EWMA) of such calls stays under ``inline_budget_ms``, and in a worker thread
otherwise (``inline_budget_ms: 0`` always offloads).

Requests that arrive together (parsed in the same event-loop iteration, or while a batch runs
in a worker thread) share one feature read and one model call, up to ``max_batch_rows``
rows: at one connection nothing waits, at sixteen the model's fixed per-call cost is paid
once per batch. If a merged batch fails (say, one entity is rejected), its requests are
re-run one by one so each gets its own answer or error. Scripts disable merging.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from tureen.serving.batching import split
from tureen.serving.inline import InlineBudget
from tureen.serving.model import Headers
from tureen.transformer.features import Columns, LocalFeatures
from tureen.transformer.model import FeatureTransformer
from tureen.transformer.predictor import InProcessPredictor, ModelInput
from tureen.transformer.request_rows import request_columns


@dataclass
class _Pending:
    keys: Columns
    rows: int
    #: resolves to (result, this request's model input or None when not asked for)
    future: asyncio.Future[tuple[Any, ModelInput | None]]
    with_input: bool


class FusedFeatureTransformer(FeatureTransformer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._budget = InlineBudget(self.config.inline_budget_ms)
        self._queue: list[_Pending] = []
        self._scheduled = False
        self._running = False
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- timing ---------------------------------------------------------------------------
    @property
    def model_calls(self) -> int:
        """Feature reads + model calls made so far (merged requests share one)."""
        return self._budget.calls

    def _inline(self) -> bool:
        return self._budget.inline()

    def _timed(self, fn: Any, *args: Any) -> Any:
        return self._budget.timed(fn, *args)

    # ---- entry points -----------------------------------------------------------------------
    async def predict(self, payload: Any, headers: Headers | None = None) -> Any:
        result, _ = await self._serve(payload, headers, with_input=False)
        return result

    async def predict_with_input(
        self, payload: Any, headers: Headers | None = None
    ) -> tuple[Any, ModelInput | None]:
        """As ``FeatureTransformer.predict_with_input``; in a merged batch the model input is
        this request's own rows of the batch's input."""
        return await self._serve(payload, headers, with_input=True)

    async def _serve(
        self, payload: Any, headers: Headers | None, with_input: bool
    ) -> tuple[Any, ModelInput | None]:
        if self.script is not None or self.config.max_batch_rows <= 1:
            if self._inline():
                return self._timed(self._predict_one, payload, headers)  # type: ignore[no-any-return]
            return await asyncio.to_thread(
                self._timed, self._predict_one, payload, headers)
        keys, rows = self._keys(payload)  # request errors surface here, for this request only
        loop = asyncio.get_running_loop()
        pending = _Pending(keys, rows, loop.create_future(), with_input)
        self._queue.append(pending)
        if not self._running and not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)  # gather what arrives in this loop iteration
        return await pending.future

    # ---- batching ---------------------------------------------------------------------------
    def _flush(self) -> None:
        self._scheduled = False
        if self._running or not self._queue:
            return
        batch: list[_Pending] = []
        rows = 0
        limit = self.config.max_batch_rows
        while self._queue and (not batch or rows + self._queue[0].rows <= limit):
            item = self._queue.pop(0)
            batch.append(item)
            rows += item.rows
        if self._inline():
            self._deliver(batch, self._timed(self._compute, batch))
            if self._queue:
                self._flush()
            return
        self._running = True
        task = asyncio.get_running_loop().create_task(self._offload(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _offload(self, batch: list[_Pending]) -> None:
        try:
            outcomes = await asyncio.to_thread(self._timed, self._compute, batch)
            self._deliver(batch, outcomes)
        except BaseException as exc:  # cancelled or a bug: nobody may wait forever
            self._deliver(batch, [exc] * len(batch))
            if not isinstance(exc, Exception):
                raise
        finally:
            self._running = False
            if self._queue:
                self._flush()

    @staticmethod
    def _deliver(batch: list[_Pending], outcomes: list[Any]) -> None:
        for item, outcome in zip(batch, outcomes, strict=True):
            if item.future.done():
                continue
            if isinstance(outcome, BaseException):
                item.future.set_exception(outcome)
            else:
                item.future.set_result(outcome)

    def _compute(self, batch: list[_Pending]) -> list[Any]:
        """Per request, (result, model input or None) or the exception; merged when there
        are several."""
        if len(batch) > 1:
            names = list(batch[0].keys)
            merged = {k: [v for item in batch for v in item.keys[k]] for k in names}
            counts = [item.rows for item in batch]
            try:
                result, x = self._run(merged)
            except Exception:  # isolate: one bad entity must not fail its neighbours
                pass
            else:
                fed: list[ModelInput | None] = (
                    list(x.split(counts)) if any(item.with_input for item in batch)
                    else [None] * len(batch))
                return list(zip(split(result, counts), fed, strict=True))
        out: list[Any] = []
        for item in batch:
            try:
                out.append(self._run(item.keys))
            except Exception as exc:
                out.append(exc)
        return out

    def _run(self, keys: Columns) -> tuple[Any, ModelInput]:
        source, pred = self.source, self.predictor
        assert isinstance(source, LocalFeatures) and isinstance(pred, InProcessPredictor)
        x, _ = self._model_input(source.fetch_sync(keys), keys)
        return self._result(pred.call_sync(x, {})), x

    # ---- one request, with scripts ----------------------------------------------------------
    def predict_sync(self, payload: Any, headers: Headers | None = None) -> Any:
        return self._predict_one(payload, headers)[0]

    def _predict_one(self, payload: Any, headers: Headers | None) -> tuple[Any, ModelInput]:
        source, pred = self.source, self.predictor
        assert isinstance(source, LocalFeatures) and isinstance(pred, InProcessPredictor)
        script = self.script
        if script is not None and script.position == "before_features" and script.pre:
            cols, _ = request_columns(payload)
            keys, _ = self._keys(script.pre(cols), scripted=True)
        else:
            keys, _ = self._keys(payload)
        x, names = self._model_input(source.fetch_sync(keys), keys)
        if script is not None and script.position == "after_features" and script.pre:
            x = self._after_features_input(script.pre(self._frame(x, names)), names)
        result = pred.call_sync(x, headers or {})
        if script is not None and script.post is not None:
            return script.post(self._predictions(result)), x
        return self._result(result), x
