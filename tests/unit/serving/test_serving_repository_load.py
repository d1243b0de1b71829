"""Repository loading: concurrent, bounded in time, failures reported while the rest serve;
``load`` with a Triton config override applied or refused, never ignored."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import orjson
import pytest

from tureen.errors import InvalidRequestError
from tureen.serving import DataPlane, ModelRepository

WAITS_FOR_FILE = '''
import time
from pathlib import Path
from tureen.serving import Model


class Waits(Model):
    """load() blocks until the file named in model-settings exists (never, unless told)."""

    def load(self):
        flag = Path({flag!r})
        while not flag.exists():
            time.sleep(0.01)
        Path({started!r}).write_text("loaded")
        self.ready = True
        return True

    def unload(self):
        Path({started!r}).write_text("unloaded")

    def predict(self, payload, headers=None):
        return [1]
'''

ADD = '''
import numpy as np
from tureen.serving import InferResponse, Model, TensorSpec


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

BROKEN = '''
from tureen.serving import Model


class Broken(Model):
    def load(self):
        raise RuntimeError("the weights file is corrupt")
'''


def _model(root: Path, name: str, code: str) -> None:
    (root / name / "1").mkdir(parents=True)
    (root / name / "1" / "model.py").write_text(code)


MUTUAL = '''
import time
from pathlib import Path
from tureen.serving import Model


class Mutual(Model):
    def load(self):
        Path({mine!r}).touch()
        while not Path({theirs!r}).exists():
            time.sleep(0.01)
        self.ready = True
        return True
'''


async def test_models_load_concurrently(tmp_path: Path) -> None:
    """Each of two models waits in load() until the other has started loading: loaded one
    after the other, the first would time out."""
    a, b = str(tmp_path / "a.started"), str(tmp_path / "b.started")
    _model(tmp_path, "a", MUTUAL.format(mine=a, theirs=b))
    _model(tmp_path, "b", MUTUAL.format(mine=b, theirs=a))
    repo = ModelRepository(tmp_path, load_timeout=20)
    assert await repo.load_all() == {}
    assert {m["name"]: m["state"] for m in repo.index()} == {"a": "READY", "b": "READY"}


async def test_a_hung_or_broken_model_is_reported_while_the_rest_serve(tmp_path: Path) -> None:
    release, state = tmp_path / "release", tmp_path / "hung.state"
    _model(tmp_path, "hung", WAITS_FOR_FILE.format(flag=str(release), started=str(state)))
    _model(tmp_path, "broken", BROKEN)
    _model(tmp_path, "add", ADD)
    dp = DataPlane(ModelRepository(tmp_path, load_timeout=0.5), model_control=True)
    failed = await dp.repository.load_all()
    assert set(failed) == {"hung", "broken"}
    index = {m["name"]: m for m in dp.repository_index()}
    assert index["add"]["state"] == "READY"
    assert index["hung"]["state"] == "UNAVAILABLE"
    assert "did not finish within 0.5 s" in index["hung"]["reason"]
    assert index["broken"]["state"] == "UNAVAILABLE"
    assert "the weights file is corrupt" in index["broken"]["reason"]
    assert dp.ready()  # nothing is still loading: the server answers for what it has
    assert dp.model_ready("add")
    # the abandoned load finishes later: what it acquired is released, it is not served
    release.touch()
    for _ in range(500):
        if state.exists() and state.read_text() == "unloaded":
            break
        await asyncio.sleep(0.01)
    assert state.read_text() == "unloaded"
    assert dp.repository_index()[1]["state"] == "UNAVAILABLE"  # "hung" stays failed


async def test_load_failure_over_the_api_says_failed_to_load(tmp_path: Path) -> None:
    _model(tmp_path, "broken", BROKEN)
    dp = DataPlane(ModelRepository(tmp_path), model_control=True)
    with pytest.raises(InvalidRequestError, match="failed to load model 'broken'"):
        await dp.load("broken")
    assert dp.repository_index()[0]["state"] == "UNAVAILABLE"


@pytest.fixture
async def add_plane(tmp_path: Path) -> DataPlane:
    _model(tmp_path, "add", ADD)
    dp = DataPlane(ModelRepository(tmp_path), model_control=True)
    await dp.repository.load_all()
    return dp


async def test_config_reports_the_signature_batching_and_policy(add_plane: DataPlane) -> None:
    cfg = add_plane.model_config("add")
    assert cfg["name"] == "add" and cfg["backend"] == "python"
    assert cfg["max_batch_size"] == 8
    assert cfg["input"] == [{"name": "A", "data_type": "TYPE_INT32", "dims": [4]},
                            {"name": "B", "data_type": "TYPE_INT32", "dims": [4]}]
    assert cfg["output"] == [{"name": "SUM", "data_type": "TYPE_INT32", "dims": [4]}]
    assert cfg["dynamic_batching"] == {"max_queue_delay_microseconds": 5000}
    assert cfg["version_policy"] == {"latest": {"num_versions": 1}}
    assert cfg["model_transaction_policy"] == {"decoupled": False}


async def test_config_override_is_applied(add_plane: DataPlane) -> None:
    dp = add_plane
    old = dp.repository.get("add").model
    await dp.load("add", {"config": '{"max_batch_size":"16", "dynamic_batching": '
                                    '{"max_queue_delay_microseconds": 2000}}'})
    model = dp.repository.get("add").model
    assert model is not old  # reloaded with the override
    assert model.max_batch_size == 16 and model.max_latency_ms == 2.0
    assert dp.model_config("add")["max_batch_size"] == 16
    # the config as served goes back in unchanged
    await dp.load("add", {"config": orjson.dumps(dp.model_config("add")).decode()})
    assert dp.model_config("add")["max_batch_size"] == 16
    # a load without config goes back to the files
    await dp.load("add")
    assert dp.model_config("add")["max_batch_size"] == 8


@pytest.mark.parametrize(("config", "needle"), [
    ('"parameters": {"config": {{"max_batch_size": "16"}}}', "not valid JSON"),
    ('{"max_batch_size": "sixteen"}', "must be an integer"),
    ('{"optimization": {}}', "'optimization' is not supported"),
    ('{"name": "other"}', "keep the model's name"),
    ('{"backend": "onnxruntime"}', "decides it from the model files"),
    ('{"input": [{"name": "A", "data_type": "TYPE_COMPLEX", "dims": [4]}]}', "data_type"),
    ('{"dynamic_batching": {"preferred_batch_size": [4]}}', "max_queue_delay_microseconds"),
    ('[1, 2]', "JSON object"),
])
async def test_bad_config_override_is_refused(add_plane: DataPlane, config: str,
                                              needle: str) -> None:
    before = add_plane.repository.get("add").model
    with pytest.raises(InvalidRequestError, match="failed to load") as e:
        await add_plane.load("add", {"config": config})
    assert needle in str(e.value)
    assert add_plane.repository.get("add").model is before  # still serving, unchanged


async def test_file_overrides_and_unknown_parameters_are_refused(add_plane: DataPlane) -> None:
    with pytest.raises(InvalidRequestError, match="file overrides"):
        await add_plane.load("add", {"config": "{}", "file:1/model.py": b"import os"})
    with pytest.raises(InvalidRequestError, match="not understood"):
        await add_plane.load("add", {"confg": "{}"})


async def test_override_of_version_policy(tmp_path: Path) -> None:
    for v in ("1", "2", "3"):
        (tmp_path / "add" / v).mkdir(parents=True)
        (tmp_path / "add" / v / "model.py").write_text(ADD)
    (tmp_path / "add" / "model-settings.json").write_text(json.dumps({}))
    dp = DataPlane(ModelRepository(tmp_path), model_control=True)
    await dp.repository.load_all()
    assert dp.repository.versions("add") == ["3"]
    await dp.load("add", {"config": '{"version_policy": {"specific": {"versions": [1, 2]}}}'})
    assert dp.repository.versions("add") == ["1", "2"]
    assert dp.model_config("add")["version_policy"] == {"specific": {"versions": [1, 2]}}
