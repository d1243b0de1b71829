"""Run a request's coroutine eagerly: to completion inline when it never suspends.

Most requests (an in-process model, a SQLite online read) finish without awaiting anything
that blocks. Creating a Task for each costs a loop round trip and ~10 µs; ``start_eager``
runs the coroutine's first step right away, in a fresh copy of the current context, and only
when it really suspends hands the rest to a Task running in that same context (so context
variables set before the suspension, and their reset tokens, stay valid).

    start_eager(handle(req), on_done)   # on_done(result, exc) is called exactly once
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine, Generator
from typing import Any, TypeVar

T = TypeVar("T")
Done = Callable[[Any, BaseException | None], None]


class _Resume:
    """Awaitable that continues an already started coroutine inside a Task: it hands the
    Task the future the coroutine is blocked on, then relays sends and throws."""

    __slots__ = ("coro", "first")

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self.coro = coro
        self.first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, yielded = self.coro, self.first
        while True:
            try:
                sent = yield yielded
            except BaseException as exc:  # cancellation or an exception set on the future
                try:
                    yielded = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    yielded = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _finish(coro: Coroutine[Any, Any, Any], first: Any, on_done: Done) -> None:
    try:
        result = await _Resume(coro, first)
    except BaseException as exc:  # delivered to on_done; nothing else awaits this task
        on_done(None, exc)
        if not isinstance(exc, Exception):
            raise
        return
    on_done(result, None)


def start_eager(
    coro: Coroutine[Any, Any, Any], on_done: Done, loop: asyncio.AbstractEventLoop | None = None
) -> asyncio.Task[None] | None:
    """Run ``coro`` now; call ``on_done(result, None)`` or ``on_done(None, exc)`` when it
    ends. Returns the Task carrying it on when it suspended, else None (already done)."""
    ctx = contextvars.copy_context()
    try:
        first = ctx.run(coro.send, None)
    except StopIteration as stop:
        on_done(stop.value, None)
        return None
    except Exception as exc:
        on_done(None, exc)
        return None
    loop = loop or asyncio.get_running_loop()
    return loop.create_task(_finish(coro, first, on_done), context=ctx)
