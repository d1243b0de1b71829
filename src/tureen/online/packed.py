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
