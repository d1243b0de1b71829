"""Materialization: copy the newest offline row of each entity into the online store.

For each online feature view the offline engine yields, per entity, the newest row with
``start <= event_ts < end`` (``OfflineEngine.latest_rows``); keys are encoded with numpy and
rows written in batches, each in one store transaction. The store keeps whichever of the
stored and the new row is newer, so materializing an old range never clobbers fresher
pushed values. The caller (the FeatureStore facade) records the intervals in the registry.

Progress is reported through an optional callback ``(view, rows_written, total)``, where
``total`` is the view's row count once known and 0 while streaming; :func:`rich_progress`
gives one that draws a rich progress bar for the CLI.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import NamedTuple

import pyarrow as pa

from tureen import watermarks
from tureen.definitions import FeatureView, StreamFeatureView
from tureen.errors import InvalidRequestError, NotFoundError
from tureen.offline.protocol import OfflineEngine
from tureen.online.keys import encoder_for
from tureen.online.protocol import KeepsMarkers, OnlineStore
from tureen.registry.snapshot import RegistrySnapshot

Progress = Callable[[str, int, int], None]
# Recorded as the start of a materialization that read from the beginning of the data.
BEGINNING = datetime.min.replace(tzinfo=UTC)
BATCH_ROWS = 100_000


class MaterializeResult(NamedTuple):
    view: str
    start: datetime
    end: datetime
    rows: int
    #: what was detected (the online store changed, or lost the view's data), else None
    note: str | None = None
    #: where it was written and the marker token recorded with it (``tureen.watermarks``)
    store: str | None = None
    token: str | None = None


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _views(snapshot: RegistrySnapshot, names: Sequence[str] | None) -> list[FeatureView]:
    if names is None:
        return [v for v in snapshot.feature_views.values() if v.online]
    views = [snapshot.feature_view(n) for n in names]
    offline_only = [v.name for v in views if not v.online]
    if offline_only:
        raise InvalidRequestError(
            f"feature view(s) {offline_only} have online=False and are never materialized; "
            "set online=True and run `tureen apply` to serve them."
        )
    return views


def _batches(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """Regroup the engine's batches into tables of about ``rows`` rows."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for b in batches:
        if not b.num_rows:
            continue
        pending.append(b)
        count += b.num_rows
        if count >= rows:
            yield pa.Table.from_batches(pending)
            pending, count = [], 0
    if pending:
        yield pa.Table.from_batches(pending)


def materialize_view(
    engine: OfflineEngine,
    store: OnlineStore,
    view: FeatureView,
    start: datetime | None,
    end: datetime,
    progress: Progress | None = None,
) -> int:
    """Materialize one view over [start, end) (start None: from the beginning of the data)."""
    encoder = encoder_for(view.key_fields)
    done = 0
    if progress is not None:
        progress(view.name, 0, 0)
    for table in _batches(engine.latest_rows(view, start, end), BATCH_ROWS):
        keys = encoder.encode_arrow(table)
        done += store.write(view, keys, table)
        if progress is not None:
            progress(view.name, done, 0)
    if progress is not None:
        progress(view.name, done, done)
    return done


def materialize(
    snapshot: RegistrySnapshot,
    engine: OfflineEngine,
    store: OnlineStore,
    start: datetime,
    end: datetime,
    views: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> list[MaterializeResult]:
    """Load each online view's newest rows in [start, end) into the online store.

    ``views`` names the views (default: every view with ``online=True``). tz-naive
    datetimes are UTC.
    """
    start, end = _utc(start), _utc(end)
    if start >= end:
        raise InvalidRequestError(
            f"materialize: start {start.isoformat()} must be before end {end.isoformat()}."
        )
    out: list[MaterializeResult] = []
    where, marks = watermarks.location(store), watermarks.markers(store)
    for view in _views(snapshot, views):
        token = watermarks.token_for(snapshot, view, store, marks)
        rows, note = _materialize_view(engine, store, view, start, end, progress)
        _mark(store, view, token)
        out.append(MaterializeResult(view.name, start, end, rows, note, where, token))
    return out


def _materialize_view(engine: OfflineEngine, store: OnlineStore, view: FeatureView,
                      start: datetime | None, end: datetime, progress: Progress | None,
                      ) -> tuple[int, str | None]:
    """``materialize_view``; a stream view whose offline log has no file yet (no event
    arrived) loads nothing and says so, where a missing source file of another view is an
    error."""
    try:
        return materialize_view(engine, store, view, start, end, progress), None
    except NotFoundError:
        if not isinstance(view, StreamFeatureView):
            raise
        return 0, (f"{view.name}: no events logged yet (its offline log "
                   f"{view.offline_source.path!r} has no file); nothing to load.")


def _mark(store: OnlineStore, view: FeatureView, token: str) -> None:
    if isinstance(store, KeepsMarkers):  # after the rows: a marker vouches for written data
        store.set_marker(view.name, token)


def incremental_start(snapshot: RegistrySnapshot, view: FeatureView, end: datetime,
                      last: datetime | None = None) -> datetime | None:
    """Where an incremental run of ``view`` starts: ``last`` (the end of the last
    materialization into this store), else ``end - ttl``, else (ttl 0) None, meaning the
    beginning of the data."""
    if last is not None:
        return _utc(last)
    ttl = view.ttl
    if ttl is None or not ttl:
        return None
    return end - ttl


def materialize_incremental(
    snapshot: RegistrySnapshot,
    engine: OfflineEngine,
    store: OnlineStore,
    end: datetime,
    views: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> list[MaterializeResult]:
    """Materialize each online view from where it was last materialized up to ``end``.

    Views already materialized into this store up to ``end`` or later are skipped. A view
    read from the beginning of its data reports ``start = BEGINNING``. The watermark is the
    online store's own (``tureen.watermarks``): after a switch of online store, or when the
    store lost its data, the view is loaded from the start and ``note`` says why.
    """
    end = _utc(end)
    out: list[MaterializeResult] = []
    where, marks = watermarks.location(store), watermarks.markers(store)
    for view in _views(snapshot, views):
        mark = watermarks.incremental(snapshot, view, store, marks)
        start = incremental_start(snapshot, view, end, mark.start)
        if start is not None and start >= end:
            continue
        rows, empty = _materialize_view(engine, store, view, start, end, progress)
        _mark(store, view, mark.token)
        out.append(MaterializeResult(view.name, start or BEGINNING, end, rows,
                                     mark.note or empty, where, mark.token))
    return out


@contextmanager
def rich_progress(transient: bool = False) -> Iterator[Progress]:
    """A progress callback drawing one rich bar (row counter) per view."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        SpinnerColumn,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.progress import Progress as RichProgress

    bars = RichProgress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
        transient=transient,
    )
    tasks: dict[str, TaskID] = {}

    def update(view: str, rows: int, total: int) -> None:
        task = tasks.get(view)
        if task is None:
            task = tasks[view] = bars.add_task(view, total=None)
        if total:
            bars.update(task, completed=rows, total=total)
        else:
            bars.update(task, completed=rows)

    with bars:
        yield update
