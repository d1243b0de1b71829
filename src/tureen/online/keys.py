"""Canonical entity-key encoding: join key names + typed values -> bytes.

Every online backend stores rows under these bytes, so the same entity gets the same key in
every process and every backend. The format (version 1) is self-delimiting, hence injective::

    key   := 0x01 count:u8 part*            parts sorted by join key name
    part  := name_len:u8 name:utf8 tag:u8 value
    value := tag 'i' (Int32, Int64)      8 bytes, big-endian two's complement
           | tag 't' (UnixTimestamp)     8 bytes, big-endian µs since the epoch (UTC)
           | tag 'f' (Float32, Float64)  8 bytes, big-endian IEEE-754 double
           | tag '?' (Bool)              1 byte, 0 or 1
           | tag 's' (String)            len:u32 big-endian + UTF-8
           | tag 'b' (Bytes)             len:u32 big-endian + raw bytes

Both integer widths share one tag so widening an entity from Int32 to Int64 keeps its keys.
Parts are sorted by name so declaring entities in another order keeps the keys too.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, overload

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tureen.definitions import Field
from tureen.errors import InvalidRequestError
from tureen.types import (
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

KEY_FORMAT_VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_Q = struct.Struct(">q")
_D = struct.Struct(">d")
_L = struct.Struct(">I")

_TAGS: dict[str, bytes] = {
    Int32.name: b"i",
    Int64.name: b"i",
    UnixTimestamp.name: b"t",
    Float32.name: b"f",
    Float64.name: b"f",
    Bool.name: b"?",
    String.name: b"s",
    Bytes.name: b"b",
}
_FIXED_WIDTH = {b"i": 8, b"t": 8, b"f": 8, b"?": 1}

PartEncoder = Callable[[Any], bytes]


def _bad(name: str, dtype: DType, value: Any) -> InvalidRequestError:
    return InvalidRequestError(
        f"entity key {name!r} expects {dtype.name} values, got {type(value).__name__} "
        f"{value!r}. Send the join key with its declared type."
    )


def timestamp_micros(value: Any) -> int:
    """µs since the epoch (UTC) of a datetime, pandas/numpy timestamp or ISO-8601 string.

    tz-naive values are taken as UTC. Raises TypeError/ValueError for anything else.
    """
    if isinstance(value, pd.Timestamp):
        ts = value if value.tzinfo is not None else value.tz_localize("UTC")
        return int(ts.value // 1000)
    if isinstance(value, datetime):
        dt = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        delta = dt - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if isinstance(value, np.datetime64):
        return int(value.astype("datetime64[us]").astype(np.int64))
    if isinstance(value, str):
        return timestamp_micros(pd.Timestamp(value))
    raise TypeError(f"not a timestamp: {value!r}")


def _part_encoder(field: Field) -> PartEncoder:
    name, dtype = field.name, field.dtype
    tag = _TAGS.get(dtype.name)
    if tag is None:
        raise InvalidRequestError(
            f"join key {name!r} has type {dtype.name}, which cannot identify an entity; use "
            "Int64, String or Bytes."
        )
    raw = name.encode()
    if len(raw) > 255:
        raise InvalidRequestError(f"join key name {name[:40]!r}... is longer than 255 bytes.")
    head = bytes([len(raw)]) + raw + tag

    if tag == b"i":
        pack_q = _Q.pack

        def enc_int(v: Any) -> bytes:
            if v.__class__ is bool:
                raise _bad(name, dtype, v)
            try:
                return head + pack_q(v)
            except struct.error:
                raise _bad(name, dtype, v) from None

        return enc_int
    if tag == b"s":
        pack_l = _L.pack

        def enc_str(v: Any) -> bytes:
            if not isinstance(v, str):
                raise _bad(name, dtype, v)
            b = v.encode()
            return head + pack_l(len(b)) + b

        return enc_str
    if tag == b"b":
        pack_l = _L.pack

        def enc_bytes(v: Any) -> bytes:
            if not isinstance(v, (bytes, bytearray, memoryview)):
                raise _bad(name, dtype, v)
            b = bytes(v)
            return head + pack_l(len(b)) + b

        return enc_bytes
    if tag == b"t":

        def enc_ts(v: Any) -> bytes:
            try:
                return head + _Q.pack(timestamp_micros(v))
            except (TypeError, ValueError, struct.error):
                raise _bad(name, dtype, v) from None

        return enc_ts
    if tag == b"f":

        def enc_float(v: Any) -> bytes:
            if v.__class__ is bool or isinstance(v, (str, bytes)):
                raise _bad(name, dtype, v)
            try:
                return head + _D.pack(v)
            except struct.error:
                raise _bad(name, dtype, v) from None

        return enc_float

    def enc_bool(v: Any) -> bytes:
        if not isinstance(v, (bool, np.bool_)):
            raise _bad(name, dtype, v)
        return head + (b"\x01" if v else b"\x00")

    return enc_bool


class KeyEncoder:
    """Encodes the entity keys of one set of join keys (a feature view's ``key_fields``).

    ``names`` is the order :meth:`encode` expects values in (sorted join key names).
    """

    def __init__(self, key_fields: Sequence[Field]) -> None:
        if not key_fields:
            raise InvalidRequestError("an entity key needs at least one join key.")
        if len(key_fields) > 255:
            raise InvalidRequestError("an entity key has at most 255 join keys.")
        fields = sorted(key_fields, key=lambda f: f.name)
        self.fields: tuple[Field, ...] = tuple(fields)
        self.names: tuple[str, ...] = tuple(f.name for f in fields)
        self._prefix = bytes([KEY_FORMAT_VERSION, len(fields)])
        self._parts = tuple(_part_encoder(f) for f in fields)
        self._tags = tuple(_TAGS[f.dtype.name] for f in fields)
        self.encode_one = self._build_one()

    def _build_one(self) -> Callable[[Any], bytes]:
        """Fast path for views with a single join key: value -> key bytes."""
        prefix, part = self._prefix, self._parts[0]
        if len(self._parts) == 1:
            return lambda v: prefix + part(v)

        def not_single(v: Any) -> bytes:
            raise InvalidRequestError(
                f"this entity key has {len(self.names)} join keys ({', '.join(self.names)}); "
                "pass all of them."
            )

        return not_single

    def encode(self, values: Sequence[Any]) -> bytes:
        """Key bytes for one entity; ``values`` in :attr:`names` order."""
        parts = self._parts
        if len(values) != len(parts):
            raise InvalidRequestError(
                f"expected {len(parts)} join key values ({', '.join(self.names)}), got "
                f"{len(values)}."
            )
        return self._prefix + b"".join([p(v) for p, v in zip(parts, values, strict=True)])

    def encode_mapping(self, row: Mapping[str, Any]) -> bytes:
        """Key bytes for one entity given as ``{join_key: value}`` (extra names ignored)."""
        missing = [n for n in self.names if n not in row]
        if missing:
            raise InvalidRequestError(
                f"missing join key(s) {missing}; expected {list(self.names)}, got "
                f"{sorted(row)}."
            )
        return self.encode([row[n] for n in self.names])

    def encode_columns(self, columns: Mapping[str, Sequence[Any]]) -> list[bytes]:
        """Key bytes for each row of ``{join_key: values}`` columns (Python values)."""
        cols = [columns[n] for n in self.names]
        if len(cols) == 1:
            one = self.encode_one
            return [one(v) for v in cols[0]]
        prefix, parts = self._prefix, self._parts
        return [
            prefix + b"".join([p(v) for p, v in zip(parts, row, strict=True)])
            for row in zip(*cols, strict=True)
        ]

    def encode_arrow(self, data: pa.Table | pa.RecordBatch) -> list[bytes]:
        """Key bytes for each row of an Arrow table holding the join key columns.

        Fixed-width keys (integers, timestamps, floats, bools) are encoded with numpy, without
        per-row Python work; string and bytes keys go through the scalar encoders.
        """
        n = data.num_rows
        arrays: list[pa.Array] = []
        for f in self.fields:
            if f.name not in data.schema.names:
                raise InvalidRequestError(
                    f"missing join key column {f.name!r}; got columns {data.schema.names}."
                )
            col = data.column(f.name)
            arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
            if arr.null_count:
                raise InvalidRequestError(
                    f"join key column {f.name!r} has {arr.null_count} null value(s); every "
                    "row needs a key."
                )
            arrays.append(arr)
        if n == 0:
            return []
        if any(t not in _FIXED_WIDTH for t in self._tags):
            return self.encode_columns(
                {f.name: a.to_pylist() for f, a in zip(self.fields, arrays, strict=True)}
            )
        width = len(self._prefix) + sum(
            2 + len(f.name.encode()) + _FIXED_WIDTH[t]
            for f, t in zip(self.fields, self._tags, strict=True)
        )
        out = np.empty((n, width), dtype=np.uint8)
        out[:, : len(self._prefix)] = np.frombuffer(self._prefix, dtype=np.uint8)
        pos = len(self._prefix)
        for f, tag, arr in zip(self.fields, self._tags, arrays, strict=True):
            raw = f.name.encode()
            head = bytes([len(raw)]) + raw + tag
            out[:, pos : pos + len(head)] = np.frombuffer(head, dtype=np.uint8)
            pos += len(head)
            w = _FIXED_WIDTH[tag]
            out[:, pos : pos + w] = _fixed_column(f, tag, arr).reshape(n, w)
            pos += w
        buf = out.tobytes()
        return [buf[i : i + width] for i in range(0, n * width, width)]


def _fixed_column(f: Field, tag: bytes, arr: pa.Array) -> np.ndarray[Any, Any]:
    """Big-endian bytes (as uint8) of one fixed-width key column."""
    try:
        if tag == b"i":
            values = np.asarray(pc.cast(arr, pa.int64()).to_numpy())
            return values.astype(">i8").view(np.uint8)
        if tag == b"t":
            ts = pc.cast(arr, pa.timestamp("us", tz="UTC"))
            micros = np.asarray(pc.cast(ts, pa.int64()).to_numpy())
            return micros.astype(">i8").view(np.uint8)
        if tag == b"f":
            floats = np.asarray(pc.cast(arr, pa.float64()).to_numpy())
            return floats.astype(">f8").view(np.uint8)
        return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.uint8)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidRequestError(
            f"join key column {f.name!r} has type {arr.type}, expected {f.dtype.name}: {exc}"
        ) from None


class IntKeys(Sequence[bytes]):
    """The keys of a batch of entities of a view keyed by one integer join key: the values
    checked once, key bytes made only if a backend asks for them. A backend that stores such
    views by the integer itself (SQLite) reads ``ints`` (or ``array``, the same values as
    int64) and skips encoding and decoding."""

    __slots__ = ("_bytes", "_encode", "array", "ints")

    def __init__(self, ints: list[int], array: np.ndarray[Any, np.dtype[np.int64]],
                 encode: Callable[[Any], bytes]) -> None:
        self.ints = ints
        self.array = array
        self._encode = encode
        self._bytes: list[bytes] | None = None

    @classmethod
    def of(cls, values: Sequence[Any], encoder: KeyEncoder) -> IntKeys | list[bytes]:
        """``IntKeys`` when every value is a plain int in int64 range, else the encoded
        keys (which raise the usual error for a bad value)."""
        n = len(values)
        if isinstance(values, list) and list(map(type, values)).count(int) == n:
            try:
                return cls(values, np.fromiter(values, dtype=np.int64, count=n),
                           encoder.encode_one)
            except OverflowError:  # out of int64 range: the encoder says so
                pass
        return [encoder.encode_one(v) for v in values]

    def _all(self) -> list[bytes]:
        if self._bytes is None:
            one = self._encode
            if len(self.ints) < 16:
                self._bytes = [one(v) for v in self.ints]
            else:  # the same key bytes, the integers packed by numpy (big-endian int64)
                lead = one(self.ints[0])[:-8]
                raw = self.array.astype(">i8").tobytes()
                self._bytes = [lead + raw[i : i + 8] for i in range(0, len(raw), 8)]
                if self._bytes[0] != one(self.ints[0]):  # not the layout assumed: encode
                    self._bytes = [one(v) for v in self.ints]
        return self._bytes

    def split(self) -> tuple[bytes, np.ndarray[Any, np.dtype[np.uint8]]] | None:
        """(the bytes every key starts with, each key's value as 8 big-endian bytes: the
        rows of an ``(n, 8)`` uint8 array): the keys without a bytes object per key; None
        when they are not laid out as ``_all`` assumes."""
        first = self._encode(self.ints[0])
        values = self.array.astype(">i8").view(np.uint8).reshape(-1, 8)
        if first[-8:] != values[0].tobytes():
            return None
        return first[:-8], values

    def __len__(self) -> int:
        return len(self.ints)

    @overload
    def __getitem__(self, i: int) -> bytes: ...

    @overload
    def __getitem__(self, i: slice) -> list[bytes]: ...

    def __getitem__(self, i: int | slice) -> bytes | list[bytes]:
        return self._all()[i]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._all())


def decode_key(key: bytes) -> dict[str, Any]:
    """The ``{join_key: value}`` a key encodes (for debugging and backend maintenance)."""
    if not key or key[0] != KEY_FORMAT_VERSION:
        raise InvalidRequestError(f"not a version-{KEY_FORMAT_VERSION} entity key: {key!r}")
    count, pos, out = key[1], 2, {}
    for _ in range(count):
        ln = key[pos]
        name = key[pos + 1 : pos + 1 + ln].decode()
        pos += 1 + ln
        tag = key[pos : pos + 1]
        pos += 1
        value: Any
        if tag == b"i":
            (value,) = _Q.unpack_from(key, pos)
            pos += 8
        elif tag == b"t":
            (micros,) = _Q.unpack_from(key, pos)
            value = _EPOCH + timedelta(microseconds=micros)
            pos += 8
        elif tag == b"f":
            (value,) = _D.unpack_from(key, pos)
            pos += 8
        elif tag == b"?":
            value = key[pos] == 1
            pos += 1
        else:
            (ln,) = _L.unpack_from(key, pos)
            raw = key[pos + 4 : pos + 4 + ln]
            value = raw.decode() if tag == b"s" else bytes(raw)
            pos += 4 + ln
        out[name] = value
    if pos != len(key):
        raise InvalidRequestError(f"trailing bytes after entity key: {key!r}")
    return out


_ENCODERS: dict[tuple[tuple[str, str], ...], KeyEncoder] = {}


def encoder_for(key_fields: Sequence[Field]) -> KeyEncoder:
    """The (cached) encoder for these join key fields."""
    k = tuple((f.name, f.dtype.name) for f in key_fields)
    enc = _ENCODERS.get(k)
    if enc is None:
        enc = _ENCODERS[k] = KeyEncoder(key_fields)
    return enc
