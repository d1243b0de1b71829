"""PackedRows: a batch of stored rows of one length, read back as one buffer.

A backend that can return the rows of a batch read concatenated (SQLite: one aggregate over
the lookups) hands them over as ``PackedRows`` instead of one ``bytes`` object per key: a
``Sequence[bytes | None]`` like any read result, so every caller works unchanged, plus the
buffer and an index that batch decoding (:mod:`tureen.online.batch_decode`) reads directly
with numpy, without making a Python object per row.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

import numpy as np

Index = np.ndarray[Any, np.dtype[np.int64]]


class PackedRows(Sequence[bytes | None]):
    """Rows aligned with the keys of a read: key ``i``'s row is ``data[slots[i] * width :
    (slots[i] + 1) * width]``, or None when ``slots[i]`` is -1 (not found). Several keys may
    share a row (repeated keys)."""

    __slots__ = ("data", "missing", "one_layout", "slots", "width")

    def __init__(self, data: bytes, width: int, slots: Index, one_layout: bool = False,
                 missing: int | None = None) -> None:
        if (data and width <= 0) or (width > 0 and len(data) % width):
            raise ValueError(f"{len(data)} bytes is not a whole number of {width}-byte rows.")
        self.data = data
        self.width = width
        self.slots = slots
        #: how many keys were not found (counted here unless the maker knows it)
        self.missing = int(np.count_nonzero(slots < 0)) if missing is None else missing
        #: the maker checked that every row has one layout (``batch_decode.packed_width``)
        self.one_layout = one_layout

    def __len__(self) -> int:
        return len(self.slots)

    @overload
    def __getitem__(self, i: int) -> bytes | None: ...

    @overload
    def __getitem__(self, i: slice) -> list[bytes | None]: ...

    def __getitem__(self, i: int | slice) -> bytes | list[bytes | None] | None:
        if isinstance(i, slice):
            return [self._row(int(j)) for j in self.slots[i]]
        return self._row(int(self.slots[i]))

    def _row(self, j: int) -> bytes | None:
        if j < 0:
            return None
        return self.data[j * self.width : (j + 1) * self.width]

    def __iter__(self) -> Iterator[bytes | None]:
        row = self._row
        return iter([row(j) for j in self.slots.tolist()])

    def __contains__(self, value: object) -> bool:
        if value is None:
            return self.missing > 0
        return any(r == value for r in self)

    @classmethod
    def of(cls, rows: Sequence[bytes | None]) -> PackedRows | None:
        """``rows`` packed, or None when the rows found differ in length (tests, adapters)."""
        found = [r for r in rows if r is not None]
        width = len(found[0]) if found else 0
        if any(len(r) != width for r in found):
            return None
        index = np.full(len(rows), -1, dtype=np.int64)
        index[[i for i, r in enumerate(rows) if r is not None]] = np.arange(len(found))
        return cls(b"".join(found), width, index)


class VectorBlock:
    """The rows of several views of the same keys side by side, one row per entity found
    (a per-service vector read in one piece): ``grid[k]`` is ``segments`` long rows back
    to back, view ``i``'s at ``offsets[i]`` and ``widths[i]`` bytes long, every row of one
    view with one layout (checked by the maker). ``slots`` as in ``PackedRows``."""

    __slots__ = ("grid", "layouts", "offsets", "slots", "widths")

    def __init__(self, grid: np.ndarray[Any, np.dtype[np.uint8]], offsets: tuple[int, ...],
                 widths: tuple[int, ...], slots: Index, layouts: bytes) -> None:
        self.grid = grid
        self.offsets = offsets
        self.widths = widths
        self.slots = slots
        #: the views' layouts (with ``offsets`` and ``widths``, what decoding depends on)
        self.layouts = layouts


class VectorRead(Sequence[Sequence[bytes | None]]):
    """A read's rows per view, as any read answers (``PackedRows``, cut from the block on
    first use), and ``block``: the same rows side by side, for decoding every view at
    once."""

    __slots__ = ("_missing", "_views", "block")

    def __init__(self, block: VectorBlock, missing: int) -> None:
        self.block = block
        self._views: list[PackedRows] | None = None
        self._missing = missing

    def _cut(self) -> list[PackedRows]:
        if self._views is None:
            b = self.block
            self._views = [
                PackedRows(np.ascontiguousarray(b.grid[:, off : off + w]).tobytes(), w,
                           b.slots, one_layout=True, missing=self._missing)
                for off, w in zip(b.offsets, b.widths, strict=True)]
        return self._views

    def __len__(self) -> int:
        return len(self.block.widths)

    @overload
    def __getitem__(self, i: int) -> PackedRows: ...

    @overload
    def __getitem__(self, i: slice) -> list[PackedRows]: ...

    def __getitem__(self, i: int | slice) -> PackedRows | list[PackedRows]:
        return self._cut()[i]

    def __iter__(self) -> Iterator[PackedRows]:
        return iter(self._cut())
