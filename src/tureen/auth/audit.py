"""The audit log: who did what to which resource, with what outcome, under which request id.

Events are queued in memory (bounded; when full the oldest are dropped and counted) and
written by a background thread in batches, so a request never waits for the audit disk.
Sinks: a Parquet dataset beside the inference log (default ``data/audit_log``, hive-partitioned
``date=YYYY-MM-DD/part-<uuid>.parquet``, each file renamed into place when complete), or Kafka
(``kafka://HOST:PORT?topic=tureen.audit``, one JSON message per event keyed by request id).
"""

from __future__ import annotations

import collections
import logging
import os
import posixpath
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

from tureen.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_DIR = "data/audit_log"
DEFAULT_TOPIC = "tureen.audit"
OUTCOMES = ("ok", "error", "denied", "unauthenticated")

SCHEMA = pa.schema([
    ("timestamp", pa.timestamp("us", tz="UTC")),
    ("request_id", pa.string()),
    ("subject", pa.string()),
    ("source", pa.string()),
    ("token_id", pa.string()),
    ("action", pa.string()),
    ("resource", pa.string()),
    ("outcome", pa.string()),
    ("status", pa.int32()),
    ("route", pa.string()),
    ("peer", pa.string()),
])


@dataclass(frozen=True)
class AuditEvent:
    timestamp: datetime
    request_id: str
    subject: str
    source: str
    token_id: str | None
    action: str
    resource: str
    outcome: str  # ok | error | denied | unauthenticated
    status: int
    route: str
    peer: str | None = None

    def to_json_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["timestamp"] = self.timestamp.isoformat()
        return d


class AuditSink(Protocol):
    def write(self, events: Sequence[AuditEvent]) -> None: ...

    def close(self) -> None: ...


class ParquetAuditSink:
    def __init__(self, root: str | Path) -> None:
        self.root = str(root)

    def write(self, events: Sequence[AuditEvent]) -> None:
        by_day: dict[str, list[AuditEvent]] = collections.defaultdict(list)
        for e in events:
            by_day[e.timestamp.date().isoformat()].append(e)
        for day, evs in by_day.items():
            folder = posixpath.join(self.root, f"date={day}")
            os.makedirs(folder, exist_ok=True)
            name = f"part-{uuid.uuid4().hex}.parquet"
            tmp = posixpath.join(folder, f".{name}.tmp")
            try:
                pq.write_table(to_table(evs), tmp, compression="zstd")
                os.replace(tmp, posixpath.join(folder, name))
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    def close(self) -> None:
        pass


class KafkaAuditSink:
    def __init__(self, bootstrap: str, topic: str = DEFAULT_TOPIC,
                 config: Mapping[str, Any] | None = None) -> None:
        try:
            from confluent_kafka import Producer
        except ImportError as exc:
            raise ConfigError("the Kafka audit sink needs confluent-kafka: pip install "
                              "'tureen[kafka]'.") from exc
        self.topic = topic
        self._producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                                   "enable.idempotence": True, **dict(config or {})})

    def write(self, events: Sequence[AuditEvent]) -> None:
        import orjson

        for e in events:
            self._producer.produce(self.topic, key=e.request_id.encode(),
                                   value=orjson.dumps(e.to_json_dict()))
            self._producer.poll(0)
        self._producer.flush(30.0)

    def close(self) -> None:
        self._producer.flush(30.0)


def to_table(events: Sequence[AuditEvent]) -> pa.Table:
    cols: dict[str, list[Any]] = {f.name: [] for f in SCHEMA}
    for e in events:
        for k, v in asdict(e).items():
            cols[k].append(v)
    return pa.table(cols, schema=SCHEMA)


def audit_root(sink: str | None, repo_path: str | Path = ".") -> str:
    target = sink or DEFAULT_DIR
    if target.startswith("parquet://"):
        target = target[len("parquet://"):]
    if Path(target).is_absolute():
        return target
    return str((Path(repo_path) / target).resolve())


