"""Packed SQLite reads: the rows of many integer keys of one or several stored columns in
ONE aggregate statement, each column's rows concatenated into one blob.

A column here is ``(table, value column)``: a view's table (``value``) or one slot of a
per-service vector (:mod:`tureen.online.sqlite_vectors`). The keys go in sorted (SQLite walks
the B-trees in order) as one JSON array; ``json_each`` is the outer loop of LEFT JOINs, so
every aggregate sees the rows in the array's order, and each column answers its rows back
to back plus the positions of the keys it lacks. One Python object per column instead of a
tuple and a bytes per row; decoding then reads the blob with numpy
(:mod:`tureen.online.batch_decode`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from tureen.online.batch_decode import packed_width
from tureen.online.packed import PackedRows, VectorRead
from tureen.online.vector_block import join_block

#: SQLite joins at most 64 tables: ``json_each`` and 63 others
MAX_TABLES = 63
Keys = np.ndarray[Any, np.dtype[np.int64]]


def packed_sql(columns: Sequence[tuple[str, str]]) -> str:
    """The statement reading ``columns`` (quoted table, value column) keyed by
    ``entity_id``; a table named twice is joined once."""
    alias: dict[str, str] = {}
    for t, _ in columns:
        alias.setdefault(t, f"t{len(alias)}")
    parts = []
    for t, col in columns:
        v = f"{alias[t]}.{col}"
        parts.append(f"CAST(group_concat({v}, '') AS BLOB), "
                     f"group_concat(CASE WHEN {v} IS NULL THEN j.key END)")
    joins = " ".join(f"LEFT JOIN {t} AS {a} ON {a}.entity_id = j.value" for t, a in alias.items())
    return f"SELECT {', '.join(parts)} FROM json_each(?) AS j {joins}"


def packed_keys(keys: Keys) -> tuple[str, Keys]:
    """(the JSON array of ``keys`` sorted, the order that sorts them)."""
    order = keys.argsort()
    return orjson.dumps(keys[order], option=orjson.OPT_SERIALIZE_NUMPY).decode(), order


def _slots(missing: str | None, order: Keys) -> tuple[Keys, int]:
    """(each key's row among those found, -1 when not found; how many were found) from the
    positions of the keys not found in the sorted array."""
    n = len(order)
    if missing is None:  # every key found: the k-th row is the k-th smallest key's
        in_order = np.arange(n, dtype=np.int64)
        count = n
    else:
        found = np.ones(n, dtype=bool)
        found[np.array(missing.split(","), dtype=np.int64)] = False
        in_order = np.cumsum(found) - 1
        count = int(in_order[-1]) + 1
        in_order[~found] = -1
    slots = np.empty(n, dtype=np.int64)
    slots[order] = in_order
    return slots, count


def unpack(data: bytes | None, missing: str | None, order: Keys) -> PackedRows | None:
    """One column's answer to ``packed_sql`` as rows aligned with the keys (before sorting:
    ``order`` is the sort), or None when its rows do not all have one length (then the
    caller reads row by row)."""
    slots, count = _slots(missing, order)
    width = 0
    if data is not None:  # some found: rows of one length, as many as keys found
        width = packed_width(data) or 0
        if not width or len(data) != width * count:
            return None
    return PackedRows(data or b"", width, slots, one_layout=True, missing=len(order) - count)


def block_sql(table: str, slots: Sequence[int]) -> str:
    """The statement reading every slot (``slots`` in order) of a vector ``table`` for many
    integer keys as ONE blob: per entity found, its column ``v`` (its slots' rows back to
    back; ``||`` of blobs is byte for byte in a UTF-8 database, as ``group_concat`` is);
    then the keys not found, and how many found have a slot empty (then the slots are
    read apart: ``packed_sql``)."""
    empty = " OR ".join(f"v.s{i} IS NULL" for i in slots)
    return ("SELECT CAST(group_concat(v.v, '') AS BLOB), "
            "group_concat(CASE WHEN v.entity_id IS NULL THEN j.key END), "
            f"count(CASE WHEN v.entity_id IS NOT NULL AND ({empty}) THEN 1 END) "
            f"FROM json_each(?) AS j LEFT JOIN {table} AS v ON v.entity_id = j.value")


def unpack_block(answer: Sequence[Any], order: Keys, views: int) -> VectorRead | None:
    """The answer of ``block_sql`` over ``views`` slots as a ``VectorRead``, when every
    entity found holds every slot and each slot's rows have one layout of numbers only;
    else None."""
    data, missing, partial = answer
    if partial or data is None:
        return None
    slots, count = _slots(missing, order)
    return join_block(data, count, views, slots)
