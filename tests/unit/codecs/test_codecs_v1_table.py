from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tureen.codecs.table import columns_to_frame, frame_to_columns
from tureen.codecs.v1 import instances_of, instances_to_array, instances_to_frame, to_predictions
from tureen.errors import InvalidRequestError


def test_instances_to_array_and_back() -> None:
    arr = instances_to_array(instances_of({"instances": [[1, 2], [3, 4]]}), np.dtype("float32"))
    assert arr.dtype == np.float32 and arr.shape == (2, 2)
    assert to_predictions(arr) == [[1.0, 2.0], [3.0, 4.0]]


def test_inputs_key_is_accepted() -> None:
    assert instances_of({"inputs": [[1]]}) == [[1]]


@pytest.mark.parametrize("body", [[], {"instances": 3}, {"rows": []}])
def test_bad_v1_bodies(body: object) -> None:
    with pytest.raises(InvalidRequestError, match="instances"):
        instances_of(body)


def test_ragged_rows_are_a_client_error() -> None:
    with pytest.raises(InvalidRequestError, match="equal length"):
        instances_to_array([[1, 2], [3]], np.dtype("float32"))


def test_object_rows_become_a_frame() -> None:
    df = instances_to_frame([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}])
    assert list(df.columns) == ["a", "b"] and to_predictions(df)[1] == {"a": 2, "b": "y"}


def test_table_columns_round_trip() -> None:
    df = pd.DataFrame({"a": np.array([1, 2], dtype=np.int64), "s": ["x", "yz"]})
    cols = frame_to_columns(df)
    assert [(n, dt) for n, dt, _ in cols] == [("a", "INT64"), ("s", "BYTES")]
    back = columns_to_frame([(n, a) for n, _, a in cols])
    assert back["a"].tolist() == [1, 2] and back["s"].tolist() == ["x", "yz"]


def test_table_rejects_uneven_columns() -> None:
    with pytest.raises(InvalidRequestError, match="rows"):
        columns_to_frame([("a", np.zeros(2)), ("b", np.zeros(3))])
