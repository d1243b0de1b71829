"""Brute-force point-in-time join, the reference every offline engine is checked against.

Written for clarity, not speed: for each entity row and view it scans every feature row.
Where several rows tie on (event, created) any of them is a correct answer, so the oracle
returns the set of acceptable value tuples. Engines (DuckDB here, Spark in the integration
suite) import ``expected``/``assert_matches`` and the small data builders below.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

Row = Mapping[str, Any]
_MIN = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class OracleView:
    """A view as the oracle sees it: rows carry keys, ``event``, ``created`` and features."""

    name: str
    keys: tuple[str, ...]
    features: tuple[str, ...]
    rows: Sequence[Row]
    ttl: timedelta = timedelta(0)


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def expected(view: OracleView, entity: Row, entity_ts: datetime) -> set[tuple[Any, ...] | None]:
    """Acceptable feature tuples for one entity row (``{None}`` when nothing matches)."""
    ts = utc(entity_ts)
    best: list[Row] = []
    best_key: tuple[datetime, datetime] | None = None
    for r in view.rows:
        if any(r[k] is None or r[k] != entity[k] for k in view.keys):
            continue
        ev = utc(r["event"])
        if ev > ts or (view.ttl > timedelta(0) and ev < ts - view.ttl):
            continue
        key = (ev, utc(r["created"]) if r["created"] is not None else _MIN)
        if best_key is None or key > best_key:
            best, best_key = [r], key
        elif key == best_key:
            best.append(r)
    if not best:
        return {None}
    return {tuple(r[f] for f in view.features) for r in best}


def expected_latest(
    view: OracleView, start: datetime | None, end: datetime
) -> dict[tuple[Any, ...], set[tuple[Any, ...]]]:
    """For materialization: per entity key, the acceptable (features..., event, created)
    tuples of its newest row with start <= event < end."""
    groups: dict[tuple[Any, ...], list[Row]] = {}
    for r in view.rows:
        ev = utc(r["event"])
        if ev >= utc(end) or (start is not None and ev < utc(start)):
            continue
        groups.setdefault(tuple(r[k] for k in view.keys), []).append(r)
    out: dict[tuple[Any, ...], set[tuple[Any, ...]]] = {}
    for key, rows in groups.items():
        def rank(r: Row) -> tuple[datetime, datetime]:
            return (utc(r["event"]), utc(r["created"]) if r["created"] is not None else _MIN)
        top = max(rank(r) for r in rows)
        out[key] = {
            (*(r[f] for f in view.features), utc(r["event"]),
             utc(r["created"]) if r["created"] is not None else None)
            for r in rows if rank(r) == top
        }
    return out


def _norm(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return v


def assert_matches(
    result: pa.Table,
    entity_rows: Sequence[Row],
    ts_column: str,
    views: Sequence[OracleView],
    names: Mapping[tuple[str, str], str] | None = None,
) -> None:
    """Every result row holds, for every view, one of the oracle's acceptable tuples.

    ``names`` maps (view, feature) to the result column (default ``view__feature``). The
    entity columns must come back unchanged, one row per input row, in input order.
    """
    assert result.num_rows == len(entity_rows)
    data = result.to_pylist()
    for i, (row, got) in enumerate(zip(entity_rows, data, strict=True)):
        for col, value in row.items():
            if col == ts_column:
                assert utc(got[col]) == utc(value), f"row {i}: timestamp changed"
            else:
                assert got[col] == value, f"row {i}: entity column {col!r} changed"
        for view in views:
            cols = [
                (names or {}).get((view.name, f), f"{view.name}__{f}") for f in view.features
            ]
            values = tuple(_norm(got[c]) for c in cols)
            allowed = expected(view, row, row[ts_column])
            shaped = {
                tuple(None for _ in cols) if a is None else tuple(_norm(x) for x in a)
                for a in allowed
            }
            assert values in shaped, (
                f"row {i} {dict(row)} view {view.name}: got {values}, expected one of {shaped}"
            )


def write_rows(
    path: Path,
    view: OracleView,
    types: Mapping[str, pa.DataType],
    ts_type: pa.DataType | None = None,
) -> None:
    """Write the oracle view's rows as a Parquet file with columns keys, features (Arrow
    ``types``), ``event_timestamp`` and ``created`` (timestamp[us, UTC] unless ``ts_type``)."""
    t = ts_type or pa.timestamp("us", tz="UTC")
    cols: dict[str, list[Any]] = {c: [] for c in (*view.keys, *view.features)}
    events: list[datetime] = []
    created: list[datetime | None] = []
    for r in view.rows:
        for c in cols:
            cols[c].append(r[c])
        events.append(utc(r["event"]))
        created.append(utc(r["created"]) if r["created"] is not None else None)
    table = pa.table({
        **{c: pa.array(v, type=types[c]) for c, v in cols.items()},
        "event_timestamp": pa.array(events, type=pa.timestamp("us", tz="UTC")).cast(t),
        "created": pa.array(created, type=pa.timestamp("us", tz="UTC")).cast(t),
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
