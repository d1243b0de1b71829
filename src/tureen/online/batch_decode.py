"""Decoding many stored rows of one view at once, for batch online reads.

Rows of one view written by one layout of numbers only (Int32/Int64/Float32/Float64/Bool/
UnixTimestamp features, the common case) have one length and the same bytes everywhere but
their timestamps, null bitmap and values (:mod:`tureen.online.encoding`). Such rows are
joined into one buffer and read as a numpy structured array: one pass per feature instead of
one ``struct.unpack`` per row. Anything else (strings, arrays, rows of several layouts or
lengths) returns None and the caller decodes row by row, with the same result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tureen.online.encoding import (
    HEADER,
    HEADER_SIZE,
    ROW_FORMAT_VERSION,
    SIGN,
    RowReader,
    micros_to_datetime,
    parse_layout,
)
from tureen.online.packed import Index, PackedRows

#: below this many rows, decoding row by row is as fast
MIN_ROWS = 8
#: one feature's values: a numpy array (no nulls) or a list (nulls as None)
Column = np.ndarray[Any, Any] | list[Any]
#: event µs of the rows of a batch
Events = np.ndarray[Any, np.dtype[np.int64]]
_SIGN = np.uint64(SIGN)
_FIXED = {b"i": "<i4", b"l": "<i8", b"f": "<f4", b"d": "<f8", b"?": "?", b"t": "<i8"}


@dataclass(frozen=True)
class _Plan:
    dtype: np.dtype[Any]
    row: np.dtype[Any]  # one row as opaque bytes, to gather rows by index
    layout: bytes
    nulls: int  # bytes of null bitmap
    # per wanted feature: (field name, index in the layout, is a timestamp) or None if absent
    columns: tuple[tuple[str, int, bool] | None, ...]
    # when every value has one type: (where the values start, where they end, numpy type)
    block: tuple[int, int, str] | None
    # the block's rows are exactly the wanted features, in order (none absent or a
    # timestamp): without nulls, the columns are the block's rows as they are
    whole_block: bool


_PLANS: dict[tuple[tuple[str, ...], bytes, int], _Plan | None] = {}


def row_plan(wanted: tuple[str, ...], row: bytes) -> _Plan | None:
    _, _, _, ln = HEADER.unpack_from(row)
    layout = row[HEADER_SIZE:HEADER_SIZE + ln]
    key = (wanted, layout, len(row))
    if key in _PLANS:
        return _PLANS[key]
    entries = parse_layout(layout)
    plan: _Plan | None = None
    if all(t in _FIXED for _, t in entries):
        nb = (len(entries) + 7) // 8
        start = HEADER_SIZE + ln
        names: list[str] = ["ev", "layout", "nulls"]
        formats: list[Any] = [">u8", f"S{ln}" if ln else "V0", (np.uint8, (nb,)) if nb else "V0"]
        offsets = [1, HEADER_SIZE, start]
        pos = start + nb
        for j, (_, tag) in enumerate(entries):
            names.append(f"v{j}")
            formats.append(_FIXED[tag])
            offsets.append(pos)
            pos += np.dtype(_FIXED[tag]).itemsize
        if pos == len(row):
            dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets,
                              "itemsize": len(row)})
            index = {name: j for j, (name, _) in enumerate(entries)}
            columns = tuple(
                (f"v{index[w]}", index[w], entries[index[w]][1] == b"t") if w in index else None
                for w in wanted
            )
            codes = {_FIXED[tag] for _, tag in entries}
            block = ((start + nb, pos, codes.pop())
                     if len(codes) == 1 and len(entries) > 1 else None)
            whole = block is not None and columns == tuple(
                (f"v{j}", j, False) for j in range(len(entries)))
            plan = _Plan(dtype, np.dtype(f"V{len(row)}"), layout, nb, columns, block, whole)
    if len(_PLANS) > 4096:
        _PLANS.clear()
    _PLANS[key] = plan
    return plan


_WIDTHS: dict[bytes, int | None] = {}


def row_width(data: bytes, at: int = 0) -> tuple[int, int] | None:
    """(the length of the row starting at ``data[at]``, its layout's length) when its
    layout is one of numbers only (which fixes the length), else None."""
    if len(data) < at + HEADER_SIZE or data[at] != ROW_FORMAT_VERSION:
        return None
    ln = int.from_bytes(data[at + HEADER_SIZE - 2 : at + HEADER_SIZE], "big")
    head = data[at + HEADER_SIZE - 2 : at + HEADER_SIZE + ln]  # the layout's length, layout
    width = _WIDTHS.get(head, -1)
    if width == -1:
        entries = parse_layout(head[2:])
        width = None
        if all(t in _FIXED for _, t in entries):
            width = HEADER_SIZE + ln + (len(entries) + 7) // 8 + sum(
                np.dtype(_FIXED[t]).itemsize for _, t in entries)
        if len(_WIDTHS) > 4096:
            _WIDTHS.clear()
        _WIDTHS[head] = width
    return None if width is None else (width, ln)


def packed_width(data: bytes) -> int | None:
    """The length of each of the rows ``data`` holds back to back, or None unless the first
    row's layout is one of numbers only and every row has that layout. Such a layout fixes
    a row's length, so a row that starts where the one before it ends and has the layout
    ends where the next one starts: the rows are exactly the slices of that length."""
    first = row_width(data)
    if first is None or len(data) % first[0]:
        return None
    width, ln = first
    head = data[HEADER_SIZE - 2 : HEADER_SIZE + ln]
    count = len(data) // width
    grid = np.frombuffer(data, np.uint8).reshape(count, width)
    if bool((grid[:, 0] != ROW_FORMAT_VERSION).any()):
        return None
    if grid[:, HEADER_SIZE - 2 : HEADER_SIZE + ln].tobytes() != head * count:
        return None
    return width


def read_columns(
    reader: RowReader, rows: Sequence[bytes]
) -> tuple[list[int], list[Column]] | None:
    """(event µs per row, the values of each wanted feature) of ``rows``, or None when they
    cannot be read as one array (then decode them with ``reader.read``). A feature without
    nulls comes as a numpy array (Python objects are only made if someone asks: see
    ``OnlineColumn``), one with nulls or of timestamps as a list. ``PackedRows`` (every key
    found) are read from their buffer."""
    n = len(rows)
    if n < MIN_ROWS:
        return None
    if isinstance(rows, PackedRows):
        if rows.missing:
            return None
        return read_packed(reader, rows.data, rows.width, rows.slots, rows.one_layout)
    return read_packed(reader, b"".join(rows), len(rows[0]), None)


def read_packed(
    reader: RowReader, data: bytes, width: int, take: Index | None, checked: bool = False
) -> tuple[list[int], list[Column]] | None:
    """``read_columns`` of the ``width``-byte rows ``data`` holds, those at ``take`` in that
    order (all of them when None); None unless ``packed_width(data)`` is ``width`` (which
    ``checked`` says the caller already knows)."""
    found = read_block(reader, data, width, take, checked)
    if found is None:
        return None
    return found[0].tolist(), found[1]


def read_block(
    reader: RowReader, data: bytes, width: int, take: Index | None, checked: bool = False
) -> tuple[Events, list[Column]] | None:
    """``read_packed`` with the event µs as an int64 array (a TTL check is then one
    ``min``, and Python ints are made only once)."""
    if not checked and packed_width(data) != width:
        return None
    plan = row_plan(reader.wanted, data[:width])
    if plan is None:
        return None
    rows = np.frombuffer(data, dtype=plan.row)
    if take is not None:  # one memcpy per row, then read through the structured dtype
        rows = rows[take]
    arr = rows.view(plan.dtype)
    n = len(arr)
    events: Events = (arr["ev"] ^ _SIGN).view(np.int64)
    nulls = arr["nulls"] if plan.nulls else None
    has_nulls = nulls is not None and np.count_nonzero(nulls) > 0
    block = None
    if plan.block is not None:  # every value column in one copy (rows -> columns)
        start, stop, code = plan.block
        block = np.ascontiguousarray(rows.view(np.uint8).reshape(n, width)[:, start:stop]
                                     .view(code).T)
        if plan.whole_block and not has_nulls:
            return events, list(block)
    columns: list[Column] = []
    for col in plan.columns:
        if col is None:
            columns.append([None] * n)
            continue
        field, index, is_ts = col
        null_rows = (np.flatnonzero(nulls[:, index // 8] >> (index % 8) & 1)
                     if has_nulls and nulls is not None else None)
        values_of = arr[field] if block is None else block[index]
        if not is_ts and (null_rows is None or not null_rows.size):
            columns.append(np.ascontiguousarray(values_of))
            continue
        values: list[Any] = values_of.tolist()
        for i in (null_rows.tolist() if null_rows is not None else ()):
            values[i] = None
        if is_ts:
            values = [None if v is None else micros_to_datetime(v) for v in values]
        columns.append(values)
    return events, columns
