"""DataPlane: stages, validation, versions, batching, metrics — no network."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tureen.errors import InvalidRequestError, NotFoundError, NotReadyError
from tureen.serving import DataPlane, InferResponse, Model, ModelRepository, VersionPolicy
from tureen.serving.batching import Batcher
from tureen.serving.inference import RequestedOutput

from .conftest import AsyncPipeline, Doubler, fp32_request, loaded


async def test_v2_infer_runs_sync_predict_off_the_loop() -> None:
    loop_thread = threading.get_ident()
    threads: list[int] = []

    class Where(Doubler):
        def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
            threads.append(threading.get_ident())
            return super().predict(payload, headers)

    dp = DataPlane()
    dp.register(loaded(Where("m")))
    req = fp32_request("m", [[1, 2]])
    req.headers = {"x-request-id": "abc"}
    resp = await dp.infer(req)
    assert isinstance(resp, InferResponse)
    assert resp.outputs[0].name == "y" and resp.outputs[0].data.tolist() == [[2, 4]]
    assert threads and threads[0] != loop_thread


async def test_headers_reach_the_model_for_v1() -> None:
    dp = DataPlane()
    m = Doubler("m")
    dp.register(loaded(m))
    body = await dp.predict_v1("m", {"instances": [[1, 2]]}, {"x-tenant": "t1"})
    assert body == {"predictions": [[2.0, 4.0]]}
    assert m.seen_headers[-1]["x-tenant"] == "t1"


async def test_async_stages_and_postprocess_dict() -> None:
    dp = DataPlane()
    dp.register(loaded(AsyncPipeline("p")))
    body = await dp.predict_v1("p", {"instances": [[1, 2], [3, 4]]}, {})
    assert body == {"predictions": [5, 9], "post": True}


async def test_slow_sync_predict_does_not_block_health() -> None:
    gate = threading.Event()

    class Slow(Model):
        def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
            gate.wait(5)
            return [0]

    dp = DataPlane()
    dp.register(loaded(Slow("slow")))
    task = asyncio.create_task(dp.predict_v1("slow", {"instances": [[1]]}, {}))
    await asyncio.sleep(0.05)
    assert dp.live() and not task.done()  # the loop is free while predict blocks
    gate.set()
    assert (await task) == {"predictions": [0]}


@pytest.mark.parametrize(
    ("rows", "dtype", "needle"),
    [([[1, 2, 3]], "FP32", "shape"), ([[1, 2]], "FP64", "datatype FP64")],
)
async def test_signature_validation(rows: list[list[float]], dtype: str, needle: str) -> None:
    dp = DataPlane()
    dp.register(loaded(Doubler("m")))
    req = fp32_request("m", rows)
    req.inputs[0].datatype = dtype
    with pytest.raises(InvalidRequestError, match=needle):
        await dp.infer(req)


async def test_requested_outputs() -> None:
    dp = DataPlane()
    dp.register(loaded(Doubler("m")))
    req = fp32_request("m", [[1, 2]])
    req.outputs = [RequestedOutput("nope")]
    with pytest.raises(InvalidRequestError, match="no output 'nope'"):
        await dp.infer(req)
    req.outputs = [RequestedOutput("y")]
    assert [o.name for o in (await dp.infer(req)).outputs] == ["y"]


async def test_unknown_model_and_version() -> None:
    dp = DataPlane()
    dp.register(loaded(Doubler("doubler")))
    with pytest.raises(NotFoundError, match="Did you mean 'doubler'"):
        await dp.infer(fp32_request("doublr", [[1, 2]]))
    req = fp32_request("doubler", [[1, 2]])
    req.model_version = "9"
    with pytest.raises(NotFoundError, match="no version '9'"):
        await dp.infer(req)


async def test_not_ready_model() -> None:
    dp = DataPlane()
    m = Doubler("m")
    dp.register(loaded(m))
    m.ready = False
    assert not dp.ready() and not dp.model_ready("m")
    with pytest.raises(NotReadyError):
        await dp.infer(fp32_request("m", [[1, 2]]))


async def test_explain_only_when_the_model_has_it() -> None:
    class Explained(Doubler):
        def explain(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
            return {"why": "because"}

    dp = DataPlane()
    dp.register(loaded(Doubler("plain")))
    dp.register(loaded(Explained("ex")))
    assert await dp.explain_v1("ex", {"instances": [[1, 2]]}, {}) == {"why": "because"}
    with pytest.raises(NotFoundError, match="no explainer"):
        await dp.explain_v1("plain", {"instances": [[1, 2]]}, {})


async def test_batching_merges_concurrent_requests_and_splits_results() -> None:
    sizes: list[int] = []
    gate = asyncio.Event()
    moved = asyncio.Event()

    class Batched(Model):
        async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
            sizes.append(payload.shape[0])
            moved.set()
            await gate.wait()
            return payload[:, 0] * 10

        def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
            time.sleep(0.03)  # a slow decode in a thread: ordering must not depend on timing
            return self.decode(payload)

    async def entries(n: int) -> None:
        while len(sizes) < n:
            moved.clear()
            await moved.wait()

    m = Batched("b")
    m.max_batch_size = 6  # the three 2-row requests fill one batch; no timer decides
    m.max_latency_ms = 60_000.0
    dp = DataPlane()
    dp.register(loaded(m))
    first = asyncio.create_task(dp.predict_v1("b", {"instances": [[0]]}, {}))
    await asyncio.wait_for(entries(1), 10)  # first batch is running; the next ones queue up
    rest = [asyncio.create_task(dp.predict_v1("b", {"instances": [[i], [i]]}, {}))
            for i in range(1, 4)]
    await asyncio.wait_for(entries(2), 10)
    gate.set()
    results = await asyncio.gather(first, *rest)
    assert results[0] == {"predictions": [0]}
    assert [r["predictions"] for r in results[1:]] == [[10, 10], [20, 20], [30, 30]]
    assert sizes == [1, 6]
    assert 'tureen_batch_size_count{model="b",version="1"} 2' in dp.metrics.render()


async def test_batcher_sends_a_partial_batch_after_max_latency() -> None:
    """A batch that never fills still goes after max_latency_ms, while another one runs."""
    gate = asyncio.Event()
    calls: list[int] = []
    waits: list[float] = []

    async def predict(payload: Any) -> Any:
        calls.append(len(payload))
        if len(calls) == 1:
            await gate.wait()
        return payload

    batcher = Batcher(predict, max_batch_size=8, max_latency_ms=20.0,
                      on_batch=lambda rows, seconds, w: waits.extend(w))
    first = asyncio.create_task(batcher.submit(np.zeros((1, 1))))
    while not calls:
        await asyncio.sleep(0)
    second = await asyncio.wait_for(batcher.submit(np.ones((2, 1))), 10)  # 2 of 8 rows
    assert second.shape == (2, 1) and calls == [1, 2] and not first.done()
    assert waits[0] >= 0.0199  # it waited for the timer, not for the running batch
    gate.set()
    await first


async def test_batcher_runs_a_batch_it_may_run_now_where_it_is_flushed() -> None:
    """With a sync predict on offer (``now``), the requests of one loop iteration still make
    one batch, predicted in the flush itself (no task); its error reaches every waiter, and
    without the offer (a predict over its inline budget) the batch runs in a task."""
    calls: list[int] = []
    offer: list[bool] = [True]

    def now_predict(payload: Any) -> Any:
        calls.append(len(payload))
        if payload[0, 0] < 0:
            raise ValueError("negative")
        return payload * 2

    async def predict(payload: Any) -> Any:
        calls.append(-len(payload))
        return payload * 2

    batcher = Batcher(predict, max_batch_size=8, max_latency_ms=20.0,
                      now=lambda: now_predict if offer[0] else None)
    got = await asyncio.gather(*(batcher.submit(np.full((n, 1), n)) for n in (1, 2, 3)))
    assert calls == [6] and [g.ravel().tolist() for g in got] == [[2], [4, 4], [6, 6, 6]]
    assert not batcher._tasks
    failed = await asyncio.gather(batcher.submit(np.full((1, 1), -1)),
                                  batcher.submit(np.full((1, 1), 1)), return_exceptions=True)
    assert calls == [6, 2] and all(isinstance(f, ValueError) for f in failed)
    offer[0] = False
    assert (await batcher.submit(np.ones((2, 1)))).tolist() == [[2], [2]]
    assert calls == [6, 2, -2]


async def test_metrics_count_requests_and_stages() -> None:
    dp = DataPlane()
    dp.register(loaded(AsyncPipeline("p")))
    await dp.predict_v1("p", {"instances": [[1]]}, {})
    text = dp.metrics.render()
    assert 'tureen_requests_total{model="p",version="1",protocol="v1",status="ok"} 1' in text
    for stage in ("preprocess", "predict", "postprocess", "total"):
        assert f'stage="{stage}"' in text
    assert 'tureen_inflight_requests{model="p"} 0' in text


def test_version_policy() -> None:
    vs = ["1", "10", "2", "3"]
    assert VersionPolicy.parse("latest").select(vs) == ["10"]
    assert VersionPolicy.parse("latest:2").select(vs) == ["3", "10"]
    assert VersionPolicy.parse("all").select(vs) == ["1", "2", "3", "10"]
    assert VersionPolicy.parse("specific:2,3").select(vs) == ["2", "3"]
    with pytest.raises(InvalidRequestError, match="latest:N"):
        VersionPolicy.parse("newest")


async def test_repository_versions_default_load_unload(lr_repo: Path) -> None:
    repo = ModelRepository(lr_repo, VersionPolicy.parse("latest:2"))
    dp = DataPlane(repo, model_control=True)
    await repo.load_all()
    assert repo.versions("lr") == ["2", "3"]
    md = dp.model_metadata("lr")
    assert md["platform"] == "sklearn" and md["inputs"][0]["shape"] == [-1, 4]
    resp = await dp.infer(fp32_request("lr", [[1, 0, 0, 0]], name="input-0"))
    assert resp.model_version == "3" and resp.outputs[0].datatype == "INT64"
    v1 = await dp.predict_v1("lr", {"instances": [[1, 0, 0, 0], [-1, 0, 0, 0]]}, {})
    assert v1 == {"predictions": [1, 0]}
    with pytest.raises(InvalidRequestError, match=r"4 features|expects"):
        await dp.predict_v1("lr", {"instances": [[1, 0]]}, {})
    await dp.unload("lr")
    assert dp.list_models() == []
    assert dp.repository_index() == [
        {"name": "lr", "version": "", "state": "UNAVAILABLE", "reason": "unloaded"}
    ]
    await dp.load("lr")
    assert dp.list_models() == ["lr"]


async def test_unload_waits_for_requests_in_flight() -> None:
    gate = asyncio.Event()
    unloaded: list[bool] = []

    class Held(Model):
        async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
            await gate.wait()
            return [1]

        def unload(self) -> None:
            unloaded.append(True)

    m = Held("h")
    m.ready = True
    dp = DataPlane(model_control=True)
    dp.register(loaded(m))
    call = asyncio.create_task(dp.predict_v1("h", {"instances": [[1]]}, {}))
    await asyncio.sleep(0.01)
    unload = asyncio.create_task(dp.unload("h"))
    await asyncio.sleep(0.05)
    assert not unloaded and not unload.done()
    gate.set()
    assert await call == {"predictions": [1]}
    await unload
    assert unloaded == [True]


async def test_builtin_runtime_batches_by_default(lr_repo: Path) -> None:
    repo = ModelRepository(lr_repo)
    dp = DataPlane(repo, model_control=True)
    await repo.load_all()
    reqs = [dp.predict_v1("lr", {"instances": [[float(i % 2 * 2 - 1), 0, 0, 0]]}, {})
            for i in range(20)]
    reqs += [dp.infer(fp32_request("lr", [[1, 0, 0, 0]], name="input-0")) for _ in range(5)]
    out = await asyncio.gather(*reqs)
    assert [o["predictions"] for o in out[:20]] == [[i % 2] for i in range(20)]
    assert all(np.array_equal(o.outputs[0].data, [1]) for o in out[20:])


async def test_async_load_is_awaited() -> None:
    from tureen.serving.repository import load_model

    class AsyncLoad(Model):
        async def load(self) -> bool:  # type: ignore[override]
            await asyncio.sleep(0)
            self.ready = True
            return True

    m = AsyncLoad("a")
    await load_model(m)
    assert m.ready


async def test_a_model_blocking_its_threads_does_not_starve_another() -> None:
    gate = threading.Event()

    class Stuck(Model):
        def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
            gate.wait(10)
            return [0]

    dp = DataPlane(threads=2)
    dp.register(loaded(Stuck("stuck")))
    dp.register(loaded(Doubler("fast")))
    stuck = [asyncio.create_task(dp.predict_v1("stuck", {"instances": [[1]]}, {}))
             for _ in range(3)]
    try:
        body = await asyncio.wait_for(dp.predict_v1("fast", {"instances": [[1, 2]]}, {}), 5)
        assert body == {"predictions": [[2.0, 4.0]]}
    finally:
        gate.set()
        await asyncio.gather(*stuck)
        dp.close()


def test_kserve_style_accessors() -> None:
    req = fp32_request("m", [[1, 2]])
    inp = req.get_input_by_name("x")
    assert inp is not None and inp.as_numpy().shape == (1, 2)
    assert req.get_input_by_name("nope") is None
    resp = InferResponse.of("m", np.zeros(2), ["y"])
    out = resp.get_output_by_name("y")
    assert out is not None and out.as_numpy().tolist() == [0.0, 0.0]


async def test_unloaded_versions_are_freed(lr_repo: Path) -> None:
    import gc
    import weakref

    repo = ModelRepository(lr_repo, VersionPolicy.parse("all"))
    dp = DataPlane(repo, model_control=True)
    await repo.load_all()
    await dp.predict_v1("lr", {"instances": [[1, 0, 0, 0]]}, {})
    refs = [weakref.ref(m) for m in repo.models()]
    assert len(refs) == 3
    await dp.unload("lr")
    gc.collect()
    assert [r() for r in refs] == [None, None, None]
    dp.close()
