"""Events as a consumer hands them to the stream processor, and their validation.

Every event is checked against every view of its source (``tureen.ingest.validate_rows``,
the same checks as ``push``): an event that could not be decoded or does not validate becomes
a ``DeadLetter`` with the reason; the others go on as one typed table per view. Timestamps
given as numbers are seconds since the epoch (JSON has no timestamp type).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tureen.definitions import FeatureView, FileSource, KafkaSource
from tureen.errors import InvalidRequestError
from tureen.ingest import arrow_columns, validate_rows

_TS = pa.timestamp("us", tz="UTC")


@dataclass(slots=True)
class Event:
    """One decoded message or pushed row; ``error`` is set when it could not be decoded."""

    row: dict[str, Any] | None
    event_id: str
    partition: str
    seq: int | None = None  # position in the partition (Kafka offset): replays are skipped
    payload: bytes | None = None
    key: bytes | None = None
    error: str = ""


@dataclass(slots=True)
class DeadLetter:
    event: Event
    reason: str


@dataclass
class BatchResult:
    accepted: int
    late: int
    dead: list[DeadLetter]
    newest_event_us: int | None
    windows_emitted: int = 0


def epoch_numbers_to_timestamps(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Numbers are seconds since the epoch (JSON has no timestamp type)."""
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
        us = pc.round(pc.multiply(pc.cast(arr, pa.float64()), 1_000_000.0))
        return pc.cast(pc.cast(us, pa.int64()), _TS)
    return arr


def validate_events(
    events: Sequence[Event],
    inputs: Sequence[FeatureView],
    naming: FileSource | KafkaSource,
    max_clock_skew: timedelta | None,
) -> tuple[list[Event], list[pa.Table], list[DeadLetter]]:
    """(good events, one table of them per input view, dead letters); ``naming`` names the
    timestamp columns, events dated more than ``max_clock_skew`` ahead are dead letters."""
    dead = [DeadLetter(e, e.error) for e in events if e.row is None]
    good = [e for e in events if e.row is not None]
    if not good:
        return [], [], dead
    try:
        return good, event_tables(good, inputs, naming, max_clock_skew), dead
    except InvalidRequestError:
        pass
    ok: list[Event] = []
    for e in good:  # find the bad ones, then validate the rest as one batch
        try:
            event_tables([e], inputs, naming, max_clock_skew)
            ok.append(e)
        except InvalidRequestError as exc:
            dead.append(DeadLetter(e, str(exc)))
    return ok, (event_tables(ok, inputs, naming, max_clock_skew) if ok else []), dead


def event_tables(
    events: Sequence[Event],
    inputs: Sequence[FeatureView],
    naming: FileSource | KafkaSource,
    max_clock_skew: timedelta | None,
) -> list[pa.Table]:
    """One validated table of ``events`` per input view (``InvalidRequestError`` if any
    event does not validate)."""
    cols = arrow_columns([e.row for e in events])
    for name in (naming.timestamp_field, naming.created_timestamp_column):
        if name and name in cols:
            cols[name] = epoch_numbers_to_timestamps(cols[name])
    return [validate_rows(i, cols, naming, max_clock_skew=max_clock_skew) for i in inputs]
