"""start_eager: inline completion without a Task, and a correct hand-off when it suspends."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from tureen.transports.eager import start_eager

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
