"""Adaptive batching: concurrent requests to one model share one ``predict`` call.

While the model is idle a request runs at once (no added latency at low load); while a batch
runs, arrivals queue and go together as soon as it finishes, when ``max_batch_size`` rows are
waiting, or after ``max_latency_ms`` — whichever comes first.

A batch merges the preprocessed payloads — numpy arrays, ``InferRequest``s, or v1 bodies
``{"instances": [...]}`` — along the first axis, and splits the result back by row counts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from tureen.errors import InvalidRequestError
from tureen.serving.inference import InferInput, InferOutput, InferRequest, InferResponse

Predict = Callable[[Any], Awaitable[Any]]
#: after a batch ran: (rows, seconds its predict took, how long each request waited for it)
OnBatch = Callable[[int, float, list[float]], None]


def rows_of(payload: Any) -> int:
    if isinstance(payload, np.ndarray):
        return int(payload.shape[0]) if payload.ndim else 1
    if isinstance(payload, pd.DataFrame):
        return len(payload)
    if isinstance(payload, InferRequest):
        return int(payload.inputs[0].shape[0]) if payload.inputs and payload.inputs[0].shape else 1
    if isinstance(payload, dict) and isinstance(payload.get("instances"), list):
        return len(payload["instances"])
    raise InvalidRequestError(
        "this model batches requests, so its preprocess must return an array, an "
        "InferRequest or a v1 body with 'instances'; got " + type(payload).__name__ + "."
    )


def mergeable(payloads: list[Any]) -> bool:
    """True when the payloads are of one kind and shape, so one predict call can take them."""
    first = payloads[0]
    kind = type(first)
    if not all(type(p) is kind for p in payloads):
        return False
    if isinstance(first, np.ndarray):
        return all(p.ndim == first.ndim and p.shape[1:] == first.shape[1:]
                   and p.dtype == first.dtype for p in payloads)
    if isinstance(first, pd.DataFrame):
        cols = list(first.columns)
        return all(list(p.columns) == cols for p in payloads)
    if isinstance(first, InferRequest):
        sig = [(i.name, i.datatype, i.shape[1:]) for i in first.inputs]
        return all([(i.name, i.datatype, i.shape[1:]) for i in p.inputs] == sig
                   and p.parameters == first.parameters for p in payloads)
    return isinstance(first, dict)


def merge(payloads: list[Any]) -> Any:
    first = payloads[0]
    if isinstance(first, np.ndarray):
        return np.concatenate(payloads, axis=0)
    if isinstance(first, pd.DataFrame):
        return pd.concat(payloads, ignore_index=True)
    if isinstance(first, InferRequest):
        inputs = []
        for idx, inp in enumerate(first.inputs):
            parts = [p.inputs[idx].data for p in payloads]
            data = np.concatenate(parts, axis=0)
            shape = list(data.shape)
            inputs.append(InferInput(inp.name, inp.datatype, shape, data, inp.parameters))
        return replace(first, inputs=inputs, id=None)
    return {**first, "instances": [row for p in payloads for row in p["instances"]]}


def split(result: Any, counts: list[int]) -> list[Any]:
    bounds = np.cumsum([0, *counts])
    pieces = list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))
    if isinstance(result, np.ndarray):
        return [result[a:b] for a, b in pieces]
    if isinstance(result, pd.DataFrame):
        return [result.iloc[a:b].reset_index(drop=True) for a, b in pieces]
    if isinstance(result, dict) and result and all(
        isinstance(v, np.ndarray) for v in result.values()
    ):
        return [{k: v[a:b] for k, v in result.items()} for a, b in pieces]
    if isinstance(result, InferResponse):
        return [
            replace(result, outputs=[
                InferOutput(o.name, o.datatype, [b - a, *o.shape[1:]], o.data[a:b], o.parameters)
                for o in result.outputs
            ])
            for a, b in pieces
        ]
    if isinstance(result, dict) and isinstance(result.get("predictions"), list):
        preds = result["predictions"]
        return [{**result, "predictions": preds[a:b]} for a, b in pieces]
    if isinstance(result, list):
        return [result[a:b] for a, b in pieces]
    raise InvalidRequestError(
        "a batching model's predict must return an array, a list, an InferResponse or "
        "{'predictions': [...]} with one row per input row; got " + type(result).__name__ + "."
    )


#: the batch's sync predict when the next batch may run on the event loop now, else None
RunNow = Callable[[], Callable[[Any], Any] | None]
Batch = list[tuple[Any, int, asyncio.Future[Any], float]]


def plan(batch: Batch) -> tuple[list[Any], Callable[[list[Any]], list[Any]]]:
    """The predict calls a batch makes, and how their results become one part per request:
    one call for one request or mergeable payloads (split by rows), else one call each."""
    payloads = [b[0] for b in batch]
    if len(batch) > 1 and mergeable(payloads):
        counts = [b[1] for b in batch]
        return [merge(payloads)], lambda results: split(results[0], counts)
    return payloads, list


def fail(batch: Batch, exc: BaseException) -> None:
    """Every waiter of ``batch`` gets the error of its batch."""
    for _, _, fut, _ in batch:
        if not fut.done():
            fut.set_exception(exc)


class Batcher:
    """``now``: when it returns a sync predict, a batch runs right where it is flushed
    (no task, no loop round trip); otherwise in a task awaiting ``predict``."""

    def __init__(
        self,
        predict: Predict,
        max_batch_size: int,
        max_latency_ms: float,
        on_batch: OnBatch | None = None,
        now: RunNow | None = None,
    ) -> None:
        self._predict = predict
        self._now = now
        self._max = max_batch_size
        self._latency = max_latency_ms / 1000.0
        self._on_batch = on_batch
        self._queue: Batch = []
        self._rows = 0
        self._running = 0
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, payload: Any) -> Any:
        rows = rows_of(payload)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.append((payload, rows, fut, loop.time()))
        self._rows += rows
        if self._running == 0 and len(self._queue) == 1:
            loop.call_soon(self._flush)  # gather whatever arrives in this loop iteration
        elif self._rows >= self._max:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self._latency, self._flush)
        return await fut

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._queue:
            batch: Batch = []
            rows = 0
            while self._queue and (not batch or rows + self._queue[0][1] <= self._max):
                item = self._queue.pop(0)
                batch.append(item)
                rows += item[1]
            self._rows -= rows
            predict = self._now() if self._now is not None else None
            if predict is None:
                self._running += 1
                task = asyncio.get_running_loop().create_task(self._run(batch, rows))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                return
            self._run_now(batch, rows, predict)

    def _run_now(self, batch: Batch, rows: int, predict: Callable[[Any], Any]) -> None:
        """A batch whose predict runs on the loop: done before this returns."""
        start = asyncio.get_running_loop().time()
        try:
            calls, parts_of = plan(batch)
            parts = parts_of([predict(p) for p in calls])
        except BaseException as exc:
            fail(batch, exc)
            if not isinstance(exc, Exception):
                raise
            return
        self._settle(batch, rows, start, parts)

    async def _run(self, batch: Batch, rows: int) -> None:
        start = asyncio.get_running_loop().time()
        try:
            try:
                calls, parts_of = plan(batch)
                parts = parts_of([await self._predict(p) for p in calls])
            except BaseException as exc:
                fail(batch, exc)
                if not isinstance(exc, Exception):
                    raise
                return
            self._settle(batch, rows, start, parts)
        finally:
            self._running -= 1
            if self._queue:
                self._flush()

    def _settle(self, batch: Batch, rows: int, start: float, parts: list[Any]) -> None:
        if self._on_batch is not None:
            took = asyncio.get_running_loop().time() - start
            self._on_batch(rows, took, [start - b[3] for b in batch])
        for (_, _, fut, _), part in zip(batch, parts, strict=True):
            if not fut.done():
                fut.set_result(part)
