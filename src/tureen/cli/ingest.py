"""``tureen ingest``: run the stream consumers; ``status``, ``backfill``, ``compact``."""

from __future__ import annotations

import signal
import threading
from typing import Any

import click

from tureen.cli.output import console, json_option, print_json, repo_option, table
from tureen.errors import InvalidRequestError

_VIEWS = click.option("--views", "-v", multiple=True,
                      help="Only these stream views (repeatable; default: all).")


def _stream_views(store: Any, names: tuple[str, ...]) -> list[Any]:
    from tureen.definitions import StreamFeatureView

    snap = store.snapshot()
    views = [v for v in snap.feature_views.values() if isinstance(v, StreamFeatureView)]
    if names:
        known = {v.name for v in views}
        missing = sorted(set(names) - known)
        if missing:
            raise InvalidRequestError(
                f"no stream feature view named {missing}; stream views: {sorted(known)}.")
        views = [v for v in views if v.name in names]
    return views


def register(cli: click.Group) -> None:
    @cli.group(invoke_without_command=True)
    @repo_option
    @_VIEWS
    @click.option("--lifeline-fd", type=int, hidden=True,
                  help="Stop (as on SIGTERM) when this pipe reaches EOF: the process that "
                       "started this one died (`tureen serve --ingest`).")
    @click.pass_context
    def ingest(ctx: click.Context, repo: str, views: tuple[str, ...],
               lifeline_fd: int | None) -> None:
        """Consume every KafkaSource of the repo's stream views until Ctrl-C / SIGTERM.

        Offsets are committed only after the rows are in the online store and the offline
        log, so a crash loses nothing and a restart resumes where the commits stopped."""
        if ctx.invoked_subcommand is not None:
            return
        from tureen.store import FeatureStore
        from tureen.streaming.service import StreamService, freeze_startup_heap

        store = FeatureStore(repo)
        service = StreamService(store, list(views) or None)
        sources = service.kafka_sources()
        if not sources:
            raise InvalidRequestError(
                "no stream feature view reads a KafkaSource (define one and run `tureen "
                "apply`); push-source views are fed over HTTP by `tureen serve`.")
        done = threading.Event()

        def _stop(signum: int, frame: Any) -> None:
            done.set()

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        if lifeline_fd is not None:
            from tureen.lifeline import watch_in_thread

            def _orphaned() -> None:
                console.print("The server that started this ingester is gone.")
                done.set()

            watch_in_thread(lifeline_fd, _orphaned)
        freeze_startup_heap()
        service.start()
        names = ", ".join(f"{s.name} ({s.topic})" for s in sources)
        console.print(f"Ingesting {names} into project {store.project}. Ctrl-C stops "
                      "(after a final checkpoint). `tureen ingest status` shows progress.")
        done.wait()
        console.print("Stopping: writing the last rows and committing offsets...")
        service.stop()
        store.close()

    @ingest.command("status")
    @repo_option
    @json_option
    def status(repo: str, as_json: bool) -> None:
        """Per stream view: consumer state, lag, rows/s, last event, watermark, dead letters."""
        from tureen.store import FeatureStore
        from tureen.streaming.status import ViewStatus, read_statuses

        store = FeatureStore(repo)
        seen = {s.view: s for s in read_statuses(store.repo_path,
                                                 3 * store.config.streaming.status_interval_seconds
                                                 + 5)}
        items: list[ViewStatus] = []
        for v in _stream_views(store, ()):
            st = seen.get(v.name)
            if st is None:
                src = v.event_source
                topic = getattr(src, "topic", None)
                st = ViewStatus(view=v.name, source=src.name,
                                source_kind="kafka" if topic else "push", topic=topic,
                                state="stopped", error="never ran")
            items.append(st)
        if as_json:
            print_json([s.model_dump(mode="json") for s in items])
            return
        table("Stream views", ["view", "source", "state", "lag msgs", "lag s", "rows/s",
                               "rows", "late", "dead letters", "last event", "watermark"],
              [[s.view, s.topic or s.source, s.state + (f" ({s.error})" if s.error else ""),
                s.lag_messages, s.lag_seconds, s.rows_per_second, s.rows_total,
                f"{s.late_total} ({s.late_updated_total} updated windows)"
                if s.late_updated_total else s.late_total,
                s.dead_letters_total, s.last_event_time, s.watermark] for s in items])

    @ingest.command("backfill")
    @repo_option
    @_VIEWS
    def backfill_cmd(repo: str, views: tuple[str, ...]) -> None:
        """Recompute window rows of aggregation views from their event logs (same code as
        the stream) and write them online."""
        from tureen.store import FeatureStore
        from tureen.streaming.maintenance import backfill

        store = FeatureStore(repo)
        for v in _stream_views(store, views):
            if not v.aggregations:
                continue
            with console.status(f"Backfilling {v.name}..."):
                r = backfill(v, store.online, store.repo_path)
            console.print(f"{r.view}: {r.events} events → {r.windows} window rows")

    @ingest.command("compact")
    @repo_option
    @_VIEWS
    def compact_cmd(repo: str, views: tuple[str, ...]) -> None:
        """Merge small offline log files, one row per event (and per window)."""
        from tureen.store import FeatureStore
        from tureen.streaming.maintenance import compact_view

        store = FeatureStore(repo)
        cfg = store.config.streaming.model_copy(update={"compact_min_files": 2})
        for v in _stream_views(store, views):
            for log, (before, after) in compact_view(v, store.repo_path, cfg).items():
                console.print(f"{v.name} {log}: {before} → {after} files")
