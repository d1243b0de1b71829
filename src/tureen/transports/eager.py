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


def _first_step(
    coro: Coroutine[Any, Any, Any], on_done: Done
) -> tuple[contextvars.Context, Any] | None:
    """The coroutine's first step in a fresh copy of the current context: None when it
    ended (``on_done`` called), else the context and what it yielded."""
    ctx = contextvars.copy_context()
    try:
        first = ctx.run(coro.send, None)
    except StopIteration as stop:
        on_done(stop.value, None)
        return None
    except Exception as exc:
        on_done(None, exc)
        return None
    return ctx, first


def start_eager(
    coro: Coroutine[Any, Any, Any], on_done: Done, loop: asyncio.AbstractEventLoop | None = None
) -> asyncio.Task[None] | None:
    """Run ``coro`` now; call ``on_done(result, None)`` or ``on_done(None, exc)`` when it
    ends. Returns the Task carrying it on when it suspended, else None (already done)."""
    started = _first_step(coro, on_done)
    if started is None:
        return None
    ctx, first = started
    loop = loop or asyncio.get_running_loop()
    return loop.create_task(_finish(coro, first, on_done), context=ctx)


class Driven:
    """A suspended coroutine carried on without a Task: the future it waits for resumes it
    from its done callback (in the coroutine's context), as a Task's wakeup would, minus
    the Task, its first loop round trip and the relaying coroutine. ``cancel`` behaves as
    ``Task.cancel``: the awaited future is cancelled, or ``CancelledError`` is thrown in at
    the next step. Anything but an asyncio future of this loop or a bare ``yield`` (the
    coroutine awaits something exotic) hands the rest to a Task, which checks it.
    ``asyncio.current_task()`` is None while it runs, as in ``start_eager``'s first step."""

    __slots__ = ("_cancelling", "_coro", "_ctx", "_loop", "_on_done", "_task", "_waiter")

    def __init__(self, coro: Coroutine[Any, Any, Any], ctx: contextvars.Context,
                 loop: asyncio.AbstractEventLoop, on_done: Done) -> None:
        self._coro: Coroutine[Any, Any, Any] | None = coro
        self._ctx = ctx
        self._loop = loop
        self._on_done = on_done
        self._waiter: asyncio.Future[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._cancelling = False

    def done(self) -> bool:
        return self._coro is None

    def cancel(self) -> bool:
        if self._coro is None:
            return False
        if self._task is not None:
            return self._task.cancel()
        waiter = self._waiter
        if waiter is not None and waiter.cancel():
            return True  # its callback resumes the coroutine, whose await raises
        self._cancelling = True
        return True

    def _wait(self, yielded: Any) -> None:
        if yielded is None:  # a bare yield (asyncio.sleep(0)): the next loop iteration
            self._loop.call_soon(self._step, None, context=self._ctx)
        elif (getattr(yielded, "_asyncio_future_blocking", False)
              and yielded.get_loop() is self._loop):
            yielded._asyncio_future_blocking = False
            self._waiter = yielded
            yielded.add_done_callback(self._step, context=self._ctx)
            if self._cancelling and yielded.cancel():
                self._cancelling = False
        else:
            assert self._coro is not None
            self._task = self._loop.create_task(_finish(self._coro, yielded, self._end),
                                                context=self._ctx)
            if self._cancelling:
                self._task.cancel()

    def _end(self, result: Any, exc: BaseException | None) -> None:
        self._coro = None
        self._on_done(result, exc)

    def _step(self, _fut: Any) -> None:
        self._waiter = None
        coro = self._coro
        if coro is None or self._task is not None:
            return
        try:
            if self._cancelling:
                self._cancelling = False
                yielded = coro.throw(asyncio.CancelledError())
            else:
                yielded = coro.send(None)
        except StopIteration as stop:
            self._end(stop.value, None)
            return
        except BaseException as exc:  # delivered to on_done (cancellation too)
            self._end(None, exc)
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            return
        self._wait(yielded)


def drive_eager(
    coro: Coroutine[Any, Any, Any], on_done: Done, loop: asyncio.AbstractEventLoop
) -> Driven | None:
    """``start_eager`` without a Task: when ``coro`` suspends on a future, that future's
    done callback resumes it (see ``Driven``). Returns its handle (``cancel()``), else None
    (already done)."""
    started = _first_step(coro, on_done)
    if started is None:
        return None
    ctx, first = started
    driven = Driven(coro, ctx, loop, on_done)
    driven._wait(first)
    return driven
