"""Named table inputs reach the model in its declared order, never in request order.

A model trained on columns [a, b] must give the same answer whatever order a client (or a
Feast-based transformer) lists the columns in; a missing or an extra column is a 400.
"""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from tureen.errors import InvalidRequestError
from tureen.serving import DataPlane, InferInput, InferRequest, ModelRepository

# y = 1 exactly when a > b: swapping the columns flips every answer
X = np.array([[0.0, 5.0], [5.0, 0.0], [1.0, 4.0], [4.0, 1.0]] * 25, dtype=np.float32)
Y = (X[:, 0] > X[:, 1]).astype(np.int64)
ROWS = [{"a": 0.0, "b": 5.0}, {"a": 5.0, "b": 0.0}]
WANT = [0, 1]


def _write(root: Path, name: str, frame: bool, declared: bool) -> None:
    d = root / name / "1"
    d.mkdir(parents=True)
    x = pd.DataFrame(X, columns=["a", "b"]) if frame else X
    joblib.dump(LogisticRegression().fit(x, Y), d / "model.joblib")
    settings: dict[str, object] = {"max_batch_size": 0}
    if declared:
        settings["inputs"] = [{"name": "a", "datatype": "FP32", "shape": [-1]},
                              {"name": "b", "datatype": "FP32", "shape": [-1]}]
    (d / "model-settings.json").write_text(json.dumps(settings))


@pytest.fixture
async def dp(tmp_path: Path) -> DataPlane:
    _write(tmp_path, "declared", frame=False, declared=True)  # trained on arrays, names declared
    _write(tmp_path, "named", frame=True, declared=False)  # trained on a DataFrame
    _write(tmp_path, "anonymous", frame=False, declared=False)  # no names anywhere
    plane = DataPlane(ModelRepository(tmp_path))
    await plane.repository.load_all()
    return plane


def _table(model: str, order: list[str], pd_type: bool = True) -> InferRequest:
    cols = {k: np.array([r[k] for r in ROWS], dtype=np.float32) for k in ("a", "b")}
    return InferRequest(
        model, [InferInput(k, "FP32", [2], cols[k]) for k in order],
        parameters={"content_type": "pd"} if pd_type else {},
    )


@pytest.mark.parametrize("model", ["declared", "named"])
@pytest.mark.parametrize("order", [["a", "b"], ["b", "a"]])
async def test_v1_object_rows_map_by_name(dp: DataPlane, model: str, order: list[str]) -> None:
    rows = [{k: r[k] for k in order} for r in ROWS]
    assert (await dp.predict_v1(model, {"instances": rows}, {}))["predictions"] == WANT


@pytest.mark.parametrize("model", ["declared", "named"])
@pytest.mark.parametrize("pd_type", [True, False])
async def test_oip_named_inputs_map_by_name(dp: DataPlane, model: str, pd_type: bool) -> None:
    for order in (["a", "b"], ["b", "a"]):
        resp = await dp.infer(_table(model, order, pd_type))
        assert resp.outputs[0].data.tolist() == WANT, order


@pytest.mark.parametrize("model", ["declared", "named"])
async def test_missing_or_extra_column_is_rejected(dp: DataPlane, model: str) -> None:
    with pytest.raises(InvalidRequestError, match=r"missing.*'b'"):
        await dp.predict_v1(model, {"instances": [{"a": 1.0}]}, {})
    with pytest.raises(InvalidRequestError, match=r"'c'"):
        await dp.predict_v1(model, {"instances": [{"a": 1.0, "b": 2.0, "c": 3.0}]}, {})
    req = _table(model, ["a"])
    with pytest.raises(InvalidRequestError, match=r"missing.*'b'"):
        await dp.infer(req)
    req = _table(model, ["a", "b"])
    req.inputs.append(InferInput("c", "FP32", [2], np.zeros(2, dtype=np.float32)))
    with pytest.raises(InvalidRequestError, match=r"'c'"):
        await dp.infer(req)


async def test_named_columns_for_a_model_without_names_are_rejected(dp: DataPlane) -> None:
    """Columns cannot be put in the order of a model that never said what its order is."""
    with pytest.raises(InvalidRequestError, match="column names"):
        await dp.predict_v1("anonymous", {"instances": ROWS}, {})
    with pytest.raises(InvalidRequestError, match="column names"):
        await dp.infer(_table("anonymous", ["b", "a"]))
    # rows as lists (the model's own order) keep working
    out = await dp.predict_v1("anonymous", {"instances": [[0.0, 5.0], [5.0, 0.0]]}, {})
    assert out["predictions"] == WANT


async def test_declared_signature_reorders_inputs_for_custom_models() -> None:
    from tureen.serving import Model, TensorSpec

    class Positional(Model):
        def __init__(self) -> None:
            super().__init__("pos")
            self.inputs = [TensorSpec("x", "FP32", [-1]), TensorSpec("y", "FP32", [-1])]

        def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> object:
            return payload.inputs[0].data - payload.inputs[1].data  # x - y, by position

    dp = DataPlane()
    m = Positional()
    m.load()
    dp.register(m)
    one = np.ones(1, dtype=np.float32)
    req = InferRequest("pos", [InferInput("y", "FP32", [1], one * 5), InferInput("x", "FP32", [1],
                                                                                  one * 7)])
    assert (await dp.infer(req)).outputs[0].data.tolist() == [2.0]
