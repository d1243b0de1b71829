"""Batch work on stream logs: backfill windows from the event log, compact the logs.

``backfill`` recomputes a view's window rows from its event log with the same
``WindowState`` the stream uses (the events the view counts, one per event id, closed up to
the recorded watermark), replaces the window log with them and writes them online (the
store keeps the newest row). On a log the stream wrote it reproduces the stream's rows
exactly; on history loaded by other means it builds them for the first time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow.compute as pc

from tureen.definitions import StreamFeatureView
from tureen.online.protocol import OnlineStore
from tureen.streaming.config import StreamingConfig
from tureen.streaming.event_log import EVENT_ID, dedupe, merge_states
from tureen.streaming.processor import StreamProcessor


@dataclass(frozen=True)
class BackfillResult:
    view: str
    events: int
    windows: int


def backfill(view: StreamFeatureView, store: OnlineStore | None, repo_path: Path
             ) -> BackfillResult:
    proc = StreamProcessor(view.event_source, [view], store, repo_path)
    if not view.aggregations:
        return BackfillResult(view.name, 0, 0)
    log = proc.event_log
    old_windows = proc.window_logs[view.name].parts()
    state = merge_states(log.states())
    table = log.read()
    if table is None or not table.num_rows:
        return BackfillResult(view.name, 0, 0)
    table = dedupe(table, [EVENT_ID])
    ts_col = view.event_log.timestamp_field
    table = table.sort_by(ts_col)
    end = state["watermark"]
    if end is None:  # a log written by other means: close every window its events reach
        ws = proc.windows[view.name]
        end = int(pc.max(pc.cast(table.column(ts_col), "int64")).as_py())
        end += ws.max_window + ws.slide
    windows = proc.replay(view, table, end)
    proc.write_online()
    if windows is not None:
        proc.window_logs[view.name].write(windows)
    proc.window_logs[view.name].remove(old_windows)
    return BackfillResult(view.name, table.num_rows, 0 if windows is None else windows.num_rows)


def compact_view(view: StreamFeatureView, repo_path: Path, cfg: StreamingConfig
                 ) -> dict[str, tuple[int, int]]:
    """Compact the view's event log and its window log; (files before, after) for each."""
    proc = StreamProcessor(view.event_source, [view], None, repo_path)
    return proc.compact(cfg.compact_min_files, cfg.compact_target_rows)