def sink_from_url(url: str | None, repo_path: str | Path = ".") -> AuditSink:
    if url and url.startswith("kafka://"):
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        topic = query.pop("topic", DEFAULT_TOPIC)
        return KafkaAuditSink(parts.netloc, topic, query)
    if url and "://" in url and not url.startswith("parquet://"):
        raise ConfigError(f"serving.audit.sink {url!r}: use a folder (Parquet) or "
                          "kafka://HOST:PORT?topic=NAME.")
    return ParquetAuditSink(audit_root(url, repo_path))


class AuditLog:
    """Queue events and write them in batches from one background thread."""

    def __init__(self, sink: AuditSink, queue_size: int = 10_000,
                 flush_seconds: float = 1.0, reads: bool = False) -> None:
        self.sink = sink
        self.reads = reads
        self.flush_seconds = flush_seconds
        self.dropped = 0
        self.written = 0
        self.failed = 0
        self._queue: collections.deque[AuditEvent] = collections.deque(maxlen=queue_size)
        self._wake = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._pid = 0

    def _ensure_writer(self) -> None:
        """The writer thread of this process (started on first use: a forked server worker
        has none of its parent's threads)."""
        if self._pid != os.getpid() or self._thread is None:
            self._pid = os.getpid()
            self._queue.clear()  # events of the parent are the parent's to write
            self._thread = threading.Thread(target=self._run, name="tureen-audit", daemon=True)
            self._thread.start()

    def record(self, event: AuditEvent) -> None:
        if self._pid != os.getpid():
            self._ensure_writer()
        q = self._queue
        if len(q) == q.maxlen:
            self.dropped += 1
        q.append(event)

    def _drain(self) -> list[AuditEvent]:
        out: list[AuditEvent] = []
        q = self._queue
        while q:
            out.append(q.popleft())
        return out

    def _run(self) -> None:
        while True:
            with self._wake:
                if not self._closed:
                    self._wake.wait(self.flush_seconds)
                closed = self._closed
            self._write(self._drain())
            if closed:
                return

    def _write(self, batch: list[AuditEvent]) -> None:
        if not batch:
            return
        try:
            self.sink.write(batch)
            self.written += len(batch)
        except Exception as exc:  # the audit sink is down: say so, count, keep serving
            self.failed += len(batch)
            log.error("audit log: %d events could not be written: %s", len(batch), exc)

    def flush(self) -> None:
        self._write(self._drain())

    def close(self, timeout: float = 10.0) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._thread is not None and self._pid == os.getpid():
            self._thread.join(timeout)
        self.flush()
        self.sink.close()


def read_events(
    root: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    subject: str | None = None,
    action: str | None = None,
    outcome: str | None = None,
    request_id: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Events of the Parquet audit log, oldest first, filtered; the newest ``limit`` of them."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    if not Path(root).is_dir():
        return []
    files = sorted(str(p) for p in Path(root).glob("date=*/part-*.parquet"))
    if not files:
        return []
    table = ds.dataset(files, schema=SCHEMA, format="parquet").to_table()
    mask = None
    for col, value in (("subject", subject), ("action", action), ("outcome", outcome),
                       ("request_id", request_id)):
        if value is not None:
            m = pc.equal(table[col], value)
            mask = m if mask is None else pc.and_(mask, m)
    ts = table["timestamp"]
    if since is not None:
        m = pc.greater_equal(ts, pa.scalar(since, SCHEMA.field("timestamp").type))
        mask = m if mask is None else pc.and_(mask, m)
    if until is not None:
        m = pc.less(ts, pa.scalar(until, SCHEMA.field("timestamp").type))
        mask = m if mask is None else pc.and_(mask, m)
    if mask is not None:
        table = table.filter(mask)
    table = table.sort_by("timestamp")
    if limit is not None and table.num_rows > limit:
        table = table.slice(table.num_rows - limit)
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def event(
    *, request_id: str, subject: str, source: str, token_id: str | None, action: str,
    resource: str, outcome: str, status: int, route: str, peer: str | None = None,
) -> AuditEvent:
    return AuditEvent(datetime.now(UTC), request_id, subject, source, token_id, action,
                      resource, outcome, status, route, peer)


def summarize(events: Iterable[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = collections.Counter(e["outcome"] for e in events)
    return dict(out)
