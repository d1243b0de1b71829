"""Triton's statistics extension, computed from the server's own metrics."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tureen.errors import InvalidRequestError, NotFoundError
from tureen.serving import DataPlane, Model
from tureen.serving.metrics import Metrics

from .conftest import Doubler, fp32_request, loaded


def _stat(dp: DataPlane, name: str) -> dict[str, Any]:
    (stat,) = dp.statistics(name)["model_stats"]
    return stat


async def test_counts_durations_and_failures() -> None:
    dp = DataPlane()
    dp.register(loaded(Doubler("m")))
    before = time.time() * 1000
    for _ in range(3):
        await dp.infer(fp32_request("m", [[1, 2]]))
    with pytest.raises(InvalidRequestError):
        await dp.infer(fp32_request("m", [[1, 2, 3]]))  # wrong shape: a failed request
    s = _stat(dp, "m")
    assert (s["name"], s["version"]) == ("m", "1")
    assert s["inference_count"] == 3 and s["execution_count"] == 3
    inf = s["inference_stats"]
    assert inf["success"]["count"] == 3 and inf["success"]["ns"] > 0
    assert inf["fail"]["count"] == 1 and inf["fail"]["ns"] > 0
    assert inf["compute_infer"]["count"] == 3 and inf["compute_infer"]["ns"] > 0
    assert inf["queue"] == {"count": 0, "ns": 0} and inf["cache_hit"] == {"count": 0, "ns": 0}
    assert s["batch_stats"][0]["batch_size"] == 1
    assert s["batch_stats"][0]["compute_infer"]["count"] == 3
    assert before <= s["last_inference"] <= time.time() * 1000 + 1


async def test_batched_model_counts_rows_executions_and_queue() -> None:
    """Ordered by events, not sleeps: preprocess runs in a thread and is slow on purpose, so a
    busy machine cannot change which requests batch together."""
    gate = asyncio.Event()
    entered: list[int] = []
    moved = asyncio.Event()

    class Batched(Model):
        async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
            entered.append(len(payload))
            moved.set()
            await gate.wait()
            return payload * 10

        def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
            time.sleep(0.03)  # a slow decode: the old 20 ms sleeps raced this
            return self.decode(payload)

    async def entries(n: int) -> None:
        while len(entered) < n:
            moved.clear()
            await moved.wait()

    m = Batched("b")
    m.max_batch_size = 6  # the three 2-row requests fill a batch: no timer decides
    m.max_latency_ms = 60_000.0
    dp = DataPlane()
    dp.register(loaded(m))
    first = asyncio.create_task(dp.predict_v1("b", {"instances": [[0]]}, {}))
    await asyncio.wait_for(entries(1), 10)
    rest = [asyncio.create_task(dp.predict_v1("b", {"instances": [[i], [i]]}, {}))
            for i in range(1, 4)]
    await asyncio.wait_for(entries(2), 10)
    gate.set()
    await asyncio.gather(first, *rest)
    assert entered == [1, 6]
    s = _stat(dp, "b")
    assert s["inference_count"] == 7  # rows, as Triton counts a batching model
    assert s["execution_count"] == 2  # one alone, then the three that queued behind it
    assert {b["batch_size"]: b["compute_infer"]["count"] for b in s["batch_stats"]} == {1: 1,
                                                                                       6: 1}
    queue = s["inference_stats"]["queue"]
    assert queue["count"] == 4 and queue["ns"] > 0
    assert s["inference_stats"]["compute_input"]["count"] == 4  # the preprocess stage


async def test_selection_and_unknown_models() -> None:
    dp = DataPlane()
    dp.register(loaded(Doubler("a")))
    dp.register(loaded(Doubler("b", "1")))
    dp.register(loaded(Doubler("b", "2")))
    everything = dp.statistics()["model_stats"]
    assert [(s["name"], s["version"]) for s in everything] == [("a", "1"), ("b", "1"), ("b", "2")]
    assert [s["version"] for s in dp.statistics("b")["model_stats"]] == ["1", "2"]
    assert [s["version"] for s in dp.statistics("b", "2")["model_stats"]] == ["2"]
    with pytest.raises(NotFoundError, match="Request for unknown model"):
        dp.statistics("ghost")
    with pytest.raises(NotFoundError, match="no version '7'"):
        dp.statistics("b", "7")


async def test_statistics_sum_over_workers(tmp_path: Path) -> None:
    """Workers share snapshots; the statistics are those of the whole server."""
    share = tmp_path / "m"
    one, two = DataPlane(metrics=Metrics(share)), DataPlane(metrics=Metrics(share))
    for dp in (one, two):
        dp.register(loaded(Doubler("m")))
        await dp.infer(fp32_request("m", [[1, 2]]))
    two.metrics.write_snapshot()
    # both workers live in this process, so they share one snapshot file: write the second
    # under another name as a second process would
    (share / f"{__import__('os').getpid()}.json").rename(share / "other.json")
    s = _stat(one, "m")
    assert s["inference_count"] == 2 and s["inference_stats"]["success"]["count"] == 2
