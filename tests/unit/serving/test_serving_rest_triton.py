"""Triton's REST extensions on the REST app: statistics, model configuration, system shared
memory (CUDA refused), repository load parameters, unserved settings endpoints."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tureen.serving import DataPlane, ModelRepository
from tureen.serving.shared_memory import SharedMemoryRegistry
from tureen.transports.rest import build_app

ADD = '''
from tureen.serving import Model, TensorSpec


class Add(Model):
    def load(self):
        self.inputs = [TensorSpec("A", "INT32", [-1, 4]), TensorSpec("B", "INT32", [-1, 4])]
        self.outputs = [TensorSpec("SUM", "INT32", [-1, 4])]
        self.max_batch_size = 8
        self.ready = True
        return True

    def predict(self, payload, headers=None):
        return {"SUM": payload.input("A").data + payload.input("B").data}
'''


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[DataPlane]:
    (tmp_path / "add" / "1").mkdir(parents=True)
    (tmp_path / "add" / "1" / "model.py").write_text(ADD)
    dp = DataPlane(ModelRepository(tmp_path), model_control=True)
    dp.shared_memory = SharedMemoryRegistry()
    await dp.repository.load_all()
    yield dp
    dp.close()


@pytest.fixture
async def client(plane: DataPlane) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(plane)),
                                 base_url="http://t") as c:
        yield c


@pytest.fixture
def shm() -> Iterator[shared_memory.SharedMemory]:
    block = shared_memory.SharedMemory(name=f"tureen-t-{uuid.uuid4().hex[:10]}", create=True,
                                       size=64)
    yield block
    block.close()
    block.unlink()


def _infer_body(a: list[int], b: list[int]) -> dict[str, Any]:
    return {"inputs": [{"name": "A", "datatype": "INT32", "shape": [1, 4], "data": a},
                       {"name": "B", "datatype": "INT32", "shape": [1, 4], "data": b}]}


async def test_statistics_routes(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v2/models/add/infer", json=_infer_body([1] * 4, [2] * 4))
            ).status_code == 200
    for path in ("/v2/models/stats", "/v2/models/add/stats", "/v2/models/add/versions/1/stats"):
        r = await client.get(path)
        assert r.status_code == 200, r.text
        (stat,) = r.json()["model_stats"]
        assert stat["name"] == "add" and stat["inference_count"] == 1
    r = await client.get("/v2/models/nope/stats")
    assert r.status_code == 404 and r.json()["error"].startswith("Request for unknown model")


async def test_config_route_and_load_with_config(client: httpx.AsyncClient) -> None:
    cfg = (await client.get("/v2/models/add/config")).json()
    assert cfg["max_batch_size"] == 8 and cfg["input"][0]["dims"] == [4]
    assert (await client.get("/v2/models/add/versions/1/config")).json() == cfg
    r = await client.post("/v2/repository/models/add/load",
                          json={"parameters": {"config": '{"max_batch_size": "16"}'}})
    assert r.status_code == 200, r.text
    assert (await client.get("/v2/models/add/config")).json()["max_batch_size"] == 16
    for body, needle in [
        ({"parameters": {"config": "{not json"}}, "not valid JSON"),
        ({"parameters": {"config": "{}", "file:1/model.py": "aW1wb3J0IG9z"}}, "file overrides"),
        ({"parameters": {"confg": "{}"}}, "not understood"),
        ({"parameters": "x"}, "parameters"),
    ]:
        r = await client.post("/v2/repository/models/add/load", json=body)
        assert r.status_code == 400 and needle in r.json()["error"], r.text
    r = await client.post("/v2/repository/models/add/unload",
                          json={"parameters": {"force": True}})
    assert r.status_code == 400 and "unload_dependents" in r.json()["error"]
    r = await client.post("/v2/repository/models/add/unload",
                          json={"parameters": {"unload_dependents": False}})
    assert r.status_code == 200


async def test_system_shared_memory_over_rest(client: httpx.AsyncClient,
                                              shm: shared_memory.SharedMemory) -> None:
    key = "/" + shm.name.lstrip("/")
    np.ndarray((8,), np.int32, shm.buf[:32])[:] = [1, 2, 3, 4, 10, 20, 30, 40]
    for name, offset in (("in", 0), ("out", 32)):
        r = await client.post(f"/v2/systemsharedmemory/region/{name}/register",
                              json={"key": key, "offset": offset, "byte_size": 32})
        assert r.status_code == 200, r.text
    status = (await client.get("/v2/systemsharedmemory/status")).json()
    assert [s["name"] for s in status] == ["in", "out"]
    assert (await client.get("/v2/systemsharedmemory/region/out/status")).json()[0]["offset"] \
        == 32
    body = {"inputs": [
        {"name": n, "datatype": "INT32", "shape": [1, 4],
         "parameters": {"shared_memory_region": "in", "shared_memory_byte_size": 16,
                        "shared_memory_offset": off}} for n, off in (("A", 0), ("B", 16))],
        "outputs": [{"name": "SUM", "parameters": {"shared_memory_region": "out",
                                                   "shared_memory_byte_size": 16}}]}
    r = await client.post("/v2/models/add/infer", json=body)
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    assert "data" not in out and out["parameters"]["shared_memory_region"] == "out"
    assert np.ndarray((4,), np.int32, shm.buf[32:48]).tolist() == [11, 22, 33, 44]
    body["inputs"][1]["parameters"]["shared_memory_offset"] = 20  # 20 + 16 > 32
    r = await client.post("/v2/models/add/infer", json=body)
    assert r.status_code == 400 and "outside shared memory region 'in'" in r.json()["error"]
    body["inputs"][1]["data"] = [1, 2, 3, 4]
    r = await client.post("/v2/models/add/infer", json=body)
    assert r.status_code == 400 and "carries data too" in r.json()["error"]
    r = await client.post("/v2/systemsharedmemory/region/ghost/register",
                          content=json.dumps({"key": "/tureen-no-such", "byte_size": 8}))
    assert r.status_code == 404
    assert (await client.post("/v2/systemsharedmemory/region/in/unregister")).status_code == 200
    assert (await client.post("/v2/systemsharedmemory/unregister")).status_code == 200
    assert (await client.get("/v2/systemsharedmemory/status")).json() == []


async def test_cuda_shared_memory_is_refused_clearly(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v2/cudasharedmemory/status")).json() == []
    assert (await client.post("/v2/cudasharedmemory/unregister")).status_code == 200
    r = await client.post("/v2/cudasharedmemory/region/g/register",
                          json={"raw_handle": {"b64": ""}, "device_id": 0, "byte_size": 8})
    assert r.status_code == 400 and "CUDA shared memory is not supported" in r.json()["error"]


async def test_shared_memory_off_by_default(tmp_path: Path) -> None:
    dp = DataPlane()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(dp)),
                                 base_url="http://t") as c:
        r = await c.get("/v2/systemsharedmemory/status")
        assert r.status_code == 400 and "--allow_shared_memory" in r.json()["error"]
        assert "system_shared_memory" not in (await c.get("/v2")).json()["extensions"]
    dp.close()


@pytest.mark.parametrize("path", ["/v2/logging", "/v2/trace/setting",
                                  "/v2/models/add/trace/setting"])
async def test_logging_and_trace_settings_name_what_is_served(client: httpx.AsyncClient,
                                                              path: str) -> None:
    r = await client.get(path)
    assert r.status_code == 404
    assert "not served" in r.json()["error"] and "statistics" in r.json()["error"]


async def test_parameters_keep_their_values_both_ways_over_rest() -> None:
    from tureen.serving import InferOutput, InferResponse, Model

    class Params(Model):
        async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
            i = payload.inputs[0]
            self.seen = dict(payload.parameters)
            return InferResponse(self.name, [InferOutput("y", i.datatype, i.shape, i.data)],
                                 parameters=dict(payload.parameters))

    dp = DataPlane()
    model = Params("p")
    model.load()
    dp.register(model)
    sent = {"flag": True, "neg": -(2**63), "big": 2**64 - 1, "ratio": 0.25, "text": "héllo"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(dp)),
                                 base_url="http://t") as c:
        r = await c.post("/v2/models/p/infer", json={"parameters": sent, "inputs": [
            {"name": "x", "datatype": "INT32", "shape": [1], "data": [1]}]})
    assert r.status_code == 200, r.text
    assert model.seen == sent and r.json()["parameters"] == sent
    assert isinstance(model.seen["big"], int) and isinstance(model.seen["ratio"], float)
    dp.close()
