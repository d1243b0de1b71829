from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, TypeVar

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from tureen.serving import InferRequest, Model, TensorSpec


class Doubler(Model):
    """Sync stages; records the headers it saw."""

    def __init__(self, name: str = "doubler", version: str = "1") -> None:
        super().__init__(name, version)
        self.inputs = [TensorSpec("x", "FP32", [-1, 2])]
        self.outputs = [TensorSpec("y", "FP32", [-1, 2])]
        self.seen_headers: list[dict[str, str]] = []

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        self.seen_headers.append(dict(headers or {}))
        return self.decode(payload) * 2


class AsyncPipeline(Model):
    """Async pre/post around a sync predict."""

    async def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        await asyncio.sleep(0)
        return self.decode(payload) + 1

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        return payload.sum(axis=1)

    async def postprocess(self, result: Any, headers: dict[str, str] | None = None) -> Any:
        return {"predictions": result.tolist(), "post": True}


def fp32_request(model: str, rows: list[list[float]], name: str = "x") -> InferRequest:
    from tureen.serving import InferInput

    arr = np.asarray(rows, dtype=np.float32)
    return InferRequest(model, [InferInput(name, "FP32", list(arr.shape), arr)])


M = TypeVar("M", bound=Model)


def loaded(model: M) -> M:
    model.load()
    return model


@pytest.fixture
def lr_repo(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    for v in ("1", "2", "3"):
        (tmp_path / "lr" / v).mkdir(parents=True)
        joblib.dump(LogisticRegression().fit(x, y), tmp_path / "lr" / v / "model.joblib")
    return tmp_path
