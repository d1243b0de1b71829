"""start_eager: inline completion without a Task, and a correct hand-off when it suspends."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from tureen.transports.eager import drive_eager, start_eager

var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


async def _sync_value() -> int:
    return 41 + 1


async def _suspends(fut: asyncio.Future[int]) -> str:
    token = var.set("inside")
    try:
        got = await fut
        await asyncio.sleep(0)
        return f"{var.get()}:{got}"
    finally:
        var.reset(token)  # would raise if resumed in another context


def test_a_coroutine_that_never_suspends_finishes_inline_without_a_task() -> None:
    async def main() -> None:
        seen: list[object] = []
        task = start_eager(_sync_value(), lambda r, e: seen.append((r, e)))
        assert task is None
        assert seen == [(42, None)]

    asyncio.run(main())


def test_a_suspended_coroutine_resumes_in_its_own_context() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        seen: list[object] = []
        task = start_eager(_suspends(fut), lambda r, e: seen.append((r, e)))
        assert task is not None and seen == []
        assert var.get() == "unset"  # the caller's context is untouched
        fut.set_result(7)
        await task
        assert seen == [("inside:7", None)]

    asyncio.run(main())


@pytest.mark.parametrize("when", ["inline", "after-suspend"])
def test_exceptions_reach_on_done(when: str) -> None:
    async def boom(fut: asyncio.Future[None] | None) -> None:
        if fut is not None:
            await fut
        raise ValueError("bad input")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] | None = loop.create_future() if when != "inline" else None
        seen: list[tuple[object, BaseException | None]] = []
        task = start_eager(boom(fut), lambda r, e: seen.append((r, e)))
        if fut is not None:
            fut.set_result(None)
            assert task is not None
            await task
        assert len(seen) == 1 and isinstance(seen[0][1], ValueError)

    asyncio.run(main())


def test_an_exception_set_on_the_awaited_future_is_thrown_into_the_coroutine() -> None:
    async def waits(fut: asyncio.Future[None]) -> str:
        try:
            await fut
        except KeyError:
            return "caught"
        return "not caught"

    async def main() -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        seen: list[object] = []
        task = start_eager(waits(fut), lambda r, e: seen.append(r))
        fut.set_exception(KeyError("x"))
        assert task is not None
        await task
        assert seen == ["caught"]

    asyncio.run(main())


# drive_eager: the same, without a Task once it suspends


async def _settle(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_driven_resumes_in_its_own_context_without_a_task() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        seen: list[object] = []
        tasks = len(asyncio.all_tasks())
        driven = drive_eager(_suspends(fut), lambda r, e: seen.append((r, e)), loop)
        assert driven is not None and not driven.done() and seen == []
        assert len(asyncio.all_tasks()) == tasks
        assert var.get() == "unset"
        fut.set_result(7)
        await _settle()
        assert seen == [("inside:7", None)] and driven.done()
        assert not driven.cancel()

    asyncio.run(main())


def test_driven_that_never_suspends_is_none() -> None:
    async def main() -> None:
        seen: list[object] = []
        assert drive_eager(_sync_value(), lambda r, e: seen.append(r),
                           asyncio.get_running_loop()) is None
        assert seen == [42]

    asyncio.run(main())


@pytest.mark.parametrize("when", ["waiting", "woken", "after-sleep"])
def test_cancelling_a_driven_coroutine_throws_cancelled_error_into_it(when: str) -> None:
    async def waits(fut: asyncio.Future[int], log: list[str]) -> str:
        try:
            await fut
            log.append("resumed")
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            log.append("cancelled")
            raise
        return "finished"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        log: list[str] = []
        seen: list[tuple[object, BaseException | None]] = []
        driven = drive_eager(waits(fut, log), lambda r, e: seen.append((r, e)), loop)
        assert driven is not None
        if when == "woken":  # done, its callback not run yet: as Task, the next step throws
            fut.set_result(1)
        elif when == "after-sleep":
            fut.set_result(1)
            await asyncio.sleep(0)
            assert log == ["resumed"]
        assert driven.cancel()
        await _settle()
        assert log[-1] == "cancelled" and len(seen) == 1
        assert isinstance(seen[0][1], asyncio.CancelledError)
        assert fut.cancelled() == (when == "waiting")

    asyncio.run(main())


def test_a_driven_coroutine_awaiting_something_else_goes_on_in_a_task() -> None:
    class Odd:  # an awaitable yielding a value no Task accepts
        def __await__(self):  # type: ignore[no-untyped-def]
            yield "not a future"

    async def odd(fut: asyncio.Future[int]) -> str:
        await fut
        try:
            await Odd()
        except RuntimeError as exc:
            return f"task said: {exc}"
        return "no error"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        seen: list[object] = []
        driven = drive_eager(odd(fut), lambda r, e: seen.append(r), loop)
        assert driven is not None
        fut.set_result(1)
        await _settle()
        assert len(seen) == 1 and "not a future" in str(seen[0]) and driven.done()

    asyncio.run(main())


def test_an_exception_set_on_the_future_reaches_the_driven_coroutine() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        seen: list[tuple[object, BaseException | None]] = []

        async def boom() -> None:
            await fut

        assert drive_eager(boom(), lambda r, e: seen.append((r, e)), loop) is not None
        fut.set_exception(KeyError("x"))
        await _settle()
        assert len(seen) == 1 and isinstance(seen[0][1], KeyError)

    asyncio.run(main())
