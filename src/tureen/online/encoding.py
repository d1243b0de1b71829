"""Value encoding of one stored row: a view's features for one entity plus its timestamps.

Shared by every online backend (the bytes are opaque to them) and decoded on the hot path of
``get_online_features``. No pickle: a value read from a shared store can never run code.
Format (version 1)::

    row     := header layout nulls fixed var
    header  := 0x01 event:u64 created:u64 layout_len:u16     (big-endian, 19 bytes)
    layout  := (name_len:u8 name:utf8 tag [element_tag])*    the features, in schema order
    nulls   := bitmap, bit i (little-endian bit order) set when feature i is null
    fixed   := little-endian packed values of the fixed-width features, in layout order
               (Int32 '<i', Int64 '<q', Float32 '<f', Float64 '<d', Bool '<?',
               UnixTimestamp '<q' µs since the epoch UTC); a null is stored as zero
    var     := for each non-null variable-width feature, in layout order: len:u32le payload
               String: UTF-8; Bytes: raw; Array: count:u32le flags:u8 [element null bitmap
               when flags & 1] then the elements (fixed: packed; String/Bytes: len:u32le + raw)

Timestamps in the header are µs since the epoch with the sign bit flipped, so ``row[1:17]``
compares bytewise exactly like ``(event_ts, created_ts)``: a backend (e.g. a Redis Lua
script) can enforce "a write never replaces a newer event" without decoding. A missing
created timestamp is stored as the smallest int64 and decodes to None.

Rows carry their layout, so a row written before a view gained or lost a feature still
decodes (features it lacks read as None); decoders are compiled once per layout and cached.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tureen.definitions import Field
from tureen.errors import InvalidRequestError
from tureen.types import DType

ROW_FORMAT_VERSION = 1
HEADER = struct.Struct(">BQQH")
HEADER_SIZE = HEADER.size
SIGN = 1 << 63
NO_CREATED = -(1 << 63)
EVENT_COLUMN = "event_timestamp"
CREATED_COLUMN = "created_timestamp"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_U32 = struct.Struct("<I")
_EVENT = struct.Struct(">Q")
_ARR_HEAD = struct.Struct("<IB")

# dtype name -> (tag, struct code or "" for variable width, storage Arrow type)
_SCALAR: dict[str, tuple[bytes, str, pa.DataType]] = {
    "Int32": (b"i", "i", pa.int32()),
    "Int64": (b"l", "q", pa.int64()),
    "Float32": (b"f", "f", pa.float32()),
    "Float64": (b"d", "d", pa.float64()),
    "Bool": (b"?", "?", pa.bool_()),
    "UnixTimestamp": (b"t", "q", pa.int64()),
    "String": (b"s", "", pa.string()),
    "Bytes": (b"b", "", pa.binary()),
}
_CODE_OF_TAG = {tag: code for tag, code, _ in _SCALAR.values()}
_ARRAY_TAG = b"A"


def micros_to_datetime(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _tag_of(dtype: DType) -> bytes:
    if dtype.element is not None:
        return _ARRAY_TAG + _SCALAR[dtype.element.name][0]
    return _SCALAR[dtype.name][0]


def layout_bytes(fields: Sequence[Field]) -> bytes:
    """The layout section describing ``fields`` (the view's features, in schema order)."""
    out = bytearray()
    for f in fields:
        raw = f.name.encode()
        if len(raw) > 255:
            raise InvalidRequestError(f"feature name {f.name[:40]!r}... exceeds 255 bytes.")
        out += bytes([len(raw)]) + raw + _tag_of(f.dtype)
    if len(out) > 0xFFFF:
        raise InvalidRequestError("a feature view's layout exceeds 64 KiB; split the view.")
    return bytes(out)


def fixed_width(fields: Sequence[Field]) -> bool:
    """True when every field is stored in a fixed number of bytes (numbers, bools,
    timestamps): the rows of such fields all have one length."""
    return all(f.dtype.element is None and _SCALAR[f.dtype.name][1] for f in fields)


def parse_layout(layout: bytes) -> list[tuple[str, bytes]]:
    """(name, tag) for each feature a layout section describes."""
    out: list[tuple[str, bytes]] = []
    pos = 0
    while pos < len(layout):
        ln = layout[pos]
        name = layout[pos + 1 : pos + 1 + ln].decode()
        pos += 1 + ln
        tag = layout[pos : pos + 1]
        pos += 1
        if tag == _ARRAY_TAG:
            tag += layout[pos : pos + 1]
            pos += 1
        out.append((name, tag))
    return out


# ---- encoding (vectorized over an Arrow table) ----------------------------------------------


@dataclass(frozen=True)
class EncodedRows:
    """Encoded rows plus their timestamps as Python ints (µs UTC; NO_CREATED if unknown)."""

    values: list[bytes]
    event_us: list[int]
    created_us: list[int]


def _micros_column(table: pa.Table | pa.RecordBatch, name: str, required: bool) -> np.ndarray[
    Any, Any
]:
    n = table.num_rows
    if name not in table.schema.names:
        if required:
            raise InvalidRequestError(
                f"rows to store need a {name!r} column; got {table.schema.names}."
            )
        return np.full(n, NO_CREATED, dtype=np.int64)
    col = table.column(name)
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_timestamp(arr.type):
        arr = pc.cast(arr, pa.timestamp("us", tz="UTC"), safe=False)
    elif not pa.types.is_null(arr.type) and not pa.types.is_integer(arr.type):
        raise InvalidRequestError(
            f"column {name!r} must be a timestamp (or int64 µs), got {arr.type}."
        )
    if arr.null_count:
        if required:
            raise InvalidRequestError(f"column {name!r} has null timestamps; every row needs one.")
        arr = pc.cast(arr, pa.int64()).fill_null(NO_CREATED)
    return np.asarray(pc.cast(arr, pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)


def _fixed_bytes(arr: pa.Array, dtype: DType, code: str, storage: pa.DataType) -> np.ndarray[
    Any, Any
]:
    if dtype.name == "UnixTimestamp":
        arr = pc.cast(pc.cast(arr, pa.timestamp("us", tz="UTC"), safe=False), pa.int64())
    elif arr.type != storage:
        arr = pc.cast(arr, storage)
    if arr.null_count:
        arr = arr.fill_null(False if code == "?" else 0)
    values = np.asarray(arr.to_numpy(zero_copy_only=False))
    return values.astype(np.dtype(code).newbyteorder("<")).view(np.uint8)


def _var_encoder(dtype: DType) -> Callable[[Any], bytes]:
    """Encoder of one non-null variable-width value (as produced by ``to_pylist``)."""
    pack_u32 = _U32.pack
    if dtype.name == "String":
        def enc_str(v: str) -> bytes:
            b = v.encode()
            return pack_u32(len(b)) + b
        return enc_str
    if dtype.name == "Bytes":
        return lambda v: pack_u32(len(v)) + v
    assert dtype.element is not None
    elem = dtype.element
    _, code, _ = _SCALAR[elem.name]
    elem_var = _var_encoder(elem) if not code else None

    def enc_array(items: list[Any]) -> bytes:
        cnt = len(items)
        nulls = [i for i, x in enumerate(items) if x is None]
        head = _ARR_HEAD.pack(cnt, 1 if nulls else 0)
        if nulls:
            bits = np.zeros(cnt, dtype=bool)
            bits[nulls] = True
            head += np.packbits(bits, bitorder="little").tobytes()
        if elem_var is not None:
            body = b"".join([elem_var(x) for x in items if x is not None])
        else:
            fill: Any = False if code == "?" else 0
            body = struct.pack(f"<{cnt}{code}", *[fill if x is None else x for x in items])
        payload = head + body
        return pack_u32(len(payload)) + payload

    return enc_array


def _var_column(arr: pa.Array, dtype: DType) -> list[bytes | None]:
    if dtype.element is not None:
        storage = _SCALAR[dtype.element.name][2]
        if dtype.element.name == "UnixTimestamp":
            arr = pc.cast(arr, pa.list_(pa.timestamp("us", tz="UTC")), safe=False)
        arr = pc.cast(arr, pa.list_(storage))
    else:
        arr = pc.cast(arr, _SCALAR[dtype.name][2])
    enc = _var_encoder(dtype)
    return [None if v is None else enc(v) for v in arr.to_pylist()]


def encode_rows(features: Sequence[Field], table: pa.Table | pa.RecordBatch) -> EncodedRows:
    """Encode every row of ``table`` (feature columns named like ``features``, plus
    ``event_timestamp`` and optionally ``created_timestamp``; other columns are ignored).

    Columns must already hold the declared types or types castable to them (ingestion
    validates user data first). Fixed-width features are encoded with numpy, not per row.
    """
    n = table.num_rows
    event = _micros_column(table, EVENT_COLUMN, required=True)
    created = _micros_column(table, CREATED_COLUMN, required=False)
    if n == 0:
        return EncodedRows([], [], [])
    layout = layout_bytes(features)
    nb = (len(features) + 7) // 8
    fixed_parts: list[np.ndarray[Any, Any]] = []
    var_cols: list[list[bytes | None]] = []
    nulls = np.zeros((n, max(len(features), 1)), dtype=bool)
    for i, f in enumerate(features):
        if f.name not in table.schema.names:
            raise InvalidRequestError(
                f"rows to store lack feature column {f.name!r}; got {table.schema.names}."
            )
        col = table.column(f.name)
        arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        if arr.null_count:
            nulls[:, i] = np.asarray(arr.is_null().to_numpy(zero_copy_only=False))
        if f.dtype.element is None and _SCALAR[f.dtype.name][1]:
            _, code, storage = _SCALAR[f.dtype.name]
            fixed_parts.append(_fixed_bytes(arr, f.dtype, code, storage).reshape(n, -1))
        else:
            var_cols.append(_var_column(arr, f.dtype))

    head = np.empty((n, HEADER_SIZE), dtype=np.uint8)
    head[:, 0] = ROW_FORMAT_VERSION
    flip = np.uint64(SIGN)
    head[:, 1:9] = (event.view(np.uint64) ^ flip).astype(">u8").view(np.uint8).reshape(n, 8)
    head[:, 9:17] = (created.view(np.uint64) ^ flip).astype(">u8").view(np.uint8).reshape(n, 8)
    head[:, 17:19] = np.frombuffer(len(layout).to_bytes(2, "big"), dtype=np.uint8)
    parts = [head, np.broadcast_to(np.frombuffer(layout, dtype=np.uint8), (n, len(layout)))]
    parts.append(np.packbits(nulls, axis=1, bitorder="little")[:, :nb])
    parts.extend(fixed_parts)
    matrix = np.ascontiguousarray(np.concatenate(parts, axis=1))
    width = matrix.shape[1]
    buf = matrix.tobytes()
    rows = [buf[i : i + width] for i in range(0, n * width, width)]
    if var_cols:
        rows = [
            r + b"".join([v for v in vs if v is not None])
            for r, vs in zip(rows, zip(*var_cols, strict=True), strict=True)
        ]
    return EncodedRows(rows, event.tolist(), created.tolist())


# ---- decoding ---------------------------------------------------------------------------------

Decoder = Callable[[bytes, int], Sequence[Any]]


def _var_reader(tag: bytes) -> Callable[[bytes, int], tuple[Any, int]]:
    unpack_u32 = _U32.unpack_from
    if tag == b"s":
        def read_str(b: bytes, pos: int) -> tuple[Any, int]:
            (ln,) = unpack_u32(b, pos)
            end = pos + 4 + ln
            return b[pos + 4 : end].decode(), end
        return read_str
    if tag == b"b":
        def read_bytes(b: bytes, pos: int) -> tuple[Any, int]:
            (ln,) = unpack_u32(b, pos)
            end = pos + 4 + ln
            return bytes(b[pos + 4 : end]), end
        return read_bytes
    elem = tag[1:2]
    code = _CODE_OF_TAG[elem]
    elem_reader = _var_reader(elem) if not code else None
    is_ts = elem == b"t"
    size = struct.calcsize(code) if code else 0

    def read_array(b: bytes, pos: int) -> tuple[Any, int]:
        (ln,) = unpack_u32(b, pos)
        end = pos + 4 + ln
        cnt, flags = _ARR_HEAD.unpack_from(b, pos + 4)
        p = pos + 9
        null_idx: list[int] = []
        if flags & 1:
            nbytes = (cnt + 7) // 8
            bits = np.unpackbits(np.frombuffer(b, np.uint8, nbytes, p), bitorder="little")
            null_idx = np.flatnonzero(bits[:cnt]).tolist()
            p += nbytes
        items: list[Any]
        if elem_reader is not None:
            items = [None] * cnt
            skip = set(null_idx)
            for i in range(cnt):
                if i not in skip:
                    items[i], p = elem_reader(b, p)
        else:
            items = list(struct.unpack_from(f"<{cnt}{code}", b, p))
            p += cnt * size
            for i in null_idx:
                items[i] = None
            if is_ts:
                items = [None if x is None else micros_to_datetime(x) for x in items]
        return items, end

    return read_array


def compile_decoder(layout: bytes, wanted: Sequence[str]) -> Decoder:
    """A function ``(row, pos) -> values of wanted features`` for rows with this layout.

    ``pos`` is where the null bitmap starts (right after the layout). Wanted features the
    layout lacks decode as None.
    """
    entries = parse_layout(layout)
    names = [n for n, _ in entries]
    nb = (len(entries) + 7) // 8
    fixed = [(i, t) for i, (_, t) in enumerate(entries) if len(t) == 1 and _CODE_OF_TAG[t]]
    var = [(i, t) for i, (_, t) in enumerate(entries) if (i, t) not in fixed]
    fixed_struct = struct.Struct("<" + "".join(_CODE_OF_TAG[t] for _, t in fixed))
    slot = {e: j for j, (e, _) in enumerate(fixed)}
    slot.update({e: len(fixed) + j for j, (e, _) in enumerate(var)})
    missing = len(entries)
    idx = [slot[names.index(w)] if w in names else missing for w in wanted]
    ts_out = [o for o, w in enumerate(wanted) if w in names and entries[names.index(w)][1] == b"t"]
    var_readers = [(e, _var_reader(t)) for e, t in var]
    fixed_bits = [(e, slot[e]) for e, _ in fixed]
    unpack_fixed, fixed_size = fixed_struct.unpack_from, fixed_struct.size
    no_nulls = bytes(nb)

    if not var and not ts_out:
        # The common hot path: numbers only. ``startswith`` checks the null bitmap without
        # copying it; with no nulls and every feature wanted in stored order, the unpacked
        # tuple is the answer as is.
        in_order = idx == list(range(len(entries)))
        pick: Callable[[Sequence[Any]], Sequence[Any]]
        if len(idx) == 0:
            pick = lambda vals: ()  # noqa: E731
        elif len(idx) == 1:
            only = idx[0]
            pick = lambda vals: (vals[only],)  # noqa: E731
        else:
            pick = itemgetter(*idx)

        def decode_fixed(b: bytes, pos: int) -> Sequence[Any]:
            if b.startswith(no_nulls, pos):
                if in_order:
                    return unpack_fixed(b, pos + nb)
                return pick((*unpack_fixed(b, pos + nb), None))
            lst = [*unpack_fixed(b, pos + nb), None]
            bits = int.from_bytes(b[pos : pos + nb], "little")
            for e, s in fixed_bits:
                if bits >> e & 1:
                    lst[s] = None
            return pick(lst) if not in_order else lst[:-1]

        return decode_fixed

    def decode_any(b: bytes, pos: int) -> list[Any]:
        bits = int.from_bytes(b[pos : pos + nb], "little")
        p = pos + nb
        vals = list(unpack_fixed(b, p))
        p += fixed_size
        for e, reader in var_readers:
            if bits >> e & 1:
                vals.append(None)
            else:
                v, p = reader(b, p)
                vals.append(v)
        vals.append(None)
        if bits:
            for e, s in fixed_bits:
                if bits >> e & 1:
                    vals[s] = None
        out = [vals[i] for i in idx]
        for o in ts_out:
            if out[o] is not None:
                out[o] = micros_to_datetime(out[o])
        return out

    return decode_any


class RowReader:
    """Decodes stored rows into the ``wanted`` features; one per (view, feature list).

    ``read(row) -> (event_us, values)``; decoders are compiled per layout on first sight,
    and rows with the same layout as the previous one skip the layout lookup entirely.
    """

    __slots__ = ("_decoders", "_last", "wanted")

    def __init__(self, wanted: Sequence[str]) -> None:
        self.wanted = tuple(wanted)
        self._decoders: dict[bytes, Decoder] = {}
        # (layout length + layout bytes, where values start, decoder) of the last row read;
        # one tuple, swapped atomically, so concurrent readers never mix two layouts.
        self._last: tuple[bytes, int, Decoder] = (b"\xff", 0, compile_decoder(b"", ()))

    def read(self, row: bytes) -> tuple[int, Sequence[Any]]:
        layout_key, end, dec = self._last
        if row[0] == ROW_FORMAT_VERSION and row.startswith(layout_key, 17):
            return _EVENT.unpack_from(row, 1)[0] - SIGN, dec(row, end)
        version, event, _, ln = HEADER.unpack_from(row)
        end = HEADER_SIZE + ln
        layout = row[HEADER_SIZE:end]
        known = self._decoders.get(layout)
        if known is None:
            if version != ROW_FORMAT_VERSION:
                raise InvalidRequestError(
                    f"stored row has format version {version}; this tureen reads version "
                    f"{ROW_FORMAT_VERSION}. Upgrade tureen or re-materialize the view."
                )
            known = self._decoders[layout] = compile_decoder(layout, self.wanted)
        self._last = (row[17:end], end, known)
        return event - SIGN, known(row, end)


@dataclass(frozen=True)
class DecodedRow:
    event_us: int
    created_us: int | None
    values: dict[str, Any]

    @property
    def event_timestamp(self) -> datetime:
        return micros_to_datetime(self.event_us)

    @property
    def created_timestamp(self) -> datetime | None:
        return None if self.created_us is None else micros_to_datetime(self.created_us)


def decode_row(row: bytes) -> DecodedRow:
    """Decode every feature of one stored row (for tests, tools and maintenance)."""
    version, event, created, ln = HEADER.unpack_from(row)
    if version != ROW_FORMAT_VERSION:
        raise InvalidRequestError(f"stored row has unknown format version {version}.")
    layout = row[HEADER_SIZE : HEADER_SIZE + ln]
    names = [n for n, _ in parse_layout(layout)]
    values = list(compile_decoder(layout, names)(row, HEADER_SIZE + ln))
    created_us = created - SIGN
    return DecodedRow(
        event - SIGN,
        None if created_us == NO_CREATED else created_us,
        dict(zip(names, values, strict=True)),
    )


def event_micros(row: bytes) -> int:
    """The event timestamp (µs UTC) of a stored row, without decoding its values."""
    return int(HEADER.unpack_from(row)[1]) - SIGN


def order_prefix(row: bytes) -> bytes:
    """Bytes that compare like ``(event_ts, created_ts)``: newer rows compare greater."""
    return row[1:17]
