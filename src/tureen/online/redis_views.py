"""Redis reads of several views of the same keys (a feature service): each distinct key's
views come back in one ``HMGET``; the replies are placed back per view, or handed over as one
``VectorRead`` decoded for every view at once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tureen.online.batch_decode import MIN_ROWS
from tureen.online.packed import VectorRead
from tureen.online.protocol import ReadRequest, StoredRow
from tureen.online.vector_block import join_block


def views_of_same_keys(requests: Sequence[ReadRequest]) -> bool:
    """Whether every request reads the same key sequence and no view is asked twice."""
    keys = requests[0][1]
    return (all(k is keys for _, k in requests)
            and len({view.name for view, _ in requests}) == len(requests))


def as_block(requests: Sequence[ReadRequest], replies: list[Any]) -> VectorRead | None:
    """The ``HMGET`` replies of several views of the same keys as one ``VectorRead`` (each
    entity's rows joined in view order), decoded for every view at once, when every key
    holds every view and each view's rows have one layout of numbers only; else None."""
    keys = requests[0][1]
    if (len(requests) < 2 or len(keys) < MIN_ROWS or not views_of_same_keys(requests)
            or any(None in r for r in replies)):
        return None
    data = b"".join([b"".join(r) for r in replies])
    if len(replies) == len(keys):  # distinct keys (the usual case): in request order
        slots = np.arange(len(keys), dtype=np.int64)
    else:
        where = {k: i for i, k in enumerate(dict.fromkeys(keys))}
        slots = np.array([where[k] for k in keys], dtype=np.int64)
    return join_block(data, len(replies), len(requests), slots)


Assemble = Callable[[list[Any]], list[list[StoredRow | None]]]


def assemble_views(keys: Sequence[bytes], unique: list[bytes], views: int) -> Assemble:
    """Placing the ``HMGET`` replies of distinct keys (each the rows of ``views`` views)
    back per view, in request order."""

    def assemble(replies: list[Any]) -> list[list[StoredRow | None]]:
        if len(unique) != len(keys):
            where = {k: j for j, k in enumerate(unique)}
            replies = [replies[where[k]] for k in keys]
        return [[r[i] for r in replies] for i in range(views)]

    return assemble
