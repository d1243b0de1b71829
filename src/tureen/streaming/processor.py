"""The stream processor: one source (a Kafka topic or a push source) and every stream view
it feeds. Transport-free: the Kafka consumer and the HTTP routes hand it decoded events.

For each batch, in this order:

1. validate every event against every view of the source (``tureen.ingest.validate_rows``,
   the same checks as ``push``); a bad event becomes a dead letter with the reason, the
   others go on;
2. mark events behind the watermark as late (per partition: the watermark is the oldest
   partition's newest event time minus the source's ``watermark_delay``; it only moves
   forward). Latest-value views take late events anyway (the online store keeps the newer
   row); windows count them only in a view with ``late_events="update"``, and only within
   its ``allowed_lateness`` (rewriting the closed windows they change);
3. add on-time events to each aggregation view's windows and close every window the
   watermark passed;
4. queue the online rows (latest values, closed windows) and write them
   (``write_online``); a store that is down raises BackendUnavailableError with the rows
   still queued, so the caller pauses and retries without reprocessing anything;
5. buffer the offline rows; a checkpoint takes them (``take_checkpoint``, with the state
   they bring the log to) and writes the window logs, then the event log, whose part
   records that state (``write_checkpoint``, in another thread if the caller likes: the
   next batches go into a fresh buffer). Offsets are committed only after it is written.

After a restart, ``restore`` rebuilds the windows from the event log (events each view
counted, one per event id) and resumes the watermark state its newest parts recorded.

The pieces live beside this module: ``events`` (events, dead letters, validation),
``progress`` (watermark and replay skipping), ``window_io`` (tables in and out of windows)
and ``checkpoints`` (offline buffers and checkpoint writes).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from tureen.definitions import FeatureView, FileSource, KafkaSource, PushSource, StreamFeatureView
from tureen.errors import InvalidRequestError
from tureen.ingest import DEFAULT_MAX_CLOCK_SKEW, validate_rows
from tureen.online.encoding import CREATED_COLUMN, EVENT_COLUMN
from tureen.online.keys import encoder_for
from tureen.online.protocol import DefersLogCheckpoints, OnlineStore
from tureen.streaming import checkpoints, progress
from tureen.streaming.checkpoints import Buffers, Checkpoint
from tureen.streaming.event_log import EVENT_ID, LogFolder, compact, dedupe, merge_states
from tureen.streaming.events import (
    BatchResult,
    DeadLetter,
    Event,
    epoch_numbers_to_timestamps,
    validate_events,
)
from tureen.streaming.window_io import (
    counted_events,
    micros,
    window_args,
    window_table,
)
from tureen.streaming.windows import WindowRows, WindowState
from tureen.types import Float32, Float64

__all__ = [
    "BatchResult",
    "Checkpoint",
    "DeadLetter",
    "Event",
    "Source",
    "StreamProcessor",
    "ViewCounters",
    "counted_events",
    "epoch_numbers_to_timestamps",
]

log = logging.getLogger(__name__)
Source = KafkaSource | PushSource


@dataclass
class ViewCounters:
    """What one view has seen since the process started (the status and /metrics)."""

    rows: int = 0
    late: int = 0
    late_updated: int = 0  # late events counted in windows (late_events="update")
    dead_letters: int = 0
    windows_emitted: int = 0
    online_rows_written: int = 0
    last_event_us: int | None = None


class StreamProcessor:
    """Ingests events of one source into its views' online rows, windows and offline logs."""

    def __init__(
        self,
        source: Source,
        views: Sequence[StreamFeatureView],
        store: OnlineStore | None,
        repo_path: Path,
        clock: Callable[[], float] = time.time,
        max_clock_skew: timedelta | None = DEFAULT_MAX_CLOCK_SKEW,
    ) -> None:
        if not views:
            raise InvalidRequestError(f"source {source.name!r} feeds no stream feature view.")
        self.source = source
        self.views = tuple(views)
        self.store = store
        self.clock = clock
        self.max_clock_skew = max_clock_skew  # events dated further ahead are dead letters
        self.naming: FileSource | KafkaSource = (
            source if isinstance(source, KafkaSource) else source.batch_source
        )
        self.delay_us = (
            int(source.watermark_delay.total_seconds() * 1_000_000)
            if isinstance(source, KafkaSource)
            else 0
        )
        self.offline = any(v.offline for v in self.views)
        self.event_log = LogFolder.of(source.batch_source, repo_path)
        self.window_logs = {
            v.name: LogFolder.of(v.offline_source, repo_path) for v in self.views if v.aggregations
        }
        self.windows = {
            v.name: WindowState(v, {f.name for f in v.schema if f.dtype in (Float32, Float64)})
            for v in self.views
            if v.aggregations
        }
        self._inputs = {v.name: v.input_view for v in self.views}
        self._encoders = {v.name: encoder_for(v.key_fields) for v in self.views}
        self.newest: dict[str, int] = {}
        self.watermark: int | None = None
        self.positions: dict[str, int] = {}  # last seq of each partition in the event log
        self._seen: dict[str, int] = {}  # last seq of each partition processed
        self.counters = {v.name: ViewCounters() for v in self.views}
        self._pending: list[tuple[FeatureView, list[bytes], pa.Table]] = []
        self._buf = Buffers()

    # ---- restart -------------------------------------------------------------------------
    def restore(self) -> int:
        """Resume the watermark and rebuild open windows from the event log; returns the
        number of events re-read."""
        state = merge_states(self.event_log.states())
        self.newest = {p: int(t) for p, t in state["newest"].items()}
        self.watermark = state["watermark"]
        self.positions = {p: int(s) for p, s in state["positions"].items()}
        self._seen = dict(self.positions)
        if not self.windows:
            return 0
        closed = state["closed"]
        starts = [
            closed[v] - self.windows[v].max_window - self.windows[v].slide
            for v in self.windows
            if v in closed
        ]
        since = min(starts) if starts and len(starts) == len(self.windows) else None
        ts_col = self.source.batch_source.timestamp_field
        if since is not None:  # late events still updating windows are read again too
            since -= max(v.allowed_lateness_us for v in self.views)
        table = self.event_log.read(since=(ts_col, since) if since is not None else None)
        n = 0
        if table is not None and table.num_rows:
            table = dedupe(table, [EVENT_ID])
            for view in self.views:
                if not view.aggregations:
                    continue
                counted, late = counted_events(view, table)
                rows = self.validate_log_rows(view, counted)
                self._feed(view, rows, np.ones(rows.num_rows, dtype=bool), late)
            n = table.num_rows
        for name, ws in self.windows.items():
            ws.restore(closed.get(name))
        return n

    def validate_log_rows(self, view: StreamFeatureView, table: pa.Table) -> pa.Table:
        """Rows of the event log typed for ``view`` (log column names)."""
        cols = {c: table.column(c) for c in table.column_names}
        return validate_rows(self._inputs[view.name], cols, max_clock_skew=None)

    def replay(self, view: StreamFeatureView, table: pa.Table, until_us: int) -> pa.Table | None:
        """Backfill: feed event-log rows (already deduplicated) that ``view`` counts into
        its windows, close them up to ``until_us`` and queue the rows online; returns the
        window rows (None if no window closed)."""
        counted, late = counted_events(view, table)
        rows = self.validate_log_rows(view, counted)
        self._feed(view, rows, np.ones(rows.num_rows, dtype=bool), late)
        emitted = self.windows[view.name].close_until(until_us)
        if not len(emitted):
            return None
        self._queue_windows(view, emitted)
        out = pa.concat_tables(self._buf.windows.pop(view.name))
        self._buf.rows -= out.num_rows
        return out

    # ---- one batch -----------------------------------------------------------------------
    def forget_position(self, partition: str) -> None:
        """The partition restarted from scratch (topic re-created): stop skipping its
        sequence numbers."""
        self.positions.pop(partition, None)
        self._seen.pop(partition, None)

    def last_offset(self, partition: str) -> int | None:
        """The last sequence number of ``partition`` processed (or restored from the event
        log); None before any."""
        return self._seen.get(partition)

    def process(self, events: Sequence[Event]) -> BatchResult:
        """Validate, route and queue one batch (see the module docstring); then write the
        online rows. Raises BackendUnavailableError if the online store is down (the rows
        stay queued: call ``write_online`` until it succeeds)."""
        events = progress.fresh(events, self._seen)
        good, tables, dead = validate_events(
            events, [self._inputs[v.name] for v in self.views], self.naming, self.max_clock_skew
        )
        for c in self.counters.values():
            c.dead_letters += len(dead)
        if not good:
            return BatchResult(0, 0, dead, None)
        ts = micros(tables[0].column(EVENT_COLUMN))
        behind, self.watermark = progress.lateness(
            good, ts, self.newest, self.watermark, self.delay_us
        )
        late = behind > 0
        on_time = ~late
        n_late = int(late.sum())
        emitted = 0
        newest = int(ts.max())
        for view, table in zip(self.views, tables, strict=True):
            c = self.counters[view.name]
            c.rows += len(good)
            c.late += n_late
            c.last_event_us = newest if c.last_event_us is None else max(c.last_event_us, newest)
            if not view.aggregations:
                if view.online:
                    self._pending.append(
                        (view, self._encoders[view.name].encode_arrow(table), table)
                    )
                continue
            updating = late & (behind <= view.allowed_lateness_us)
            c.late_updated += int(updating.sum())
            emitted += self._add_windows(view, table, on_time, updating)
        if self.offline:
            self._buffer_events(good, tables, behind)
        self.write_online()
        return BatchResult(len(good), n_late, dead, newest, emitted)

    def _add_windows(
        self,
        view: StreamFeatureView,
        table: pa.Table,
        on_time: np.ndarray[Any, Any],
        updating: np.ndarray[Any, Any],
    ) -> int:
        """Feed on-time events, then late ones the view accepts (rewriting the closed
        windows they change), then close what the watermark passed; returns rows emitted."""
        self._feed(view, table, on_time)
        emitted = 0
        if updating.any():
            args = self._window_args(view, table.filter(pa.array(updating)))
            rows = self.windows[view.name].add_late(*args)
            if len(rows):
                self._queue_windows(view, rows)
                emitted += len(rows)
        if self.watermark is None:
            return emitted
        rows = self.windows[view.name].close_until(self.watermark)
        if len(rows):
            self._queue_windows(view, rows)
        return emitted + len(rows)

    def _window_args(
        self, view: StreamFeatureView, table: pa.Table
    ) -> tuple[list[bytes], list[tuple[Any, ...]], list[int], dict[str, list[Any]]]:
        """(keys, join values, event times, aggregated columns) of ``table``'s rows."""
        return window_args(view, table, self.windows[view.name].columns, self._encoders[view.name])

    def _feed(
        self,
        view: StreamFeatureView,
        table: pa.Table,
        on_time: np.ndarray[Any, Any],
        late: np.ndarray[Any, Any] | None = None,
    ) -> None:
        """Add events to the view's windows (``late``: which of them arrived late and were
        counted, when re-reading the log)."""
        if not on_time.all():
            table = table.filter(pa.array(on_time))
        if table.num_rows:
            keys, joins, ts, cols = self._window_args(view, table)
            self.windows[view.name].add(
                keys, joins, ts, cols, None if late is None else late.tolist()
            )

    def _queue_windows(self, view: StreamFeatureView, rows: WindowRows) -> None:
        table = window_table(view, rows)
        c = self.counters[view.name]
        c.windows_emitted += table.num_rows
        if view.online:
            self._pending.append((view, rows.keys, table))
        self._buf.windows.setdefault(view.name, []).append(table)
        self._buf.rows += table.num_rows

    def _buffer_events(
        self, events: Sequence[Event], tables: Sequence[pa.Table], behind: np.ndarray[Any, Any]
    ) -> None:
        inputs = [self._inputs[v.name] for v in self.views]
        table = checkpoints.event_log_rows(self.source.batch_source, inputs, tables, events, behind)
        self._buf.events.append(table)
        self._buf.rows += table.num_rows

    # ---- writes ----------------------------------------------------------------------------
    @property
    def pending_online(self) -> int:
        return sum(t.num_rows for _, _, t in self._pending)

    def write_online(self) -> int:
        """Write the queued online rows, oldest first; raises (rows kept) if the store fails."""
        done = 0
        while self._pending:
            view, keys, table = self._pending[0]
            if self.store is not None:
                self.store.write(view, keys, table)
            self._pending.pop(0)
            self.counters[view.name].online_rows_written += table.num_rows
            done += table.num_rows
        return done

    def defer_log_checkpoints(self) -> None:
        """Online writes stop checkpointing the store's write-ahead log (SQLite: an fsync
        inside the commit every 1,000 pages, on the event -> visible path);
        ``checkpoint_log`` does it instead, from the ingester's background worker."""
        if isinstance(self.store, DefersLogCheckpoints):
            self.store.defer_log_checkpoints()

    def checkpoint_log(self) -> None:
        """Checkpoint the online store's write-ahead log (if it has one), without blocking
        its writers. Any thread."""
        if isinstance(self.store, DefersLogCheckpoints):
            self.store.checkpoint_log()

    @property
    def buffered_rows(self) -> int:
        return self._buf.rows

    def take_checkpoint(self) -> Checkpoint | None:
        """Hand over the buffered offline rows with the state they bring the log to (None
        if nothing is buffered); processing goes on into a fresh buffer meanwhile."""
        buf = self._buf
        if not buf.rows:
            return None
        self.positions = dict(self._seen)
        self._buf = Buffers()
        return Checkpoint(buf.windows, buf.events, self.state())

    def write_checkpoint(self, ck: Checkpoint) -> int:
        """Write ``ck``: window logs first, the event log last (its part records the
        watermark state, so it is the checkpoint). Touches only ``ck`` and the log files, so
        it may run in another thread while events are processed. A failure raises with the
        unwritten rows left in ``ck`` (``give_back``); parts written before it are harmless
        duplicates."""
        return checkpoints.write_checkpoint(ck, self.event_log, self.window_logs)

    def give_back(self, ck: Checkpoint) -> None:
        """Put a failed checkpoint's unwritten rows back in front of the buffer."""
        checkpoints.give_back(self._buf, ck)

    def flush(self) -> int:
        """Write the buffered offline rows now (``take_checkpoint`` + ``write_checkpoint``);
        raises, keeping the rows, if a write fails."""
        ck = self.take_checkpoint()
        if ck is None:
            return 0
        try:
            return self.write_checkpoint(ck)
        except BaseException:
            self.give_back(ck)
            raise

    def compact(self, min_files: int, target_rows: int) -> dict[str, tuple[int, int]]:
        """Merge the logs' small parts (after a flush: nothing is buffered); (files before,
        after) per log."""
        out = {
            "events": compact(
                self.event_log,
                [EVENT_ID],
                min_files,
                target_rows,
                self.source.batch_source.timestamp_field,
            )
        }
        for view in self.views:
            if view.aggregations:
                by = [*view.join_keys, EVENT_COLUMN, CREATED_COLUMN]
                out[f"{view.name} windows"] = compact(
                    self.window_logs[view.name], by, min_files, target_rows, EVENT_COLUMN
                )
        return out

    def state(self) -> dict[str, Any]:
        return {
            "newest": dict(self.newest),
            "watermark": self.watermark,
            "positions": dict(self.positions),
            "closed": {n: w.closed_us for n, w in self.windows.items() if w.closed_us is not None},
        }
