"""Decoding every view of a per-service vector read at once (a ``VectorBlock``).

``join_block`` checks and lays out the rows (one per entity, its views' rows back to back:
a SQLite vector's column ``v``, or a Redis entity's fields joined).

The views' rows of one entity sit side by side in one row of the block, so one numpy
structured type over the whole row reads every view's event time, null bitmap and values:
one gather of the rows for all views, then one field access per value, instead of a
batch decode per view (:mod:`tureen.online.batch_decode`). The fast case only: every key
found in every view, no nulls, nothing past a view's TTL, no timestamp features. Anything
else returns None and the caller decodes view by view, with the same result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tureen.online.batch_decode import row_plan, row_width
from tureen.online.encoding import HEADER_SIZE, SIGN, RowReader
from tureen.online.packed import Index, VectorBlock, VectorRead
from tureen.online.response import PRESENT, FieldStatus

_SIGN = np.uint64(SIGN)
#: per view: (its values, one array per wanted feature or a list of None; statuses;
#: event µs) as ``retrieval`` keeps them
Decoded = tuple[list[Any], list[FieldStatus], list[int]]


_HEADERS: dict[tuple[tuple[int, ...], tuple[int, ...]], np.ndarray[Any, Any]] = {}


def join_block(data: bytes, count: int, views: int, slots: Index) -> VectorRead | None:
    """``count`` entities' rows of ``views`` views, each entity's back to back in view
    order, as a ``VectorRead`` (``slots``: each key's entity, -1 when not found), when
    each view's rows have one layout of numbers only; else None."""
    widths, lns = [], []
    at = 0
    for _ in range(views):
        first = row_width(data, at)
        if first is None:
            return None
        widths.append(first[0])
        lns.append(first[1])
        at += first[0]
    if len(data) != at * count:
        return None
    offsets = tuple(int(x) for x in np.cumsum([0, *widths[:-1]]))
    grid = np.frombuffer(data, np.uint8).reshape(count, at)
    key = (tuple(widths), tuple(lns))
    heads = _HEADERS.get(key)
    if heads is None:  # each row's format version, layout length and layout, per view
        heads = np.concatenate([[off, *range(off + HEADER_SIZE - 2, off + HEADER_SIZE + ln)]
                                for off, ln in zip(offsets, lns, strict=True)])
        if len(_HEADERS) > 1024:
            _HEADERS.clear()
        _HEADERS[key] = heads
    # Every row of a view with the first row's layout: then every row of it is that long,
    # and the views' rows start where the first row's do (``packed_width``).
    if not bool((grid[:, heads] == grid[0, heads]).all()):
        return None
    return VectorRead(VectorBlock(grid, offsets, tuple(widths), slots, grid[0, heads].tobytes()),
                      int(np.count_nonzero(slots < 0)))


@dataclass(frozen=True)
class _Fused:
    """Where each view's bytes are in a block row, as index arrays over its bytes."""

    events: np.ndarray[Any, Any]  # the 8 bytes of each view's event time, view after view
    nulls: np.ndarray[Any, Any]  # every byte of every view's null bitmap
    # per numpy type of the values: the bytes of those values, feature after feature
    groups: tuple[tuple[str, np.ndarray[Any, Any]], ...]
    # per view, per wanted feature: (group, column in it) or None when the row lacks it
    places: tuple[tuple[tuple[int, int] | None, ...], ...]
    keep: tuple[Any, ...]  # the per-view plans it was made from


_FUSED: dict[tuple[Any, ...], _Fused | None] = {}


def _fused(readers: Sequence[RowReader], block: VectorBlock) -> _Fused | None:
    key = (tuple(r.wanted for r in readers), block.layouts, block.offsets, block.widths)
    if key in _FUSED:
        return _FUSED[key]
    row = block.grid[0].tobytes()
    plans = tuple(row_plan(r.wanted, row[off : off + w])
                  for r, off, w in zip(readers, block.offsets, block.widths, strict=True))
    fused = None
    events: list[int] = []
    nulls: list[int] = []
    groups: dict[str, list[int]] = {}
    counts: dict[str, int] = {}
    places: list[tuple[tuple[int, int] | None, ...]] = []
    for plan, off in zip(plans, block.offsets, strict=True):
        if plan is None or any(col is not None and col[2] for col in plan.columns):
            break  # not numbers only, or a timestamp feature: read view by view
        fields: Mapping[str, Any] = plan.dtype.fields or {}
        events += range(off + 1, off + 9)
        if plan.nulls:
            at = off + fields["nulls"][1]
            nulls += range(at, at + plan.nulls)
        mine: list[tuple[int, int] | None] = []
        for col in plan.columns:
            if col is None:
                mine.append(None)
                continue
            dt, at = fields[col[0]][:2]
            code = dt.str
            groups.setdefault(code, []).extend(range(off + at, off + at + dt.itemsize))
            mine.append((list(groups).index(code), counts.get(code, 0)))
            counts[code] = counts.get(code, 0) + 1
        places.append(tuple(mine))
    else:
        fused = _Fused(np.array(events, dtype=np.intp), np.array(nulls, dtype=np.intp),
                       tuple((c, np.array(ix, dtype=np.intp)) for c, ix in groups.items()),
                       tuple(places), plans)
    if len(_FUSED) > 1024:
        _FUSED.clear()
    _FUSED[key] = fused
    return fused


def decode_block(readers: Sequence[RowReader], ttls: Sequence[int], block: VectorBlock,
                 now_us: int) -> list[Decoded] | None:
    """Each view's (values, statuses, event µs) for the keys of ``block``, or None when
    they are not the fast case (see the module docstring)."""
    slots = block.slots
    n = len(slots)
    if not n or int(slots.min()) < 0 or not len(block.grid):
        return None
    fused = _fused(readers, block)
    if fused is None:
        return None
    rows = block.grid[slots]  # one gather for every view
    if fused.nulls.size and np.count_nonzero(rows[:, fused.nulls]):
        return None
    events = (np.ascontiguousarray(rows[:, fused.events]).view(">u8") ^ _SIGN).view(np.int64)
    limits = np.array(ttls, dtype=np.int64)
    if limits.any() and bool(((now_us - events.min(axis=0) > limits) & (limits > 0)).any()):
        return None
    columns = [np.ascontiguousarray(np.ascontiguousarray(rows[:, ix]).view(code).T)
               for code, ix in fused.groups]
    present = [PRESENT] * n
    out: list[Decoded] = []
    for i, places in enumerate(fused.places):
        cols: list[Any] = [[None] * n if p is None else columns[p[0]][p[1]] for p in places]
        out.append((cols, present.copy(), events[:, i].tolist()))
    return out
