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

from tureen.definitions import FeatureView
from tureen.errors import InvalidRequestError
from tureen.offline.protocol import OfflineEngine
from tureen.online.keys import encoder_for
from tureen.online.protocol import OnlineStore
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
    for view in _views(snapshot, views):
        rows = materialize_view(engine, store, view, start, end, progress)
        out.append(MaterializeResult(view.name, start, end, rows))
    return out


def incremental_start(snapshot: RegistrySnapshot, view: FeatureView, end: datetime) -> (
    datetime | None
):
    """Where an incremental run of ``view`` starts: the end of the last materialization,
    else ``end - ttl``, else (ttl 0) None, meaning the beginning of the data."""
    last = snapshot.last_materialized(view.name)
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

    Views already materialized up to ``end`` or later are skipped. A view read from the
    beginning of its data reports ``start = BEGINNING``.
    """
    end = _utc(end)
    out: list[MaterializeResult] = []
    for view in _views(snapshot, views):
        start = incremental_start(snapshot, view, end)
        if start is not None and start >= end:
            continue
        rows = materialize_view(engine, store, view, start, end, progress)
        out.append(MaterializeResult(view.name, start or BEGINNING, end, rows))
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
