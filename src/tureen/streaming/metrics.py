"""Streaming numbers in Prometheus text format, from the ingesters' status files (so a
``tureen serve`` shows the consumers it hosts and those ``tureen ingest`` runs elsewhere on
the same repo)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tureen.streaming.status import ViewStatus, read_statuses

STATES = ("starting", "running", "backpressure", "broker_unavailable", "restarting", "stopped",
          "failed")
_FAMILIES = (
    ("tureen_stream_rows_total", "counter", "Events accepted per stream view.", "rows_total"),
    ("tureen_stream_late_events_total", "counter", "Events that arrived behind the watermark.",
     "late_total"),
    ("tureen_stream_late_events_updated_total", "counter", "Late events counted in their "
     "windows (late_events='update', within allowed_lateness); the rest were dropped from "
     "windows.", "late_updated_total"),
    ("tureen_stream_dead_letters_total", "counter", "Events sent to the dead-letter topic or "
     "Parquet.", "dead_letters_total"),
    ("tureen_stream_windows_emitted_total", "counter", "Window rows written.",
     "windows_emitted_total"),
    ("tureen_stream_rows_per_second", "gauge", "Events accepted per second (last interval).",
     "rows_per_second"),
    ("tureen_stream_lag_messages", "gauge", "Messages in the topic not yet ingested.",
     "lag_messages"),
    ("tureen_stream_lag_seconds", "gauge", "How far ingestion is behind the topic, in seconds.",
     "lag_seconds"),
)


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(statuses: Sequence[ViewStatus]) -> str:
    if not statuses:
        return ""
    lines: list[str] = []

    def labels(s: ViewStatus) -> str:
        return f'view="{_esc(s.view)}",source="{_esc(s.source)}"'

    for name, kind, help_text, attr in _FAMILIES:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for s in statuses:
            v = getattr(s, attr)
            if v is not None:
                lines.append(f"{name}{{{labels(s)}}} {float(v):g}")
    for name, help_text, attr in (
        ("tureen_stream_last_event_timestamp_seconds", "Newest event time seen (Unix).",
         "last_event_time"),
        ("tureen_stream_watermark_timestamp_seconds", "Watermark: windows before it are closed "
         "(Unix).", "watermark"),
    ):
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for s in statuses:
            t = getattr(s, attr)
            if t is not None:
                lines.append(f"{name}{{{labels(s)}}} {t.timestamp():.6f}")
    lines += ["# HELP tureen_stream_consumer_state Consumer state of each stream view "
              "(1 for the current state).", "# TYPE tureen_stream_consumer_state gauge"]
    for s in statuses:
        for st in STATES:
            lines.append(f'tureen_stream_consumer_state{{{labels(s)},state="{st}"}} '
                         f"{1 if s.state == st else 0}")
    lines += ["# HELP tureen_stream_backend_unavailable 1 while a store or broker the view "
              "needs is unavailable.", "# TYPE tureen_stream_backend_unavailable gauge"]
    for s in statuses:
        down = s.state in ("backpressure", "broker_unavailable")
        lines.append(f"tureen_stream_backend_unavailable{{{labels(s)}}} {1 if down else 0}")
    return "\n".join(lines) + "\n"


def repo_renderer(repo_path: Path, stale_after: float = 10.0) -> Renderer:
    return Renderer(repo_path, stale_after)


class Renderer:
    """A callable that renders the repo's stream status (registered with the server's
    metrics)."""

    def __init__(self, repo_path: Path, stale_after: float) -> None:
        self.repo_path, self.stale_after = repo_path, stale_after

    def __call__(self) -> str:
        return render(read_statuses(self.repo_path, self.stale_after))
