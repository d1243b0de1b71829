"""Stored-row encoding: lossless for every dtype, order-preserving header, schema evolution."""

from __future__ import annotations

import math
import struct
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from tureen.definitions import Field
from tureen.online.encoding import (
    RowReader,
    decode_row,
    encode_rows,
    event_micros,
    order_prefix,
)
from tureen.types import (
    Array,
    Bool,
    Bytes,
    DType,
    Float32,
    Float64,
    Int32,
    Int64,
    String,
    UnixTimestamp,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")
MICROS = st.integers(-(2**62), 2**62)
DATETIMES = st.integers(-62_135_596_800_000_000 + 1, 253_402_300_799_999_999).map(
    lambda us: EPOCH + timedelta(microseconds=us)
)
F32 = st.floats(width=32, allow_nan=True, allow_infinity=True)
SCALAR_VALUES: dict[str, tuple[DType, st.SearchStrategy[Any]]] = {
    "Int32": (Int32, st.integers(-(2**31), 2**31 - 1)),
    "Int64": (Int64, st.integers(-(2**63), 2**63 - 1)),
    "Float32": (Float32, F32),
    "Float64": (Float64, st.floats()),
    "String": (String, st.text(max_size=8)),
    "Bytes": (Bytes, st.binary(max_size=8)),
    "Bool": (Bool, st.booleans()),
    "UnixTimestamp": (UnixTimestamp, DATETIMES),
}


def _values(dtype: DType) -> st.SearchStrategy[Any]:
    if dtype.element is not None:
        inner = SCALAR_VALUES[dtype.element.name][1]
        return st.none() | st.lists(st.none() | inner, max_size=5)
    return st.none() | SCALAR_VALUES[dtype.name][1]


ALL_DTYPES = [t for t, _ in SCALAR_VALUES.values()] + [
    Array(t) for t, _ in SCALAR_VALUES.values()
]


def same(a: Any, b: Any) -> bool:
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(
            same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if isinstance(a, float):
        return isinstance(b, float) and struct.pack("<d", a) == struct.pack("<d", b)
    return type(a) is type(b) and a == b


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[Field], list[dict[str, Any]]]:
    dtypes = draw(st.lists(st.sampled_from(ALL_DTYPES), min_size=1, max_size=6))
    fields = [Field(f"c{i}", t) for i, t in enumerate(dtypes)]
    n = draw(st.integers(1, 4))
    rows = [
        {
            **{f.name: draw(_values(f.dtype)) for f in fields},
            "event_timestamp": draw(MICROS),
            "created_timestamp": draw(st.none() | MICROS),
        }
        for _ in range(n)
    ]
    return fields, rows


def _table(fields: list[Field], rows: list[dict[str, Any]]) -> pa.Table:
    schema = pa.schema([pa.field(f.name, f.dtype.arrow) for f in fields]
                       + [pa.field("event_timestamp", pa.int64()),
                          pa.field("created_timestamp", pa.int64())])
    return pa.Table.from_pylist(rows, schema=schema)


@settings(max_examples=150, deadline=None)
@given(tables())
def test_round_trip_every_dtype(case: tuple[list[Field], list[dict[str, Any]]]) -> None:
    fields, rows = case
    encoded = encode_rows(fields, _table(fields, rows))
    for blob, r in zip(encoded.values, rows, strict=True):
        got = decode_row(blob)
        assert got.event_us == r["event_timestamp"]
        assert got.created_us == r["created_timestamp"]
        for f in fields:
            assert same(r[f.name], got.values[f.name]), (f, r[f.name], got.values[f.name])
        # The reader path (what retrieval uses) agrees with the full decoder.
        wanted = [f.name for f in fields][::-1]
        ev, vals = RowReader(wanted).read(blob)
        assert ev == r["event_timestamp"]
        assert all(same(got.values[w], v) for w, v in zip(wanted, vals, strict=True))


@settings(max_examples=200, deadline=None)
@given(MICROS, st.none() | MICROS, MICROS, st.none() | MICROS)
def test_header_bytes_order_like_event_then_created(e1: int, c1: int | None, e2: int,
                                                    c2: int | None) -> None:
    fields = [Field("x", Int64)]
    blobs = encode_rows(fields, _table(fields, [
        {"x": 1, "event_timestamp": e1, "created_timestamp": c1},
        {"x": 2, "event_timestamp": e2, "created_timestamp": c2},
    ])).values
    low = -(2**63)
    assert (order_prefix(blobs[0]) < order_prefix(blobs[1])) == (
        (e1, low if c1 is None else c1) < (e2, low if c2 is None else c2))
    assert event_micros(blobs[0]) == e1


def test_rows_written_under_an_older_schema_still_decode() -> None:
    old = [Field("a", Float32), Field("gone", String)]
    blob = encode_rows(old, pa.table({
        "a": pa.array([1.5], pa.float32()), "gone": ["x"],
        "event_timestamp": pa.array([0], TS),
    })).values[0]
    _, values = RowReader(["new", "a"]).read(blob)
    assert values == [None, 1.5]


def test_fixed_width_rows_need_no_per_value_work_to_build() -> None:
    # 10 Float32 features: header 19 + layout 10*4 + bitmap 2 + 40 bytes of values.
    fields = [Field(f"f{i}", Float32) for i in range(10)]
    table = pa.table({**{f.name: pa.array([0.5] * 3, pa.float32()) for f in fields},
                      "event_timestamp": pa.array([1, 2, 3], TS)})
    encoded = encode_rows(fields, table)
    assert {len(b) for b in encoded.values} == {19 + 40 + 2 + 40}
    assert encoded.event_us == [1, 2, 3]


def test_reader_alternates_between_layouts() -> None:
    old = [Field("a", Float32)]
    new = [Field("b", Int64), Field("a", Float32)]
    ts = pa.array([0], TS)
    row_old = encode_rows(old, pa.table({"a": pa.array([1.5], pa.float32()),
                                         "event_timestamp": ts})).values[0]
    row_new = encode_rows(new, pa.table({"a": pa.array([2.5], pa.float32()), "b": [7],
                                         "event_timestamp": ts})).values[0]
    reader = RowReader(["a", "b"])
    got = [list(reader.read(r)[1]) for r in (row_old, row_new, row_new, row_old)]
    assert got == [[1.5, None], [2.5, 7], [2.5, 7], [1.5, None]]
