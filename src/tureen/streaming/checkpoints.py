"""The offline side of stream processing: rows buffered for the logs, and checkpoints.

A batch adds its events (with their event id and how late they were) to the event log's
buffer and its closed windows to the view's window-log buffer. A checkpoint takes the
buffers with the state (watermark, partition positions, closed windows) they bring the event
log to, and is written window logs first, the event log last: its part records that state,
so it is the checkpoint. A failed write leaves the unwritten rows in the checkpoint, to be
put back in front of the buffer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from tureen.definitions import FeatureView, FileSource
from tureen.ingest import offline_table
from tureen.streaming.event_log import BEHIND, EVENT_ID, LATE, LogFolder
from tureen.streaming.events import Event


@dataclass
class Buffers:
    events: list[pa.Table] = field(default_factory=list)
    windows: dict[str, list[pa.Table]] = field(default_factory=dict)
    rows: int = 0


@dataclass
class Checkpoint:
    """Offline rows taken out of the buffer to be written, and the state they bring the
    event log to."""

    windows: dict[str, list[pa.Table]]
    events: list[pa.Table]
    state: dict[str, Any]

    @property
    def rows(self) -> int:
        return int(
            sum(t.num_rows for ts in self.windows.values() for t in ts)
            + sum(t.num_rows for t in self.events)
        )


def event_log_rows(
    batch_source: FileSource,
    inputs: Sequence[FeatureView],
    tables: Sequence[pa.Table],
    events: Sequence[Event],
    behind: np.ndarray[Any, Any],
) -> pa.Table:
    """The event-log rows of a batch's validated ``events`` (one table per input view) that
    arrived ``behind`` the watermark (µs; 0: on time)."""
    table = offline_table(batch_source, inputs, tables)
    table = table.append_column(EVENT_ID, pa.array([e.event_id for e in events], pa.string()))
    late = behind > 0
    table = table.append_column(LATE, pa.array(late))
    return table.append_column(BEHIND, pa.array(behind, pa.int64(), mask=~late))


def write_checkpoint(
    ck: Checkpoint, event_log: LogFolder, window_logs: Mapping[str, LogFolder]
) -> int:
    """Write ``ck``, window logs first, the event log last; returns the rows written. A
    failure raises with the unwritten rows left in ``ck``."""
    rows = ck.rows
    for name, tables in list(ck.windows.items()):
        window_logs[name].write(pa.concat_tables(tables))
        del ck.windows[name]
    if ck.events:
        event_log.write(pa.concat_tables(ck.events, promote_options="default"), ck.state)
        ck.events = []
    return rows


def give_back(buf: Buffers, ck: Checkpoint) -> None:
    """Put a failed checkpoint's unwritten rows back in front of ``buf``."""
    for name, tables in ck.windows.items():
        buf.windows[name] = [*tables, *buf.windows.get(name, [])]
    buf.events = [*ck.events, *buf.events]
    buf.rows += ck.rows
