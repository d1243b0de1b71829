"""How a SQLite online-store table keys its rows (:mod:`tureen.online.sqlite_store`).

A view keyed by one integer join key gets an ``entity_id INTEGER PRIMARY KEY`` table (the
key's value: SQLite answers a batch ``IN`` of integers about twice as fast as one of blobs);
any other view an ``entity_key BLOB PRIMARY KEY`` WITHOUT ROWID table holding the canonical
key bytes (:mod:`tureen.online.keys`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tureen.definitions import FeatureView
from tureen.errors import InvalidRequestError
from tureen.online.keys import IntKeys

_INT_KEYS = frozenset({"Int32", "Int64"})


@dataclass(frozen=True)
class Layout:
    """How one table stores entity keys: the key column and the key bytes -> column value."""

    column: str
    convert: Callable[[Sequence[bytes]], list[Any]]
    ddl: str


def key_ints(keys: Sequence[bytes]) -> list[int]:
    """The value of single-integer keys (``tureen.online.keys``: the last 8 bytes, big-endian
    two's complement); read directly when the caller kept them (``IntKeys``)."""
    if isinstance(keys, IntKeys):
        return keys.ints
    if len(keys) < 16:
        return [int.from_bytes(k[-8:], "big", signed=True) for k in keys]
    width = len(keys[0])
    joined = b"".join(keys)
    if len(joined) != width * len(keys):  # keys of another shape: not this layout's
        raise InvalidRequestError("entity keys of one integer-keyed view differ in length.")
    grid = np.frombuffer(joined, dtype=np.uint8).reshape(len(keys), width)
    ints: list[int] = np.ascontiguousarray(grid[:, width - 8:]).view(">i8").ravel().tolist()
    return ints


def key_array(keys: Sequence[bytes]) -> np.ndarray[Any, np.dtype[np.int64]]:
    """``key_ints`` as an int64 array."""
    if isinstance(keys, IntKeys):
        return keys.array
    return np.array(key_ints(keys), dtype=np.int64)


BLOB = Layout("entity_key", list, "entity_key BLOB PRIMARY KEY, event_ts INTEGER NOT NULL, "
                "created_ts INTEGER NOT NULL, value BLOB NOT NULL) WITHOUT ROWID")
INT = Layout("entity_id", key_ints, "entity_id INTEGER PRIMARY KEY, event_ts INTEGER NOT "
               "NULL, created_ts INTEGER NOT NULL, value BLOB NOT NULL)")


def layout_for(view: FeatureView) -> Layout:
    keys = view.key_fields
    return INT if len(keys) == 1 and keys[0].dtype.name in _INT_KEYS else BLOB
