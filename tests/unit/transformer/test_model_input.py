"""ModelInput.split: a merged batch's input cut back into each request's own rows."""

from __future__ import annotations

import numpy as np

from tureen.transformer.predictor import ModelInput


def test_matrix_split_keeps_rows_names_and_datatype() -> None:
    m = np.arange(12, dtype=np.float32).reshape(6, 2)
    parts = ModelInput(matrix=m, names=["a", "b"], datatype="FP32").split([1, 3, 2])
    assert [p.matrix.shape[0] for p in parts if p.matrix is not None] == [1, 3, 2]
    assert np.array_equal(np.vstack([p.matrix for p in parts if p.matrix is not None]), m)
    assert all(p.names == ["a", "b"] and p.datatype == "FP32" for p in parts)


def test_column_split_slices_every_column_alike() -> None:
    x = ModelInput(columns=[("id", np.array([1, 2, 3])), ("amt", np.array([0.5, 1.5, 2.5]))],
                   names=["id", "amt"])
    first, rest = x.split([1, 2])
    assert first.columns is not None and rest.columns is not None
    assert [c.tolist() for _, c in first.columns] == [[1], [0.5]]
    assert [c.tolist() for _, c in rest.columns] == [[2, 3], [1.5, 2.5]]
