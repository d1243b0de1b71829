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


class Batcher:
    def __init__(
        self,
        predict: Predict,
        max_batch_size: int,
        max_latency_ms: float,
        on_batch: OnBatch | None = None,
    ) -> None:
        self._predict = predict
        self._max = max_batch_size
        self._latency = max_latency_ms / 1000.0
        self._on_batch = on_batch
        self._queue: list[tuple[Any, int, asyncio.Future[Any], float]] = []
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
        if not self._queue:
            return
        batch: list[tuple[Any, int, asyncio.Future[Any], float]] = []
        rows = 0
        while self._queue and (not batch or rows + self._queue[0][1] <= self._max):
            item = self._queue.pop(0)
            batch.append(item)
            rows += item[1]
        self._rows -= rows
        self._running += 1
        task = asyncio.get_running_loop().create_task(self._run(batch, rows))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(
        self, batch: list[tuple[Any, int, asyncio.Future[Any], float]], rows: int
    ) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            try:
                payloads = [b[0] for b in batch]
                if len(batch) == 1:
                    parts = [await self._predict(payloads[0])]
                elif mergeable(payloads):
                    result = await self._predict(merge(payloads))
                    parts = split(result, [b[1] for b in batch])
                else:  # mixed kinds or shapes: one call each, still in this batch's turn
                    parts = [await self._predict(p) for p in payloads]
            except BaseException as exc:  # every waiter gets the error of its batch
                for _, _, fut, _ in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                return
            if self._on_batch is not None:
                self._on_batch(rows, loop.time() - start, [start - b[3] for b in batch])
            for (_, _, fut, _), part in zip(batch, parts, strict=True):
                if not fut.done():
                    fut.set_result(part)
        finally:
            self._running -= 1
            if self._queue:
                self._flush()
