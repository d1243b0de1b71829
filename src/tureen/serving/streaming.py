"""Streaming inference: decoupled models and one client stream of many requests.

A *decoupled* model answers one request with any number of responses: its ``predict`` is a
generator (``def`` or ``async def`` with ``yield``). Sync generators advance in the model's
threads, one item at a time, so a model that sleeps between responses never blocks the loop.

``StreamSession`` serves one bidirectional stream (gRPC ``ModelStreamInfer``): requests run
concurrently (at most ``max_inflight`` at a time; ``submit`` waits beyond that, which is the
transport's backpressure), each request's responses go out in the order the model produced
them, and requests of one sequence (the same non-zero ``sequence_id``) run one after the
other in the order they arrived. A failed request becomes an in-stream error naming its id;
the stream goes on.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from tureen.errors import InvalidRequestError, TureenError
from tureen.serving.context import request_id
from tureen.serving.inference import InferRequest, InferResponse

if TYPE_CHECKING:
    from tureen.serving.dataplane import DataPlane
    from tureen.serving.model import Headers, Model

log = logging.getLogger(__name__)
_END = object()

#: (response, None) or (None, error message), and the request it answers
Emit = Callable[[InferResponse | None, str | None, InferRequest], Awaitable[None]]


def check_sequence(request: InferRequest) -> None:
    """Triton's sequence parameters: start/end need a sequence id (non-zero, non-empty)."""
    params = request.parameters
    if not params:
        return
    sid = params.get("sequence_id")
    if sid is not None and (isinstance(sid, bool) or not isinstance(sid, int | str)):
        raise InvalidRequestError(
            f"sequence_id {sid!r} must be an unsigned integer or a string.")
    if isinstance(sid, int) and sid < 0:
        raise InvalidRequestError(f"sequence_id {sid} must not be negative.")
    for flag in ("sequence_start", "sequence_end"):
        value = params.get(flag)
        if value is not None and not isinstance(value, bool):
            raise InvalidRequestError(f"{flag} must be true or false, not {value!r}.")
        if value and sid in (None, 0, ""):
            raise InvalidRequestError(
                f"{flag} is set but the request has no sequence_id; give every request of a "
                "sequence the same non-zero sequence_id.")


def sequence_key(request: InferRequest) -> tuple[str, str | int] | None:
    sid = request.parameters.get("sequence_id") if request.parameters else None
    if sid in (None, 0, ""):
        return None
    assert isinstance(sid, int | str)
    return request.model_name, sid


async def decoupled_results(
    dp: DataPlane, model: Model, payload: Any, headers: Headers,
    pre: Callable[..., Any] | None, post: Callable[..., Any] | None,
) -> AsyncIterator[Any]:
    """Each result a decoupled model yields for one request, through pre- and postprocess."""
    executor = dp.executor_of(model)

    async def stage(fn: Callable[..., Any], value: Any) -> Any:
        if inspect.iscoroutinefunction(fn):
            return await fn(value, headers)
        return await dp.run_blocking(fn, value, headers, executor=executor)

    if pre is not None:
        payload = await stage(pre, payload)
    produced = model.predict(payload, headers)
    if inspect.isasyncgen(produced):
        try:
            async for item in produced:
                yield item if post is None else await stage(post, item)
        finally:
            await produced.aclose()
        return
    if not inspect.isgenerator(produced):
        raise TypeError(f"model {model.name!r} is decoupled but predict returned "
                        f"{type(produced).__name__}, not a generator")
    try:
        while True:
            item = await dp.run_blocking(next, produced, _END, executor=executor)
            if item is _END:
                return
            yield item if post is None else await stage(post, item)
    finally:
        await dp.run_blocking(produced.close, executor=executor)


class StreamSession:
    def __init__(self, dp: DataPlane, emit: Emit, max_inflight: int = 64,
                 protocol: str = "grpc-stream") -> None:
        self.dp = dp
        self.emit = emit
        self.protocol = protocol
        self._slots = asyncio.Semaphore(max_inflight)
        self._tasks: set[asyncio.Task[None]] = set()
        #: the last request of each running sequence; the next one waits for it
        self._sequences: dict[tuple[str, str | int], asyncio.Task[None]] = {}

    async def submit(self, request: InferRequest) -> None:
        """Start ``request``; waits while ``max_inflight`` requests are running."""
        await self._slots.acquire()
        key = sequence_key(request)
        before = self._sequences.get(key) if key is not None else None
        task = asyncio.get_running_loop().create_task(self._serve(request, before))
        self._tasks.add(task)
        task.add_done_callback(self._done)
        if key is not None:
            self._sequences[key] = task
            task.add_done_callback(functools.partial(self._forget, key))

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    def _forget(self, key: tuple[str, str | int], task: asyncio.Task[None]) -> None:
        if self._sequences.get(key) is task:
            del self._sequences[key]

    async def _serve(self, request: InferRequest, before: asyncio.Task[None] | None) -> None:
        if before is not None:
            await asyncio.wait({before})  # its outcome is its own; only the order matters
        try:
            async for response in self.dp.infer_stream(request, self.protocol):
                await self.emit(response, None, request)
        except TureenError as exc:
            await self.emit(None, str(exc), request)
        except Exception:
            log.exception("internal error in a stream request (request id %s)",
                          request_id.get())
            await self.emit(None, "internal server error; the server log has the details "
                            f"under request id {request_id.get()}.", request)

    async def finish(self) -> None:
        """Wait until every submitted request has sent all its responses."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()
