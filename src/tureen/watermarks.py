"""Watermarks: how far each feature view was materialized into *this* online store, and
whether the store still holds what was written.

The registry records every materialization with the location of the online store it went to
and a token; a store that ``KeepsMarkers`` (SQLite, Redis) keeps the token of each view's
last materialization next to the data. Comparing the two tells apart:

- ``ok``: materialized into this store and its marker matches: an incremental run resumes
  where the last one stopped;
- ``never``: never materialized into this store, although perhaps into another one (the
  online store was switched, e.g. SQLite → Redis): an incremental run starts from the
  beginning of the data (or ``end - ttl``) and says so;
- ``lost``: materialized into this store, but the marker is gone or different (a Redis
  restarted empty, a deleted database file): the store lost the data. ``/health`` and
  ``tureen features list`` report it, and ``materialize-incremental`` reloads the view.

Backends without markers are tracked by location only (``lost`` cannot be detected there).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from tureen.definitions import FeatureView
from tureen.online.protocol import KeepsMarkers, OnlineStore
from tureen.registry.snapshot import RegistrySnapshot

Status = Literal["ok", "never", "lost"]


@dataclass(frozen=True)
class ViewState:
    view: str
    status: Status
    #: materialized until (into this store), or None
    until: datetime | None
    message: str


@dataclass(frozen=True)
class Watermark:
    """Where an incremental run of one view starts, and what to record afterwards."""

    start: datetime | None  # None: the beginning of the data (or end - ttl, caller decides)
    token: str
    reload: bool  # the store does not hold this view's earlier materializations
    note: str | None


def location(store: OnlineStore) -> str:
    return store.location() if isinstance(store, KeepsMarkers) else type(store).__name__


def markers(store: OnlineStore) -> Mapping[str, str] | None:
    """The store's markers, or None when the backend keeps none."""
    return store.markers() if isinstance(store, KeepsMarkers) else None


def _last(snapshot: RegistrySnapshot, view: str, where: str) -> tuple[datetime | None, str | None]:
    mine = [i for i in snapshot.materializations.get(view, ()) if i.store == where]
    if not mine:
        return None, None
    newest = max(mine, key=lambda i: i.end)
    return _utc(newest.end), newest.token


def _elsewhere(snapshot: RegistrySnapshot, view: str, where: str) -> list[str]:
    return sorted({i.store or "an online store not recorded by this tureen version"
                   for i in snapshot.materializations.get(view, ()) if i.store != where})


def view_state(snapshot: RegistrySnapshot, view: FeatureView, where: str,
               marks: Mapping[str, str] | None) -> ViewState:
    until, token = _last(snapshot, view.name, where)
    if until is None:
        others = _elsewhere(snapshot, view.name, where)
        changed = f" (only into {', '.join(others)}: the online store changed)" if others else ""
        return ViewState(view.name, "never", None,
                         f"{view.name!r} was never materialized into {where}{changed}; run "
                         "`tureen materialize-incremental now` to load it.")
    if marks is not None and marks.get(view.name) != token:
        return ViewState(view.name, "lost", until, (
            f"{where} lost the data of {view.name!r} (materialized until {until:%Y-%m-%d %H:%M} "
            "UTC, but the store's materialization marker is gone: restarted empty, flushed or "
            "recreated); reads answer NOT_FOUND until you run `tureen materialize-incremental "
            "now`, which reloads it."))
    return ViewState(view.name, "ok", until,
                     f"{view.name!r} materialized into {where} until {until:%Y-%m-%d %H:%M} UTC.")


def states(snapshot: RegistrySnapshot, store: OnlineStore) -> list[ViewState]:
    """The state of every online view in ``store``."""
    where, marks = location(store), markers(store)
    return [view_state(snapshot, v, where, marks)
            for v in snapshot.feature_views.values() if v.online]


def incremental(snapshot: RegistrySnapshot, view: FeatureView, store: OnlineStore,
                marks: Mapping[str, str] | None) -> Watermark:
    """Where an incremental materialization of ``view`` into ``store`` starts."""
    where = location(store)
    state = view_state(snapshot, view, where, marks)
    if state.status == "ok":
        _, token = _last(snapshot, view.name, where)
        return Watermark(state.until, token or new_token(), False, None)
    note = None
    if state.status == "lost":
        note = (f"{where} lost the data of {view.name!r} (its materialization marker is gone: "
                "restarted empty, flushed or recreated): reloading it from the start.")
    elif others := _elsewhere(snapshot, view.name, where):
        note = (f"{view.name!r} was never materialized into {where}, only into "
                f"{', '.join(others)} (the online store changed): loading it from the start.")
    return Watermark(None, new_token(), True, note)


def token_for(snapshot: RegistrySnapshot, view: FeatureView, store: OnlineStore,
              marks: Mapping[str, str] | None) -> str:
    """The token a (full-range) materialization writes: the current one when the store still
    holds the view's earlier materializations, else a new one."""
    where = location(store)
    state = view_state(snapshot, view, where, marks)
    _, token = _last(snapshot, view.name, where)
    return token if state.status == "ok" and token else new_token()


def new_token() -> str:
    return uuid.uuid4().hex


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
