"""The seam between online retrieval and a storage backend (SQLite by default, Redis at scale).

A backend stores, per feature view and entity key (:mod:`tureen.online.keys`), one encoded
row (:mod:`tureen.online.encoding`): the latest feature values of that entity with their
event and created timestamps. The contract every backend honours (checked by
``tests/integration/online/test_store_contract.py``):

- ``write`` never replaces a row with one whose ``(event_ts, created_ts)`` is smaller; on an
  exact tie the later write wins (so re-materializing a range refreshes it). A backend
  compares atomically (SQL ``UPSERT ... WHERE``, a Lua script, ...), never read-then-write.
- ``read`` takes every (view, keys) of one request at once, so a networked backend answers
  in one round trip, and returns rows aligned with the keys (None where absent). Keys may
  repeat. Reading a view never written returns Nones, not an error.
- Values are returned exactly as ``encoding.encode_rows`` produced them; decoding, TTL and
  statuses are the retrieval service's job, identical for every backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import pyarrow as pa

from tureen.definitions import FeatureView

# One stored row: bytes in the tureen.online.encoding format (opaque to backends).
StoredRow = bytes
ReadRequest = tuple[FeatureView, Sequence[bytes]]


class OnlineStore(Protocol):
    def write(self, view: FeatureView, keys: Sequence[bytes], rows: pa.Table) -> int:
        """Store ``rows`` (feature columns of ``view``, ``event_timestamp``, optional
        ``created_timestamp``; other columns ignored) under ``keys`` (one per row), newer
        rows winning, in one transaction / pipeline. Returns the number of rows offered."""
        ...

    def read(self, requests: Sequence[ReadRequest]) -> Sequence[Sequence[StoredRow | None]]:
        """For each (view, keys): the stored row of each key, or None when absent (a list,
        or ``PackedRows`` from a backend that returns a batch in one buffer)."""
        ...

    def delete_views(self, views: Sequence[FeatureView]) -> None:
        """Drop every row of these views (on `tureen apply` removing them, or teardown)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class AsyncOnlineStore(Protocol):
    """A backend with a native async client (e.g. redis.asyncio); servers await it."""

    async def read_async(
        self, requests: Sequence[ReadRequest]
    ) -> Sequence[Sequence[StoredRow | None]]: ...


@runtime_checkable
class CountsStored(Protocol):
    """A backend whose write can tell how many rows it stored: the others were older than
    what it holds (newer wins), and a push reports them as ignored."""

    def write_counted(self, view: FeatureView, keys: Sequence[bytes], rows: pa.Table) -> int:
        """``write``, returning the number of rows stored (not offered)."""
        ...


@runtime_checkable
class KeepsMarkers(Protocol):
    """A backend that keeps, next to the data, a marker per view naming the materialization
    that filled it. With the registry's record of where each view was materialized
    (``tureen.watermarks``) it tells a store that holds the data from one that lost it (a
    Redis restarted empty, a deleted file) or was never filled (the store was switched)."""

    def location(self) -> str:
        """Where the data lives, stable across processes and without secrets."""
        ...

    def markers(self) -> dict[str, str]:
        """View name -> token of the last materialization written into this store."""
        ...

    def set_marker(self, view: str, token: str) -> None:
        """Record ``token`` for ``view`` (after its rows were written)."""
        ...


@runtime_checkable
class CountsRows(Protocol):
    """A backend that can say how many entities a view holds without scanning the store
    (the console's "online row count"); Redis, keyed by entity, cannot."""

    def count_rows(self, view: FeatureView) -> int: ...


@runtime_checkable
class DefersLogCheckpoints(Protocol):
    """A backend with a write-ahead log that a writer checkpoints into the database file on
    its own (SQLite's WAL every 1,000 pages, inside the commit that passes it, with an
    fsync). A streaming ingester, whose commits are on the path of event -> visible lag,
    turns that off and checkpoints from its background worker before it commits offsets."""

    def defer_log_checkpoints(self) -> None:
        """From now on this store's writes never checkpoint the log themselves."""
        ...

    def checkpoint_log(self) -> tuple[int, int]:
        """Checkpoint now, without blocking writers or readers; (frames in the log, frames
        checkpointed)."""
        ...


@dataclass(frozen=True)
class VectorSpec:
    """A per-service vector to keep: one row per entity holding the stored rows of each of
    ``views`` (two or more, all keyed by the same join keys), named after the service."""

    name: str
    views: tuple[FeatureView, ...]


@runtime_checkable
class KeepsVectors(Protocol):
    """A backend that keeps per-service vectors (``tureen.online.vectors``): every write of
    a view also writes, in the same transaction, the view's slot of each vector holding it
    (newer wins, exactly as in the view), and a read of views that one vector holds is one
    lookup per entity. A vector answers exactly what reading its views one by one answers."""

    def sync_vectors(self, specs: Sequence[VectorSpec]) -> None:
        """Keep exactly these vectors: build the new or changed ones from the views' stored
        rows, drop the others."""
        ...
