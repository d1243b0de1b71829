"""StreamService: every stream source of a feature repo, supervised.

- ``start()`` runs one ``KafkaIngester`` thread per KafkaSource that feeds a selected stream
  view; a crashed ingester is logged and restarted with backoff (1 s doubling to 30 s) from
  its last committed offsets.
- ``processor(source)`` is the in-process processor of a push source (HTTP ingestion).
- A status thread writes each source's ``ViewStatus`` list every
  ``status_interval_seconds`` (``tureen ingest status``, ``/metrics``, the console).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from tureen.definitions import KafkaSource, PushSource, StreamFeatureView
from tureen.errors import InvalidRequestError, NotFoundError
from tureen.streaming.config import StreamingConfig
from tureen.streaming.kafka import KafkaIngester
from tureen.streaming.processor import StreamProcessor
from tureen.streaming.status import ViewStatus, micros_to_utc, write_status

if TYPE_CHECKING:
    from tureen.store import FeatureStore

log = logging.getLogger(__name__)
Source = KafkaSource | PushSource


def stream_sources(views: Sequence[StreamFeatureView]) -> dict[str, tuple[Source,
                                                                          list[StreamFeatureView]]]:
    out: dict[str, tuple[Source, list[StreamFeatureView]]] = {}
    for v in views:
        src = v.event_source
        if src.name in out and out[src.name][0] != src:
            raise InvalidRequestError(
                f"two different sources are named {src.name!r}; rename one.")
        out.setdefault(src.name, (src, []))[1].append(v)
    return out


def freeze_startup_heap() -> None:
    """Move every object alive now (modules, definitions, clients) out of the collector's
    reach, so a full collection while events flow scans only what ingestion allocated since:
    a 50-70 ms pause (held up every event arriving meanwhile) becomes about half. For a
    process that ingests and does little else (``tureen ingest``)."""
    gc.collect()
    gc.freeze()


class StreamService:
    def __init__(self, store: FeatureStore, views: Sequence[str] | None = None,
                 config: StreamingConfig | None = None) -> None:
        self.store = store
        self.config = config if config is not None else store.config.streaming
        snap = store.snapshot()
        every = [v for v in snap.feature_views.values() if isinstance(v, StreamFeatureView)]
        if views:
            unknown = sorted(set(views) - {v.name for v in every})
            if unknown:
                raise NotFoundError(
                    f"no stream feature view named {unknown}; stream views: "
                    f"{sorted(v.name for v in every) or 'none'} (run `tureen apply` first)."
                )
            every = [v for v in every if v.name in views]
        self.sources = stream_sources(every)
        self.stop_event = threading.Event()
        self.ingesters: dict[str, KafkaIngester] = {}
        self._threads: list[threading.Thread] = []
        self._processors: dict[str, StreamProcessor] = {}
        self._lock = threading.Lock()
        self._rates: dict[str, tuple[float, int]] = {}
        self.rows_per_second: dict[str, float] = {}

    @property
    def group_prefix(self) -> str:
        return self.config.group_id or f"tureen.{self.store.project}"

    def _new_processor(self, name: str) -> StreamProcessor:
        source, views = self.sources[name]
        skew = self.store.config.ingest.max_clock_skew_seconds
        return StreamProcessor(source, views, self.store.online, self.store.repo_path,
                               max_clock_skew=None if skew is None else timedelta(seconds=skew))

    # ---- HTTP (push sources) ---------------------------------------------------------------
    def processor(self, name: str) -> StreamProcessor:
        """The processor of push source ``name`` (restored from its log on first use)."""
        with self._lock:
            proc = self._processors.get(name)
            if proc is None:
                entry = self.sources.get(name)
                if entry is None or not isinstance(entry[0], PushSource):
                    pushes = sorted(n for n, (s, _) in self.sources.items()
                                    if isinstance(s, PushSource))
                    raise NotFoundError(
                        f"no push source named {name!r} feeds a stream feature view; push "
                        f"sources with stream views: {pushes or 'none'}."
                    )
                proc = self._processors[name] = self._new_processor(name)
                proc.restore()
            return proc

    def push_processors(self) -> dict[str, StreamProcessor]:
        """The push-source processors started so far."""
        with self._lock:
            return dict(self._processors)

    # ---- Kafka -----------------------------------------------------------------------------
    def kafka_sources(self) -> list[KafkaSource]:
        return [s for s, _ in self.sources.values() if isinstance(s, KafkaSource)]

    def start(self) -> None:
        """Start a supervised ingester thread per KafkaSource, and the status writer."""
        for src in self.kafka_sources():
            t = threading.Thread(target=self._supervise, args=(src,), daemon=True,
                                 name=f"tureen-ingest-{src.name}")
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._report_loop, daemon=True, name="tureen-ingest-status")
        t.start()
        self._threads.append(t)

    def _supervise(self, src: KafkaSource) -> None:
        backoff = 1.0
        while not self.stop_event.is_set():
            ing = KafkaIngester(src, lambda: self._new_processor(src.name), self.config,
                                f"{self.group_prefix}.{src.name}", self.stop_event)
            old = self.ingesters.get(src.name)
            if old is not None:  # keep the totals across restarts
                ing.processor.counters = old.processor.counters
            self.ingesters[src.name] = ing
            try:
                ing.run()
                return
            except Exception as exc:
                log.exception("ingester of %s failed; restarting in %.0f s", src.name, backoff)
                ing.state, ing.error = "restarting", f"{type(exc).__name__}: {exc}"
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop consuming: each ingester checkpoints (writes and commits) and leaves its group."""
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        for name, proc in self._processors.items():
            try:
                proc.write_online()
                proc.flush()
            except Exception:
                log.exception("could not flush the stream log of %s", name)
        self.write_statuses()

    # ---- status ------------------------------------------------------------------------------
    def statuses(self) -> list[ViewStatus]:
        out: list[ViewStatus] = []
        for name, (src, views) in self.sources.items():
            ing = self.ingesters.get(name)
            proc = ing.processor if ing is not None else self._processors.get(name)
            for v in views:
                c = proc.counters[v.name] if proc is not None else None
                kafka = isinstance(src, KafkaSource)
                out.append(ViewStatus(
                    view=v.name, source=name, source_kind="kafka" if kafka else "push",
                    topic=src.topic if isinstance(src, KafkaSource) else None,
                    consumer_group=f"{self.group_prefix}.{name}" if kafka else None,
                    state=(ing.state if ing is not None else "running")  # type: ignore[arg-type]
                    if (ing is not None or proc is not None) else "stopped",
                    error=ing.error if ing is not None else None,
                    lag_messages=ing.lag_messages if ing is not None else None,
                    lag_seconds=ing.lag_seconds if ing is not None else None,
                    rows_per_second=self.rows_per_second.get(v.name, 0.0),
                    rows_total=c.rows if c else 0,
                    late_total=c.late if c else 0,
                    late_updated_total=c.late_updated if c else 0,
                    dead_letters_total=c.dead_letters if c else 0,
                    windows_emitted_total=c.windows_emitted if c else 0,
                    last_event_time=micros_to_utc(c.last_event_us if c else None),
                    watermark=micros_to_utc(proc.watermark if proc is not None else None),
                ))
        return out

    def write_statuses(self) -> list[ViewStatus]:
        now = time.monotonic()
        all_status = self.statuses()
        for st in all_status:
            last = self._rates.get(st.view)
            if last is not None and now > last[0]:
                self.rows_per_second[st.view] = round((st.rows_total - last[1]) / (now - last[0]),
                                                      1)
            self._rates[st.view] = (now, st.rows_total)
        by_source: dict[str, list[ViewStatus]] = {}
        for st in all_status:
            by_source.setdefault(st.source, []).append(st)
        for name, items in by_source.items():
            try:
                write_status(self.store.repo_path, name, items)
            except OSError:
                log.exception("cannot write the status of %s", name)
        return all_status

    def _report_loop(self) -> None:
        while not self.stop_event.wait(self.config.status_interval_seconds):
            self.write_statuses()
