"""Short sync predicts run on the event loop once measured; slow ones and opted-out models in
worker threads (serving.inline.InlineBudget through the DataPlane)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tureen.serving import DataPlane
from tureen.serving.inline import InlineBudget

from .conftest import Doubler, fp32_request, loaded


def test_budget_offloads_the_first_call_then_follows_the_average() -> None:
    b = InlineBudget(1.0)
    assert not b.inline()  # nothing measured yet: a thread
    b.observe(0.0001)
    assert b.inline()
    for _ in range(30):
        b.observe(0.01)  # turned slow: the average climbs over the budget
    assert not b.inline()
    assert not InlineBudget(0).inline()


class _Where(Doubler):
    def __init__(self, name: str, budget_ms: float, sleep_s: float = 0.0,
                 batch: int = 0) -> None:
        super().__init__(name)
        self.inline_budget_ms = budget_ms
        self.max_batch_size = batch
        self.sleep_s = sleep_s
        self.threads: list[int] = []

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        self.threads.append(threading.get_ident())
        if self.sleep_s:
            time.sleep(self.sleep_s)
        return super().predict(payload, headers)


@pytest.mark.parametrize("batch", [0, 8])
async def test_a_fast_model_runs_inline_after_its_first_call(batch: int) -> None:
    m = _Where("fast", budget_ms=5.0, batch=batch)
    dp = DataPlane()
    dp.register(loaded(m))
    for _ in range(5):
        resp = await dp.infer(fp32_request("fast", [[1, 2]]))
        assert resp.outputs[0].data.tolist() == [[2, 4]]
    loop = threading.get_ident()
    assert m.threads[0] != loop and all(t == loop for t in m.threads[1:])
    dp.close()


@pytest.mark.parametrize(("budget", "sleep"), [(0.0, 0.0), (1.0, 0.01)])
async def test_opted_out_or_slow_models_stay_off_the_loop(budget: float, sleep: float) -> None:
    m = _Where("m", budget_ms=budget, sleep_s=sleep)
    dp = DataPlane()
    dp.register(loaded(m))
    for _ in range(4):
        await dp.infer(fp32_request("m", [[1, 2]]))
    loop = threading.get_ident()
    assert all(t != loop for t in m.threads)
    dp.close()
