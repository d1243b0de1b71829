"""Decoupled models (several responses per request) and streams of many requests."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
import pytest

from tureen.errors import InvalidRequestError
from tureen.serving import DataPlane, InferInput, InferRequest, InferResponse, Model
from tureen.serving.streaming import StreamSession

from .conftest import loaded


def _req(model: str, value: int, rid: str = "", **params: Any) -> InferRequest:
    arr = np.array([value], dtype=np.int32)
    return InferRequest(model, [InferInput("IN", "INT32", [1], arr)], id=rid or None,
                        parameters=params)


class Repeat(Model):
    """Answers IN[0] times, counting up from 0 (async generator)."""

    async def predict(self, payload: Any, headers: dict[str, str] | None = None
                      ) -> AsyncIterator[Any]:
        for i in range(int(payload.inputs[0].data[0])):
            await asyncio.sleep(0)
            yield {"OUT": np.array([i], dtype=np.int32)}


class SlowRepeat(Model):
    """Sync generator that sleeps between responses (runs in the model's threads)."""

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Iterator[Any]:
        for i in range(int(payload.inputs[0].data[0])):
            time.sleep(0.05)
            yield {"OUT": np.array([i], dtype=np.int32)}


@pytest.mark.parametrize("cls", [Repeat, SlowRepeat])
async def test_decoupled_model_yields_several_responses_in_order(cls: type[Model]) -> None:
    dp = DataPlane()
    dp.register(loaded(cls("rep")))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    t = asyncio.create_task(ticker())
    out = [r async for r in dp.infer_stream(_req("rep", 4, rid="r1"))]
    t.cancel()
    assert [r.outputs[0].data.tolist() for r in out] == [[0], [1], [2], [3]]
    assert all(r.id == "r1" and r.model_name == "rep" for r in out)
    if cls is SlowRepeat:
        assert ticks > 5  # the loop kept running while the generator slept
    assert dp.model_config("rep")["model_transaction_policy"] == {"decoupled": True}
    stat = dp.statistics("rep")["model_stats"][0]
    assert stat["execution_count"] == 1 and stat["inference_stats"]["success"]["count"] == 1


async def test_unary_call_to_a_decoupled_model() -> None:
    dp = DataPlane()
    dp.register(loaded(Repeat("rep")))
    assert (await dp.infer(_req("rep", 1))).outputs[0].data.tolist() == [0]
    with pytest.raises(InvalidRequestError, match=r"gave 3 responses.*ModelStreamInfer"):
        await dp.infer(_req("rep", 3))


class Sequence(Model):
    """Adds 1 on the first request of a sequence; refuses requests of unstarted sequences."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.open: set[Any] = set()
        self.seen: list[dict[str, Any]] = []

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        p = payload.parameters
        self.seen.append(dict(p))
        sid = p["sequence_id"]
        value = int(payload.inputs[0].data[0])
        if p.get("sequence_start"):
            self.open.add(sid)
            await asyncio.sleep(0.05)  # slow start: later requests must still wait for it
            value += 1
        elif sid not in self.open:
            raise InvalidRequestError(f"sequence {sid} was not started")
        if p.get("sequence_end"):
            self.open.discard(sid)
        return {"OUT": np.array([value], dtype=np.int32)}


async def test_stream_session_orders_sequences_and_reports_errors_in_stream() -> None:
    dp = DataPlane()
    model = Sequence("seq")
    dp.register(loaded(model))
    got: list[tuple[str, Any]] = []

    async def emit(resp: InferResponse | None, error: str | None, req: InferRequest) -> None:
        got.append((req.id or "", resp.outputs[0].data.tolist()[0] if resp else error))

    session = StreamSession(dp, emit)
    for sid in (7, "uuid-a"):
        values = [10, 1, 2]
        for i, v in enumerate(values):
            await session.submit(_req("seq", v, f"{sid}_{i}", sequence_id=sid,
                                      sequence_start=i == 0, sequence_end=i == len(values) - 1))
    await session.submit(_req("seq", 5, "orphan", sequence_id=99))
    await session.submit(_req("ghost", 5, "lost"))
    await session.finish()
    by_id = dict(got)
    assert by_id["7_0"] == 11 and by_id["7_1"] == 1 and by_id["7_2"] == 2
    assert by_id["uuid-a_0"] == 11 and by_id["uuid-a_2"] == 2
    order = [rid for rid, _ in got if rid.startswith("7_")]
    assert order == ["7_0", "7_1", "7_2"]  # one sequence: in arrival order
    assert "was not started" in by_id["orphan"]
    assert "Request for unknown model" in by_id["lost"]
    assert model.seen[0] == {"sequence_id": 7, "sequence_start": True, "sequence_end": False}


async def test_stream_session_bounds_requests_in_flight() -> None:
    release = threading.Event()

    class Held(Model):
        def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
            release.wait(5)
            return {"OUT": payload.inputs[0].data}

    dp = DataPlane(threads=8)
    dp.register(loaded(Held("h")))
    sent: list[str] = []

    async def emit(resp: InferResponse | None, error: str | None, req: InferRequest) -> None:
        sent.append(req.id or "")

    session = StreamSession(dp, emit, max_inflight=2)
    await session.submit(_req("h", 1, "a"))
    await session.submit(_req("h", 1, "b"))
    third = asyncio.create_task(session.submit(_req("h", 1, "c")))
    await asyncio.sleep(0.05)
    assert not third.done()  # the transport stops reading until a slot frees
    release.set()
    await third
    await session.finish()
    assert sorted(sent) == ["a", "b", "c"]


@pytest.mark.parametrize(("params", "needle"), [
    ({"sequence_start": True}, "no sequence_id"),
    ({"sequence_end": True, "sequence_id": 0}, "no sequence_id"),
    ({"sequence_id": 1.5}, "unsigned integer or a string"),
    ({"sequence_id": 3, "sequence_start": "yes"}, "true or false"),
])
async def test_sequence_parameters_are_checked(params: dict[str, Any], needle: str) -> None:
    dp = DataPlane()
    dp.register(loaded(Sequence("seq")))
    with pytest.raises(InvalidRequestError, match=needle):
        await dp.infer(_req("seq", 1, **params))
