"""Windowed aggregations over event time, computed one way for streaming and for backfill.

Time is cut into tiles of ``g = gcd(slide, every window)`` microseconds; each (entity, tile)
keeps one partial per aggregation. The window ending at boundary ``b`` (a multiple of the
slide) is the union of its tiles ``[b - window, b)``. A row for (entity, ``b``) is emitted
only when the window's contents changed since the previous boundary — a tile entered or
left it — so a point-in-time join still finds the right value (the previous row holds).

Results depend only on the SET of events added, never on their order or on how they were
batched: integer sums are Python ints; float sums are kept exactly (as integers scaled by
2**1074, every double being a multiple of 2**-1074) and rounded once; ``-0.0`` is read as
``0.0`` so ``min``/``max`` cannot depend on order; ``count_distinct_approx`` counts distinct
64-bit BLAKE2b hashes of the values, switching a tile to a HyperLogLog sketch (2**14
registers) past 4,096 values. So the stream (events in arrival order, windows closed as the
watermark passes them) and a backfill (events from the offline log, closed at the end)
produce the same rows. ``tests/unit/streaming/test_windows.py`` checks both against a
brute-force oracle with hypothesis.

Late events (``late_events="update"``): ``add_late`` puts an event into its tile even when
windows it belongs to are closed, and returns the rows of the closed windows it changed,
again. Rows exist at the boundaries where a tile of the entity enters or leaves a window,
so the rows to rewrite are the entity's boundaries from the event's tile entering to its
leaving the widest window. Each row's ``created`` is its end plus the number of late events
in the tiles whose span covers it: it grows with every rewrite (the online store and a
point-in-time join take the newest), and a backfill that sees the same events, late flags
included, gives every row the same ``created`` and values as the stream's last rewrite.
Tiles are kept ``allowed_lateness`` longer so a late event finds its window's other tiles.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from tureen.definitions.stream import Aggregation, StreamFeatureView

_SCALE = 1 << 1074  # every finite double is an integer multiple of 2**-1074
_INT64 = (-(1 << 63), (1 << 63) - 1)
HLL_P = 14
HLL_M = 1 << HLL_P
EXACT_DISTINCT_LIMIT = 4096


def exact_float(v: float) -> int:
    """``v * 2**1074`` exactly, as an int."""
    n, d = v.as_integer_ratio()
    return n * (_SCALE // d)


def stable_hash(value: Any) -> int:
    """A 64-bit hash of ``value`` that is the same in every process (unlike ``hash``)."""
    if isinstance(value, str):
        raw = value.encode()
    elif isinstance(value, bytes):
        raw = value
    elif isinstance(value, float):
        raw = repr(value + 0.0).encode()
    else:
        raw = str(value).encode()
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "little")


# ---- HyperLogLog ------------------------------------------------------------------------


def hll_registers(hashes: Sequence[int] | set[int]) -> np.ndarray[Any, Any]:
    regs = np.zeros(HLL_M, dtype=np.uint8)
    if not hashes:
        return regs
    h = np.fromiter(hashes, dtype=np.uint64, count=len(hashes))
    idx = (h >> np.uint64(64 - HLL_P)).astype(np.intp)
    rest = (h << np.uint64(HLL_P)) | np.uint64(1 << (HLL_P - 1))  # guard bit bounds the rank
    # rank = leading zeros of the remaining bits + 1
    rank = np.full(len(h), 1, dtype=np.uint8)
    probe = rest.copy()
    top = np.uint64(1 << 63)
    for _ in range(64 - HLL_P):
        zero = (probe & top) == 0
        if not zero.any():
            break
        rank[zero] += 1
        probe[zero] <<= np.uint64(1)
    np.maximum.at(regs, idx, rank)
    return regs


def hll_estimate(regs: np.ndarray[Any, Any]) -> int:
    m = float(HLL_M)
    alpha = 0.7213 / (1 + 1.079 / m)
    raw = alpha * m * m / float(np.sum(np.ldexp(1.0, -regs.astype(np.int64))))
    zeros = int(np.count_nonzero(regs == 0))
    if raw <= 2.5 * m and zeros:
        return round(m * math.log(m / zeros))
    return round(raw)


# ---- partials -----------------------------------------------------------------------------


class _Distinct:
    """Distinct values of one tile: exact hashes, or HLL registers past the limit."""

    __slots__ = ("hashes", "regs")

    def __init__(self) -> None:
        self.hashes: set[int] | None = set()
        self.regs: np.ndarray[Any, Any] | None = None

    def add(self, h: int) -> None:
        if self.hashes is not None:
            self.hashes.add(h)
            if len(self.hashes) > EXACT_DISTINCT_LIMIT:
                self.regs = hll_registers(self.hashes)
                self.hashes = None
        else:
            assert self.regs is not None
            self.regs = np.maximum(self.regs, hll_registers([h]))


def _merge_distinct(parts: Sequence[_Distinct]) -> int:
    if all(p.hashes is not None for p in parts):
        union: set[int] = set()
        for p in parts:
            assert p.hashes is not None
            union |= p.hashes
        if len(union) <= EXACT_DISTINCT_LIMIT:
            return len(union)
        return hll_estimate(hll_registers(union))
    regs = np.zeros(HLL_M, dtype=np.uint8)
    for p in parts:
        other = p.regs if p.regs is not None else hll_registers(p.hashes or set())
        np.maximum(regs, other, out=regs)
    return hll_estimate(regs)


Updater = Callable[[list[Any], Any], None]
Finisher = Callable[[Sequence[list[Any]]], Any]


def _functions(agg: Aggregation, is_float: bool) -> tuple[Callable[[], list[Any]], Updater,
                                                           Finisher]:
    """(new partial, update(partial, value), finish(partials of a window)) for ``agg``.

    A partial is a small list; nulls never reach ``update``."""
    fn = agg.function
    if fn == "count":
        def upd_count(p: list[Any], v: Any) -> None:
            p[0] += 1
        return (lambda: [0]), upd_count, lambda ps: sum(p[0] for p in ps)
    if fn in ("sum", "mean"):
        conv = exact_float if is_float else int

        def upd_sum(p: list[Any], v: Any) -> None:
            p[0] += conv(v)
            p[1] += 1

        def fin_sum(ps: Sequence[list[Any]]) -> Any:
            n = sum(p[1] for p in ps)
            if not n:
                return None
            total = sum(p[0] for p in ps)
            if fn == "mean":
                return total / (_SCALE * n) if is_float else total / n
            if is_float:
                return total / _SCALE
            return total if _INT64[0] <= total <= _INT64[1] else None

        return (lambda: [0, 0]), upd_sum, fin_sum
    if fn in ("min", "max"):
        pick = min if fn == "min" else max

        def upd_ext(p: list[Any], v: Any) -> None:
            p[0] = v if p[0] is None else pick(p[0], v)

        def fin_ext(ps: Sequence[list[Any]]) -> Any:
            vals = [p[0] for p in ps if p[0] is not None]
            return pick(vals) if vals else None

        return (lambda: [None]), upd_ext, fin_ext

    def upd_distinct(p: list[Any], v: Any) -> None:
        p[0].add(stable_hash(v))

    return (lambda: [_Distinct()]), upd_distinct, lambda ps: _merge_distinct([p[0] for p in ps])


# ---- the window state ----------------------------------------------------------------------


@dataclass(frozen=True)
class WindowRows:
    """Rows emitted for closed windows: one per (entity, window end)."""

    keys: list[bytes]
    entity_values: list[tuple[Any, ...]]  # join key values, in the view's key order
    ends_us: list[int]
    values: list[list[Any]]  # one list per aggregation, aligned with the rows
    created_us: list[int] = field(default_factory=list)  # end + late events counted in it

    @classmethod
    def empty(cls, n_aggs: int) -> WindowRows:
        return cls([], [], [], [[] for _ in range(n_aggs)], [])

    def __len__(self) -> int:
        return len(self.keys)


class _Entity:
    __slots__ = ("join", "late", "tiles")

    def __init__(self, join: tuple[Any, ...]) -> None:
        self.join = join
        self.tiles: dict[int, list[list[Any]]] = {}
        self.late: dict[int, int] = {}  # tile -> late events counted in it


class WindowState:
    """Partials of every entity's live tiles for one view, and the boundaries to emit."""

    def __init__(self, view: StreamFeatureView, float_columns: set[str]) -> None:
        if not view.aggregations:
            raise ValueError(f"{view.name} has no aggregations")
        self.view = view
        self.aggs = tuple(view.aggregations)
        self.slide = view.slide_us
        self.windows = tuple(a.window_us for a in self.aggs)
        self.tile = math.gcd(self.slide, *self.windows)
        self.max_window = max(self.windows)
        self.lateness = view.allowed_lateness_us
        fns = [_functions(a, a.column in float_columns) for a in self.aggs]
        self._new = [f[0] for f in fns]
        self._update = [f[1] for f in fns]
        self._finish = [f[2] for f in fns]
        self.columns = tuple(a.column for a in self.aggs)
        self.entities: dict[bytes, _Entity] = {}
        self.by_tile: dict[int, list[bytes]] = {}
        self._tile_heap: list[int] = []
        self.pending: dict[int, set[bytes]] = {}
        self._heap: list[int] = []
        self.closed_us: int | None = None  # every window ending at or before it is emitted
        self.distinct_windows = sorted(set(self.windows))

    def _schedule(self, boundary: int, key: bytes) -> None:
        due = self.pending.get(boundary)
        if due is None:
            due = self.pending[boundary] = set()
            heapq.heappush(self._heap, boundary)
        due.add(key)

    def add(
        self,
        keys: Sequence[bytes],
        joins: Sequence[tuple[Any, ...]],
        ts_us: Sequence[int],
        columns: Mapping[str, Sequence[Any]],
        late: Sequence[bool] | None = None,
    ) -> int:
        """Add on-time events (``late``: which of them arrived late and were accepted, when
        re-reading a log); returns how many fell into an already closed window (they are
        skipped: the caller flags events behind the watermark before this)."""
        g, slide, closed = self.tile, self.slide, self.closed_us
        cols = [columns[c] for c in self.columns]
        skipped = 0
        for i, key in enumerate(keys):
            ts = int(ts_us[i])
            enter = (ts // g * g // slide + 1) * slide
            if closed is not None and enter <= closed:
                skipped += 1
                continue
            self._put(key, joins[i], ts, [c[i] for c in cols], bool(late[i]) if late else False)
        return skipped

    def _put(self, key: bytes, join: tuple[Any, ...], ts: int, values: Sequence[Any],
             late: bool) -> int:
        """Add one event to its tile (scheduling the tile's boundaries that are still
        open); returns the tile."""
        g = self.tile
        t = ts // g
        ent = self.entities.get(key)
        if ent is None:
            ent = self.entities[key] = _Entity(tuple(join))
        parts = ent.tiles.get(t)
        if parts is None:
            parts = ent.tiles[t] = [new() for new in self._new]
            holders = self.by_tile.get(t)
            if holders is None:
                holders = self.by_tile[t] = []
                heapq.heappush(self._tile_heap, t)
            holders.append(key)
            closed = self.closed_us
            for b in self._boundaries(t):
                if closed is None or b > closed:
                    self._schedule(b, key)
        if late:
            ent.late[t] = ent.late.get(t, 0) + 1
        update = self._update
        for a, v in enumerate(values):
            if v is None or (isinstance(v, float) and not math.isfinite(v)):
                continue
            if isinstance(v, float):
                v = v + 0.0
            update[a](parts[a], v)
        return t

    def _boundaries(self, t: int) -> list[int]:
        """Where tile ``t`` enters every window, then where it leaves each window size (the
        last is where it has left them all)."""
        start, slide = t * self.tile, self.slide
        return [(start // slide + 1) * slide,
                *(((start + w) // slide + 1) * slide for w in self.distinct_windows)]

    def add_late(
        self,
        keys: Sequence[bytes],
        joins: Sequence[tuple[Any, ...]],
        ts_us: Sequence[int],
        columns: Mapping[str, Sequence[Any]],
    ) -> WindowRows:
        """Add late events accepted by the view's ``allowed_lateness``; returns the rows of
        the already closed windows they changed (open ones are emitted by ``close_until``)."""
        cols = [columns[c] for c in self.columns]
        spans: dict[bytes, tuple[int, int]] = {}
        for i, key in enumerate(keys):
            bounds = self._boundaries(self._put(key, joins[i], int(ts_us[i]),
                                                [c[i] for c in cols], True))
            lo, hi = bounds[0], bounds[-1]
            if key in spans:
                lo, hi = min(lo, spans[key][0]), max(hi, spans[key][1])
            spans[key] = (lo, hi)
        out = WindowRows.empty(len(self.aggs))
        closed = self.closed_us
        if closed is None:
            return out
        for key in sorted(spans):
            lo, hi = spans[key]
            ent = self.entities[key]
            ends = sorted({b for t in ent.tiles for b in self._boundaries(t)
                           if lo <= b <= min(hi, closed)})
            for b in ends:
                self._emit(out, key, ent, b)
        return out

    def _emit(self, out: WindowRows, key: bytes, ent: _Entity, b: int) -> None:
        out.keys.append(key)
        out.entity_values.append(ent.join)
        out.ends_us.append(b)
        for a, w in enumerate(self.windows):
            lo, hi = (b - w) // self.tile, b // self.tile
            parts = [p[a] for t, p in ent.tiles.items() if lo <= t < hi]
            out.values[a].append(self._finish[a](parts))
        revisions = 0
        for t, n in ent.late.items():
            bounds = self._boundaries(t)
            if bounds[0] <= b <= bounds[-1]:
                revisions += n
        out.created_us.append(b + revisions)

    def close_until(self, watermark_us: int) -> WindowRows:
        """Emit the rows of every window ending at or before ``watermark_us`` that changed."""
        out = WindowRows.empty(len(self.aggs))
        limit = (watermark_us // self.slide) * self.slide
        while self._heap and self._heap[0] <= limit:
            b = heapq.heappop(self._heap)
            for key in sorted(self.pending.pop(b)):
                ent = self.entities.get(key)
                if ent is not None:
                    self._emit(out, key, ent, b)
            self._evict(b)
        if self.closed_us is None or limit > self.closed_us:
            self.closed_us = limit
        return out

    def _evict(self, closed: int) -> None:
        """Drop tiles no window after ``closed`` can contain, nor any a late event accepted
        ``allowed_lateness`` behind it could change (their last boundary is behind it)."""
        margin = self.lateness + self.slide if self.lateness else 0
        oldest = (closed - margin - self.max_window) // self.tile
        heap, entities = self._tile_heap, self.entities
        while heap and heap[0] < oldest:
            t = heapq.heappop(heap)
            for key in self.by_tile.pop(t):
                ent = entities.get(key)
                if ent is None:
                    continue
                ent.tiles.pop(t, None)
                ent.late.pop(t, None)
                if not ent.tiles:
                    del entities[key]

    def restore(self, closed_us: int | None) -> None:
        """After re-adding events from the offline log: windows up to ``closed_us`` were
        already emitted before the restart; forget them."""
        if closed_us is None:
            return
        while self._heap and self._heap[0] <= closed_us:
            self.pending.pop(heapq.heappop(self._heap), None)
        self.closed_us = closed_us
        self._evict(closed_us)

    def state_size(self) -> int:
        return sum(len(e.tiles) for e in self.entities.values())

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.entities)


def micros(ts: datetime) -> int:
    ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts
    delta = ts - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
