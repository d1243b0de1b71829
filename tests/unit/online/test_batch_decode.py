"""Batch decoding (numpy, one pass per feature) equals decoding row by row, and declines
rows it cannot read as one array."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tureen.definitions import Field
from tureen.online.batch_decode import MIN_ROWS, read_columns
from tureen.online.encoding import RowReader, encode_rows
from tureen.online.packed import PackedRows
from tureen.types import Bool, DType, Float32, Float64, Int32, Int64, String, UnixTimestamp

T0 = datetime(2026, 1, 1, tzinfo=UTC)
US = pa.timestamp("us", tz="UTC")
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "Int32": st.integers(-(2**31), 2**31 - 1),
    "Int64": st.integers(-(2**63), 2**63 - 1),
    "Float32": st.floats(width=32, allow_nan=False),
    "Float64": st.floats(allow_nan=True),
    "Bool": st.booleans(),
    "UnixTimestamp": st.integers(0, 10**6).map(lambda s: T0 + timedelta(seconds=s)),
}
TYPES: dict[str, DType] = {"Int32": Int32, "Int64": Int64, "Float32": Float32,
                           "Float64": Float64, "Bool": Bool, "UnixTimestamp": UnixTimestamp}


def _same(a: list[Any], b: list[Any]) -> bool:
    return all(x == y or (isinstance(x, float) and isinstance(y, float)
                          and math.isnan(x) and math.isnan(y)) for x, y in zip(a, b, strict=True))


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[Field], pa.Table, list[str]]:
    kinds = draw(st.lists(st.sampled_from(sorted(TYPES)), min_size=1, max_size=10))
    fields = [Field(f"f{i}", TYPES[k]) for i, k in enumerate(kinds)]
    n = draw(st.integers(MIN_ROWS, 40))
    cols: dict[str, Any] = {}
    for f, k in zip(fields, kinds, strict=True):
        cols[f.name] = pa.array([draw(st.none() | VALUES[k]) for _ in range(n)], f.dtype.arrow)
    cols["event_timestamp"] = pa.array(
        [T0 + timedelta(microseconds=draw(st.integers(-10**12, 10**12))) for _ in range(n)], US)
    names = [f.name for f in fields]
    wanted = draw(st.lists(st.sampled_from([*names, "absent"]), min_size=1, max_size=12,
                           unique=True))
    return fields, pa.table(cols), wanted


@settings(max_examples=150, deadline=None)
@given(batches())
def test_batch_decode_equals_row_by_row(case: tuple[list[Field], pa.Table, list[str]]) -> None:
    fields, table, wanted = case
    rows = encode_rows(fields, table).values
    reader = RowReader(wanted)
    found = read_columns(reader, rows)
    assert found is not None
    events, columns = found
    one_by_one = [reader.read(r) for r in rows]
    assert events == [e for e, _ in one_by_one]
    for j, col in enumerate(columns):
        assert _same(col, [list(v)[j] for _, v in one_by_one])


def test_rows_that_are_not_one_array_are_declined() -> None:
    n = MIN_ROWS
    when = pa.array([T0] * n, US)
    nums = encode_rows([Field("a", Int64)], pa.table({"a": list(range(n)),
                                                     "event_timestamp": when})).values
    other = encode_rows([Field("b", Int64)], pa.table({"b": list(range(n)),
                                                      "event_timestamp": when})).values
    text = encode_rows([Field("a", String)], pa.table({"a": ["x"] * n,
                                                      "event_timestamp": when})).values
    reader = RowReader(["a"])
    assert read_columns(reader, nums[: n - 1]) is None  # too few to pay off
    assert read_columns(reader, nums[:-1] + other[:1]) is None  # two layouts
    assert read_columns(reader, text) is None  # variable width
    assert read_columns(reader, nums) is not None


@settings(max_examples=100, deadline=None)
@given(batches(), st.data())
def test_packed_rows_decode_like_the_rows_they_stand_for(
        case: tuple[list[Field], pa.Table, list[str]], data: st.DataObject) -> None:
    """Rows taken from one buffer in any order, repeated or not, decode like those rows."""
    fields, table, wanted = case
    rows = encode_rows(fields, table).values
    picks = data.draw(st.lists(st.integers(0, len(rows) - 1), min_size=MIN_ROWS, max_size=60))
    packed = PackedRows(b"".join(rows), len(rows[0]), np.array(picks, dtype=np.int64))
    assert list(packed) == [rows[i] for i in picks]
    reader = RowReader(wanted)
    assert _columns_same(read_columns(reader, packed),
                         read_columns(reader, [rows[i] for i in picks]))


def _columns_same(a: tuple[list[int], list[Any]] | None,
                  b: tuple[list[int], list[Any]] | None) -> bool:
    assert a is not None and b is not None
    return a[0] == b[0] and all(_same(list(x), list(y)) for x, y in zip(a[1], b[1], strict=True))


def test_packed_rows_are_a_sequence_of_rows_and_nones() -> None:
    rows = encode_rows([Field("a", Int64)], pa.table({
        "a": [1, 2], "event_timestamp": pa.array([T0, T0], US)})).values
    packed = PackedRows(b"".join(rows), len(rows[0]), np.array([1, -1, 0, 1], dtype=np.int64))
    assert len(packed) == 4 and packed.missing == 1
    assert list(packed) == [rows[1], None, rows[0], rows[1]]
    assert packed[1] is None and packed[-1] == rows[1] and packed[1:3] == [None, rows[0]]
    assert None in packed and rows[0] in packed and b"other" not in packed
    assert None not in PackedRows(rows[0], len(rows[0]), np.zeros(3, dtype=np.int64))
    assert PackedRows.of([rows[0], None, rows[0]]) is not None
    assert PackedRows.of([rows[0], b"\x01short"]) is None
    with pytest.raises(ValueError, match="whole number"):
        PackedRows(rows[0] + b"x", len(rows[0]), np.zeros(1, dtype=np.int64))
