"""Entity-key encoding: deterministic, injective, and the same from Python and Arrow."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tureen.definitions import Field
from tureen.errors import InvalidRequestError
from tureen.online.keys import IntKeys, KeyEncoder, decode_key, encoder_for
from tureen.types import Bool, Bytes, DType, Int32, Int64, String, UnixTimestamp

NAMES = st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=6).map(
    lambda s: "k" + s
)
SCALARS: dict[str, tuple[DType, st.SearchStrategy[Any]]] = {
    "Int64": (Int64, st.integers(-(2**63), 2**63 - 1)),
    "String": (String, st.text(max_size=12)),
    "Bytes": (Bytes, st.binary(max_size=12)),
    "Bool": (Bool, st.booleans()),
}


@st.composite
def keyed(draw: st.DrawFn) -> tuple[tuple[Field, ...], tuple[Any, ...]]:
    names = draw(st.lists(NAMES, min_size=1, max_size=3, unique=True))
    fields, values = [], []
    for n in names:
        dtype, strategy = SCALARS[draw(st.sampled_from(sorted(SCALARS)))]
        fields.append(Field(n, dtype))
        values.append(draw(strategy))
    return tuple(fields), tuple(values)


def _encode(fields: tuple[Field, ...], values: tuple[Any, ...]) -> bytes:
    return KeyEncoder(fields).encode_mapping(dict(zip([f.name for f in fields], values,
                                                      strict=True)))


@settings(max_examples=300, deadline=None)
@given(keyed(), keyed())
def test_injective(a: tuple[tuple[Field, ...], tuple[Any, ...]],
                   b: tuple[tuple[Field, ...], tuple[Any, ...]]) -> None:
    def canonical(k: tuple[tuple[Field, ...], tuple[Any, ...]]) -> Any:
        return sorted(
            (f.name, "int" if f.dtype in (Int32, Int64) else f.dtype.name, v)
            for f, v in zip(k[0], k[1], strict=True)
        )

    if canonical(a) != canonical(b):
        assert _encode(*a) != _encode(*b)
    else:
        assert _encode(*a) == _encode(*b)


@settings(max_examples=200, deadline=None)
@given(keyed())
def test_decodes_back_and_ignores_declaration_order(
    k: tuple[tuple[Field, ...], tuple[Any, ...]],
) -> None:
    fields, values = k
    encoded = _encode(fields, values)
    assert decode_key(encoded) == dict(zip([f.name for f in fields], values, strict=True))
    assert _encode(fields[::-1], values[::-1]) == encoded


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=20),
       st.lists(st.text(max_size=5), min_size=20, max_size=20))
def test_arrow_path_matches_scalar_path(ids: list[int], names: list[str]) -> None:
    single = KeyEncoder([Field("id", Int64)])
    table = pa.table({"id": pa.array(ids, pa.int64())})
    assert single.encode_arrow(table) == [single.encode_one(i) for i in ids]
    pair = KeyEncoder([Field("id", Int64), Field("name", String)])
    table = pa.table({"id": pa.array(ids, pa.int64()), "name": names[: len(ids)]})
    assert pair.encode_arrow(table) == [
        pair.encode_mapping({"id": i, "name": n}) for i, n in zip(ids, names, strict=False)
    ]


def test_deterministic_across_processes() -> None:
    script = (
        "from tureen.online.keys import KeyEncoder;"
        "from tureen.definitions import Field;"
        "from tureen.types import Int64, String;"
        "e = KeyEncoder([Field('b', String), Field('a', Int64)]);"
        "print(e.encode_mapping({'a': -7, 'b': 'héllo'}).hex())"
    )
    outs = {
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       check=True, env={"PYTHONHASHSEED": str(seed)}).stdout.strip()
        for seed in (12345,)
    }
    here = KeyEncoder([Field("a", Int64), Field("b", String)]).encode_mapping(
        {"a": -7, "b": "héllo"}
    )
    assert outs == {here.hex()}
    # The documented layout, pinned so every backend and version agrees.
    assert here == (b"\x01\x02" + b"\x01ai" + (-7).to_bytes(8, "big", signed=True)
                    + b"\x01bs" + len("héllo".encode()).to_bytes(4, "big") + "héllo".encode())


def test_int_widths_share_keys_and_timestamps_are_utc_micros() -> None:
    assert encoder_for([Field("id", Int32)]).encode_one(5) == \
        encoder_for([Field("id", Int64)]).encode_one(5)
    ts = KeyEncoder([Field("t", UnixTimestamp)])
    aware = datetime(2026, 1, 1, 12, 0, 0, 5, tzinfo=UTC)
    assert ts.encode_one(aware) == ts.encode_one(aware.replace(tzinfo=None))
    assert ts.encode_one(aware) == ts.encode_one("2026-01-01T13:00:00.000005+01:00")
    table = pa.table({"t": pa.array([aware], pa.timestamp("us", tz="UTC"))})
    assert ts.encode_arrow(table) == [ts.encode_one(aware)]


@pytest.mark.parametrize(("dtype", "value"), [
    (Int64, "1"), (Int64, 1.0), (Int64, True), (String, 1), (String, b"x"),
    (Bytes, "x"), (Bool, 1), (UnixTimestamp, 1.5),
])
def test_wrong_types_name_the_key_and_type(dtype: DType, value: Any) -> None:
    with pytest.raises(InvalidRequestError, match=rf"'k' expects {dtype.name}"):
        KeyEncoder([Field("k", dtype)]).encode_one(value)


def test_missing_and_null_keys_are_rejected() -> None:
    enc = KeyEncoder([Field("a", Int64), Field("b", String)])
    with pytest.raises(InvalidRequestError, match=r"missing join key\(s\) \['b'\]"):
        enc.encode_mapping({"a": 1})
    with pytest.raises(InvalidRequestError, match="null"):
        enc.encode_arrow(pa.table({"a": [1, None], "b": ["x", "y"]}))


@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=60), st.sampled_from([Int32, Int64]))
def test_int_keys_of_a_batch_are_the_keys_of_each_value(values: list[int], dtype: DType) -> None:
    """A batch of plain ints keeps them (``IntKeys``: ints, int64 array) and makes the same
    key bytes as one value at a time, however many (packed by numpy from 16 on)."""
    enc = encoder_for([Field("account_id", dtype)])
    keys = IntKeys.of(values, enc)
    assert isinstance(keys, IntKeys)
    assert keys.ints == values and keys.array.tolist() == values
    assert list(keys) == [enc.encode_one(v) for v in values]
    for bad in (2**63, True):  # out of range, not an int: encoded one by one, which refuses
        with pytest.raises(InvalidRequestError, match="expects"):
            IntKeys.of([*values, bad], enc)
    if values:  # split: the shared lead plus each value's 8 bytes are the same keys
        split = keys.split()
        assert split is not None
        lead, tails = split
        assert tails.shape == (len(values), 8)
        assert [lead + t.tobytes() for t in tails] == [enc.encode_one(v) for v in values]
