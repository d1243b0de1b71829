"""OnlineRetrieval: ``get_online_features`` over any OnlineStore.

A request is resolved once per (registry snapshot, feature list) into a compiled plan: the
views to read with their key encoders and row decoders, and where each output comes from.
The sync and async entry points share everything but the single ``read`` call.

Async and sync stores: a store with a native async client (``AsyncOnlineStore``) is
awaited. A sync store is called inline by default because an SQLite point read takes a few
microseconds, less than the ~50-100 µs a thread-pool hop costs (``bench/bench_online.py``
measures both); pass ``offload_sync_reads=True`` to run it in a worker thread instead
(e.g. a sync store that talks to the network).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import numpy as np

from tureen.definitions import FeatureService, FeatureView, Field, OnDemandFeatureView
from tureen.feature_refs import FeaturePlan, resolve
from tureen.online.batch_decode import MIN_ROWS, Column, Events, read_block
from tureen.online.encoding import RowReader
from tureen.online.entity_rows import EntityRows, check_request_field, columns_of
from tureen.online.keys import IntKeys, KeyEncoder, encoder_for
from tureen.online.packed import PackedRows, VectorRead
from tureen.online.protocol import AsyncOnlineStore, OnlineStore, ReadRequest, StoredRow
from tureen.online.response import (
    NOT_FOUND,
    OUTSIDE_MAX_AGE,
    PRESENT,
    FeastLayout,
    FieldStatus,
    OnlineColumn,
    OnlineResponse,
    feast_layout,
)
from tureen.online.vector_block import decode_block
from tureen.registry.snapshot import RegistrySnapshot

Features = Sequence[str] | FeatureService | str
_PLAN_CACHE_SIZE = 1024


@dataclass(frozen=True)
class _ViewStep:
    view: FeatureView
    encoder: KeyEncoder
    reader: RowReader
    ttl_us: int
    keys_of: KeysOf


KeysOf = Callable[[Mapping[str, Sequence[Any]]], Sequence[bytes]]


def _keys_of(enc: KeyEncoder) -> KeysOf:
    """Entity columns -> key bytes per row, specialized for the common single join key (a
    batch of plain ints stays ints, ``IntKeys``, for stores that key by the integer)."""
    if len(enc.names) == 1:
        name, one = enc.names[0], enc.encode_one
        if enc.fields[0].dtype.name in ("Int32", "Int64"):

            def int_keys(columns: Mapping[str, Sequence[Any]]) -> Sequence[bytes]:
                values = columns[name]
                if len(values) < MIN_ROWS:
                    return [one(v) for v in values]
                return IntKeys.of(values, enc)

            return int_keys
        return lambda columns: [one(v) for v in columns[name]]
    return enc.encode_columns


@dataclass(frozen=True)
class _Compiled:
    plan: FeaturePlan
    steps: tuple[_ViewStep, ...]
    key_fields: tuple[Field, ...]
    needed: tuple[Field, ...]  # join keys then request fields: what entity rows must hold
    request_fields: tuple[Field, ...]
    # Per output: (step index, feature index) for stored features, (-1, odfv index) for
    # on-demand ones; with the output field (name as returned, dtype).
    outputs: tuple[tuple[int, int, Field, str], ...]
    on_demand: tuple[OnDemandFeatureView, ...]
    # Per on-demand view: (input name, step index, feature index) of the stored features it
    # reads, under their feature names: exactly the columns offline retrieval hands the same
    # function (plus the request fields), so training and serving cannot skew.
    odfv_inputs: tuple[tuple[tuple[str, int, int], ...], ...]
    #: how Feast's JSON of this read is laid out (all outputs stored numbers), else None
    feast: FeastLayout | None = None


class _Call:
    """One request between its read and its response (plain slots: this is per call)."""

    __slots__ = ("columns", "compiled", "n", "requests")

    def __init__(
        self,
        compiled: _Compiled,
        columns: dict[str, Sequence[Any]],
        n: int,
        requests: list[ReadRequest],
    ) -> None:
        self.compiled = compiled
        self.columns = columns
        self.n = n
        self.requests = requests


def _compile(plan: FeaturePlan) -> _Compiled:
    steps = []
    for r in plan.reads:
        enc = encoder_for(r.view.key_fields)
        steps.append(
            _ViewStep(
                view=r.view,
                encoder=enc,
                reader=RowReader([f.name for f in r.features]),
                ttl_us=int(r.view.ttl_seconds * 1_000_000),
                keys_of=_keys_of(enc),
            )
        )
    key_fields: dict[str, Field] = {}
    for s in steps:
        for f in s.view.key_fields:
            key_fields.setdefault(f.name, f)
    outputs: list[tuple[int, int, Field, str]] = []
    for ref in plan.refs:
        field = Field(ref.output_name(plan.full_feature_names), ref.dtype)
        if ref.on_demand:
            idx = next(i for i, o in enumerate(plan.on_demand) if o.name == ref.view)
            outputs.append((-1, idx, field, ref.feature))
        else:
            i = next(i for i, s in enumerate(steps) if s.view.name == ref.view)
            outputs.append((i, steps[i].reader.wanted.index(ref.feature), field, ref.feature))
    odfv_inputs = []
    step_of = {s.view.name: i for i, s in enumerate(steps)}
    for od in plan.on_demand:
        named: list[tuple[str, int, int]] = []
        for view_name, selected in od.input_views():
            i = step_of[view_name]
            wanted = steps[i].reader.wanted
            for feat in selected if selected else steps[i].view.feature_names:
                j = wanted.index(feat)
                named.append((feat, i, j))
        odfv_inputs.append(tuple(named))
    keys = tuple(key_fields[k] for k in plan.join_keys)
    feast = feast_layout(
        [f.name for f in keys],
        [(i, j, field) for i, j, field, _ in outputs],
        [len(s.reader.wanted) for s in steps],
    )
    return _Compiled(
        feast=feast,
        plan=plan,
        odfv_inputs=tuple(odfv_inputs),
        steps=tuple(steps),
        key_fields=keys,
        needed=keys + plan.request_fields,
        request_fields=plan.request_fields,
        outputs=tuple(outputs),
        on_demand=plan.on_demand,
    )


def _cache_key(features: Features, full: bool) -> tuple[Any, ...]:
    if isinstance(features, str):
        return ("service", features, full)
    if isinstance(features, FeatureService):
        return ("service-object", features.name, tuple(features.projections()), full)
    return ("refs", tuple(features), full)


def _as_list(col: Any) -> list[Any]:
    return col.tolist() if hasattr(col, "tolist") else list(col)


def _batch_step(
    reader: RowReader, blobs: Sequence[StoredRow | None], ttl: int, now_us: int
) -> tuple[list[Column], list[FieldStatus], list[int | None]] | None:
    """One view's rows of a batch read decoded at once (``batch_decode``), with statuses;
    None when they do not decode as one array."""
    n = len(blobs)
    found: tuple[Events, list[Column]] | None
    where: np.ndarray[Any, np.dtype[np.intp]] | None = None
    if isinstance(blobs, PackedRows):
        take = blobs.slots
        if blobs.missing:
            where = np.flatnonzero(take >= 0)
            if len(where) < MIN_ROWS:
                return None
            take = take[where]
        found = read_block(reader, blobs.data, blobs.width, take, blobs.one_layout)
    elif None not in blobs:
        rows = cast("Sequence[bytes]", blobs)
        found = read_block(reader, b"".join(rows), len(rows[0]), None)
    else:
        where = np.flatnonzero([b is not None for b in blobs])
        if len(where) < MIN_ROWS:
            return None
        rows = [cast(bytes, blobs[i]) for i in where.tolist()]
        found = read_block(reader, b"".join(rows), len(rows[0]), None)
    if found is None:
        return None
    ev, cols = found
    if where is None:  # every key found (the common case)
        if not ttl or now_us - int(ev.min()) <= ttl:
            return cols, [PRESENT] * n, ev.tolist()
        where = np.arange(n)
    # Some keys not found or past the TTL: scatter the rows found into columns of None.
    fresh = now_us - ev <= ttl if ttl else np.ones(len(ev), dtype=bool)
    codes = np.zeros(n, dtype=np.int8)
    codes[where] = np.where(fresh, 1, 2)
    stamps = np.full(n, None, dtype=object)
    stamps[where] = ev
    keep = where[fresh]
    out: list[Column] = []
    for col in cols:
        full = np.full(n, None, dtype=object)
        if isinstance(col, np.ndarray):
            full[keep] = col[fresh]
        else:
            values = np.empty(len(col), dtype=object)
            values[:] = col
            full[keep] = values[fresh]
        out.append(full.tolist())
    return out, _STATUS_OF_CODE[codes].tolist(), stamps.tolist()


#: ``_batch_step``'s status codes: 0 not found, 1 present, 2 past the view's TTL
_STATUS_OF_CODE = np.array([NOT_FOUND, PRESENT, OUTSIDE_MAX_AGE], dtype=object)


class OnlineRetrieval:
    def __init__(
        self,
        store: OnlineStore,
        snapshot_provider: Callable[[], RegistrySnapshot],
        *,
        offload_sync_reads: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._provider = snapshot_provider
        self._async_store = store if isinstance(store, AsyncOnlineStore) else None
        self._offload = offload_sync_reads
        self._clock = clock
        # (snapshot, its (project, version, updated_at), plans compiled from it): one tuple,
        # swapped atomically, so a thread still holding an older snapshot can never put its
        # plan into the cache of a newer one.
        self._cache: tuple[RegistrySnapshot | None, tuple[Any, ...], dict[Any, _Compiled]] = (
            None,
            (),
            {},
        )

    # ---- public API ---------------------------------------------------------------------
    def get_online_features(
        self,
        features: Features,
        entity_rows: EntityRows,
        full_feature_names: bool = False,
        enforce_ttl: bool = True,
    ) -> OnlineResponse:
        """Latest stored features for each entity row, in requested order.

        ``features``: ["view:feature", ...], a FeatureService, or a service name.
        ``entity_rows``: list of dicts or dict of lists with the join keys (and any
        request-time fields on-demand views need). ``enforce_ttl=False`` returns stored
        values past their view's TTL as PRESENT (what Feast does; the Feast routes'
        ``feast_compat`` mode) instead of OUTSIDE_MAX_AGE.
        """
        call = self._prepare(features, entity_rows, full_feature_names)
        return self._finish(call, self._store.read(call.requests), enforce_ttl)

    async def get_online_features_async(
        self,
        features: Features,
        entity_rows: EntityRows,
        full_feature_names: bool = False,
        enforce_ttl: bool = True,
    ) -> OnlineResponse:
        call = self._prepare(features, entity_rows, full_feature_names)
        if self._async_store is not None:
            rows = await self._async_store.read_async(call.requests)
        elif self._offload:
            rows = await asyncio.to_thread(self._store.read, call.requests)
        else:
            rows = self._store.read(call.requests)
        return self._finish(call, rows, enforce_ttl)

    def plan(self, features: Features, full_feature_names: bool = False) -> FeaturePlan:
        """The resolved plan for ``features`` (cached per registry snapshot)."""
        return self._compiled(features, full_feature_names).plan

    # ---- shared steps -------------------------------------------------------------------
    def _compiled(self, features: Features, full: bool) -> _Compiled:
        snap = self._provider()
        cached, tag, plans = self._cache
        if snap is not cached:
            new_tag = (snap.project, snap.version, snap.updated_at)
            if new_tag != tag:
                plans = {}
            self._cache = (snap, new_tag, plans)
        key = _cache_key(features, full)
        compiled = plans.get(key)
        if compiled is None:
            compiled = _compile(resolve(snap, features, full))
            if len(plans) >= _PLAN_CACHE_SIZE:
                plans.clear()
            plans[key] = compiled
        return compiled

    def _prepare(self, features: Features, entity_rows: EntityRows, full: bool) -> _Call:
        c = self._compiled(features, full)
        columns, n = columns_of(entity_rows, c.needed)
        for f in c.request_fields:
            check_request_field(f, columns[f.name])
        # Views keyed alike (same encoder) share one key sequence: encoded once, and a
        # store sees at a glance (``is``) that they read the same entities.
        by_encoder: dict[int, Sequence[bytes]] = {}
        requests: list[ReadRequest] = []
        for s in c.steps:
            keys = by_encoder.get(id(s.encoder))
            if keys is None:
                keys = by_encoder[id(s.encoder)] = s.keys_of(columns)
            requests.append((s.view, keys))
        return _Call(c, columns, n, requests)

    def _finish(
        self, call: _Call, rows: Sequence[Sequence[StoredRow | None]], enforce_ttl: bool = True
    ) -> OnlineResponse:
        c = call.compiled
        now_us = int(self._clock() * 1_000_000)
        # per view: (one column of values per wanted feature, statuses, event µs)
        per_step: list[tuple[Sequence[Any], list[FieldStatus], Sequence[int | None]]] = []
        status: list[FieldStatus]
        batched = False  # a view decoded as arrays (Feast's JSON then takes its general path)
        steps: Sequence[_ViewStep] = c.steps
        if type(rows) is VectorRead and len(rows.block.slots) >= MIN_ROWS:
            # a per-service vector read in one piece: every view decoded at once
            fused = decode_block([s.reader for s in steps],
                                 [s.ttl_us if enforce_ttl else 0 for s in steps],
                                 rows.block, now_us)
            if fused is not None:
                per_step.extend(fused)
                batched, steps, rows = True, (), ()
        for s, blobs in zip(steps, rows, strict=True):
            width = len(s.reader.wanted)
            read, ttl = s.reader.read, (s.ttl_us if enforce_ttl else 0)
            if len(blobs) >= MIN_ROWS:
                batch = _batch_step(s.reader, blobs, ttl, now_us)
                if batch is not None:
                    per_step.append(batch)
                    batched = True
                    continue
            if len(blobs) == 1 and blobs[0] is not None:  # one entity: the usual online read
                ev, vals = read(blobs[0])
                if not ttl or now_us - ev <= ttl:
                    per_step.append((list(zip(vals)), [PRESENT], [ev]))
                    continue
            if None not in blobs:
                # Every key found (the common case): no per-row branching.
                decoded = [read(b) for b in cast("Sequence[bytes]", blobs)]
                stamps = [d[0] for d in decoded]
                if not ttl or not stamps or now_us - min(stamps) <= ttl:
                    status = [PRESENT] * len(decoded)
                    cols = list(zip(*[d[1] for d in decoded], strict=True)) or [()] * width
                    per_step.append((cols, status, stamps))
                    continue
            none_row = (None,) * width
            status = []
            events: list[int | None] = []
            values: list[Sequence[Any]] = []
            for blob in blobs:
                if blob is None:
                    status.append(NOT_FOUND)
                    events.append(None)
                    values.append(none_row)
                    continue
                ev, vals = read(blob)
                events.append(ev)
                if ttl and now_us - ev > ttl:
                    status.append(OUTSIDE_MAX_AGE)
                    values.append(none_row)
                else:
                    status.append(PRESENT)
                    values.append(vals)
            cols = list(zip(*values, strict=True)) if values else [()] * width
            per_step.append((cols, status, events))

        odfv_out: list[dict[str, Any]] = []
        if c.on_demand:
            base: dict[str, Sequence[Any]] = {
                f.name: call.columns[f.name] for f in c.request_fields
            }
            for od, named in zip(c.on_demand, c.odfv_inputs, strict=True):
                inputs = dict(base)
                for name, i, j in named:
                    inputs[name] = _as_list(per_step[i][0][j])
                odfv_out.append(od.transform(inputs))

        keys = [(f, call.columns[f.name]) for f in c.key_fields]
        if c.feast is not None and not batched:  # columns made only if someone asks
            return OnlineResponse(
                keys, partial(_output_columns, c, per_step, odfv_out), (c.feast, per_step)
            )
        return OnlineResponse(keys, _output_columns(c, per_step, odfv_out))


def _output_columns(
    c: _Compiled,
    per_step: Sequence[tuple[Sequence[Any], list[FieldStatus], Sequence[int | None]]],
    odfv_out: Sequence[dict[str, Any]],
) -> list[OnlineColumn]:
    return [
        OnlineColumn(field, per_step[i][0][j], per_step[i][1], per_step[i][2])
        if i >= 0
        else OnlineColumn(field, _as_list(odfv_out[j][feature]), None, None)
        for i, j, field, feature in c.outputs
    ]
