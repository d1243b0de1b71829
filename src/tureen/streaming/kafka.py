"""The Kafka consumer of one KafkaSource: batches in, offsets committed once durable.

The loop: consume up to ``batch_max_messages`` (waiting at most ``batch_wait_ms``), decode,
hand the batch to the ``StreamProcessor`` (online rows written at once, offline rows
buffered), send dead letters to ``<topic><dead_letter_suffix>``; at least every
``flush_interval_seconds`` a checkpoint takes the buffered offline rows and the offsets
read so far, and a worker thread writes the offline parts, flushes the dead-letter
producer and checkpoints the online store's write-ahead log (SQLite; the loop's own writes
never do: that was an fsync inside a commit every 1,000 pages, on the event -> visible
path); the loop commits those offsets once the worker is done. So a crash (even ``kill
-9``) loses nothing: the consumer group resumes from the last commit and the processor
skips what the offline log already holds. The loop itself never waits on a file or on a
broker request of its own, so an event that arrives during a checkpoint is not held up by
it (that was the tail of event -> online lag); the lag in the status comes from the high
watermark of the last fetch.

When the online store (or the disk) fails, the consumer pauses its partitions, keeps its
group membership alive, retries with backoff up to ``retry_max_seconds`` apart and resumes
when the write goes through — nothing is dropped and nothing more is read meanwhile. The
state (``backpressure`` with the BackendUnavailable message, ``broker_unavailable`` while
librdkafka cannot reach the brokers) is in the status.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tureen.definitions import KafkaSource
from tureen.errors import BackendUnavailableError, ConfigError
from tureen.streaming.config import StreamingConfig
from tureen.streaming.decode import BadMessageError, decoder_for
from tureen.streaming.processor import Checkpoint, DeadLetter, Event, StreamProcessor

log = logging.getLogger(__name__)

# Settings tureen owns: offsets are committed by the loop, never automatically.
_FIXED = {"enable.auto.commit": False, "enable.auto.offset.store": False}
CONSUMER_DEFAULTS = {
    "auto.offset.reset": "earliest",
    "session.timeout.ms": 6000,      # faster group joins after a restart
    "heartbeat.interval.ms": 500,
    "fetch.wait.max.ms": 5,          # low latency: do not let the broker sit on a fetch
    "fetch.min.bytes": 1,
    "queued.max.messages.kbytes": 65536,
}


def consumer_config(source: KafkaSource, cfg: StreamingConfig, group: str,
                    on_error: Callable[[Any], None]) -> dict[str, Any]:
    servers = source.bootstrap_servers or cfg.bootstrap_servers
    if not servers:
        raise ConfigError(
            f"KafkaSource {source.name!r} names no bootstrap_servers and tureen.yaml has no "
            "streaming.bootstrap_servers: set one of them."
        )
    conf: dict[str, Any] = {**CONSUMER_DEFAULTS, **cfg.consumer, **_FIXED}
    conf.update({"bootstrap.servers": servers, "group.id": group, "error_cb": on_error})
    return conf


@dataclass
class _Job:
    """A checkpoint being written by the worker: the offsets it makes safe to commit."""

    processor: StreamProcessor
    checkpoint: Checkpoint | None
    offsets: dict[int, int]
    done: Future[None]


class KafkaIngester:
    """Consumes one source's topic into its processor until ``stop`` is set."""

    def __init__(
        self,
        source: KafkaSource,
        make_processor: Callable[[], StreamProcessor],
        cfg: StreamingConfig,
        group: str,
        stop: threading.Event,
    ) -> None:
        self.source = source
        self.cfg = cfg
        self.group = group
        self.stop = stop
        self.make_processor = make_processor
        self.processor = make_processor()
        self.state = "starting"
        self.error: str | None = None
        self.lag_messages: int | None = None
        self.lag_seconds: float | None = None
        self.dlq_topic = source.topic + cfg.dead_letter_suffix
        self._decode = decoder_for(source)
        self._next: dict[int, int] = {}      # partition -> next offset to commit
        self._last_ts: dict[int, int] = {}   # partition -> kafka timestamp (ms) last seen
        self._consumer: Any = None
        self._consumer_conf: dict[str, Any] = {}
        self._producer: Any = None
        self._paused = False
        self._lag_at = 0.0
        self._unwritten = 0
        self._checkpoints = 0
        self._job: _Job | None = None
        self._pool: ThreadPoolExecutor | None = None

    # ---- librdkafka callbacks --------------------------------------------------------------
    def _on_error(self, err: Any) -> None:
        from confluent_kafka import KafkaError

        code = err.code()
        if code in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT,
                    KafkaError._RESOLVE):
            if self.state not in ("backpressure",):
                self.state = "broker_unavailable"
            self.error = f"BackendUnavailable: Kafka at {self.servers}: {err.str()}"
        log.warning("kafka %s: %s", self.source.name, err.str())

    @property
    def servers(self) -> str:
        return self.source.bootstrap_servers or self.cfg.bootstrap_servers

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        try:
            self._settle(block=True)  # its rows are in the log before the log is re-read
        except BackendUnavailableError as exc:  # replayed from the last commit
            log.warning("%s: checkpoint before assignment failed: %s", self.source.name, exc)
        self.processor = self.make_processor()
        self.processor.restore()
        for tp in partitions:
            try:
                _, high = consumer.get_watermark_offsets(tp, timeout=5)
            except Exception:
                continue
            known = self.processor.positions.get(str(tp.partition))
            if known is not None and high <= known:
                log.warning("%s[%d]: the topic restarted below offset %d (now %d); reading it "
                            "from the start", self.source.topic, tp.partition, known, high)
                self.processor.forget_position(str(tp.partition))
        log.info("%s: assigned %s", self.source.name, [tp.partition for tp in partitions])

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        try:
            self.checkpoint(wait=True)
        except BackendUnavailableError as exc:  # the next owner replays what we could not
            log.warning("%s: checkpoint before rebalance failed: %s", self.source.name, exc)
        self._next.clear()

    # ---- the loop ------------------------------------------------------------------------
    def run(self) -> None:
        from confluent_kafka import Consumer, Producer

        conf = consumer_config(self.source, self.cfg, self.group, self._on_error)
        self._consumer_conf = conf
        self._consumer = Consumer(conf)
        self._producer = Producer({"bootstrap.servers": self.servers, "linger.ms": 5,
                                   "enable.idempotence": True, **self.cfg.producer})
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"tureen-ingest-{self.source.name}")
        self.processor.defer_log_checkpoints()  # the worker checkpoints the online store's log
        self._consumer.subscribe([self.source.topic], on_assign=self._on_assign,
                                 on_revoke=self._on_revoke)
        last_flush = time.monotonic()
        wait = self.cfg.batch_wait_ms / 1000
        try:
            while not self.stop.is_set():
                if self.processor.pending_online or self._paused:
                    self._backpressure()
                    continue
                msgs = self._consumer.consume(self.cfg.batch_max_messages, wait)
                if msgs:
                    self._handle(msgs)
                now = time.monotonic()
                if now - self._lag_at > self.cfg.status_interval_seconds:
                    self._measure_lag(cached=True)
                    self._lag_at = now
                try:
                    if self._job is not None and self._job.done.done():
                        self._settle()
                    full = self.processor.buffered_rows >= self.cfg.file_max_rows
                    due = now - last_flush >= self.cfg.flush_interval_seconds
                    if full or (due and self._job is None):
                        self.checkpoint()  # a full buffer waits for the job in flight
                        last_flush = now
                except BackendUnavailableError as exc:
                    self._failed_write(exc)
            self.checkpoint(wait=True)
        finally:
            self._pool.shutdown(wait=True)  # a job in flight finishes (its offsets are not
            self._consumer.close()          # committed unless checkpoint() settled it)
            self._producer.flush(5)
            self.state = "stopped"

    def _handle(self, msgs: list[Any]) -> None:
        events: list[Event] = []
        for m in msgs:
            err = m.error()
            if err is not None:
                if not err.is_fatal():
                    self._on_error(err)
                    continue
                raise BackendUnavailableError(f"Kafka consumer failed: {err.str()}")
            p, off = m.partition(), m.offset()
            ts = m.timestamp()[1]
            self._next[p] = off + 1
            self._last_ts[p] = ts
            eid = f"{p}:{off}:{ts}"
            try:
                events.append(Event(self._decode(m.value()), eid, str(p), off, m.value(),
                                    m.key()))
            except BadMessageError as exc:
                events.append(Event(None, eid, str(p), off, m.value(), m.key(), str(exc)))
        if not events:
            return
        if self.state in ("starting", "broker_unavailable"):
            self.state, self.error = "running", None
        try:
            res = self.processor.process(events)
        except BackendUnavailableError as exc:
            self._unwritten = len(events)  # read, but not yet visible: still lag
            self._failed_write(exc)
            return
        for d in res.dead:
            self._dead_letter(d)

    def _dead_letter(self, d: DeadLetter) -> None:
        headers = [("tureen.reason", d.reason.encode()[:4096]),
                   ("tureen.source", self.source.name.encode()),
                   ("tureen.event_id", d.event.event_id.encode())]
        while True:
            try:
                self._producer.produce(self.dlq_topic, value=d.event.payload, key=d.event.key,
                                       headers=headers)
                return
            except BufferError:
                self._producer.poll(0.05)

    def checkpoint(self, wait: bool = False) -> None:
        """Make everything processed durable, then commit the offsets after it. The online
        rows are written here; the offline parts by the worker (or here if ``wait``), and the
        offsets are committed when it is done (``_settle``; at once and waiting for the
        broker's answer if ``wait``). A lost commit is redone by the next one, and a replay
        of what it covered is skipped."""
        if self._consumer is None:
            return
        self._settle(block=True)
        self.processor.write_online()
        ck = self.processor.take_checkpoint()
        offsets, self._next = self._next, {}
        self._checkpoints += 1
        compact = self._checkpoints % 20 == 0
        self._job = job = _Job(self.processor, ck, offsets, Future())
        if wait or self._pool is None:
            self._write(job, compact)
            self._settle(block=True, wait=True)
        else:
            self._pool.submit(self._write, job, compact)

    def _write(self, job: _Job, compact: bool) -> None:
        """The worker's part of a checkpoint: dead letters delivered, offline parts written
        (``job.done`` holds the outcome)."""
        try:
            left = self._producer.flush(10) if self._producer is not None else 0
            if left:
                raise BackendUnavailableError(
                    f"{left} dead letters were not delivered to {self.dlq_topic}; offsets are "
                    "not committed until they are.")
            if job.checkpoint is not None:
                job.processor.write_checkpoint(job.checkpoint)
                job.checkpoint = None
            job.processor.checkpoint_log()  # the online rows are synced before the commit
            if compact:
                job.processor.compact(self.cfg.compact_min_files, self.cfg.compact_target_rows)
        except BaseException as exc:
            job.done.set_exception(exc)
        else:
            job.done.set_result(None)

    def _settle(self, block: bool = False, wait: bool = False) -> None:
        """Finish the checkpoint in flight: commit its offsets, or give its rows and offsets
        back (they are written and committed by the next one) and raise its error."""
        job = self._job
        if job is None or (not block and not job.done.done()):
            return
        self._job = None
        try:
            job.done.result()
        except BaseException:
            if job.checkpoint is not None:
                job.processor.give_back(job.checkpoint)
            for p, o in job.offsets.items():  # newer offsets read since stay
                self._next.setdefault(p, o)
            raise
        if not job.offsets:
            return
        from confluent_kafka import TopicPartition

        offsets = [TopicPartition(self.source.topic, p, o) for p, o in job.offsets.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=not wait)
        except Exception as exc:
            for p, o in job.offsets.items():
                self._next.setdefault(p, o)
            raise BackendUnavailableError(f"committing offsets to Kafka failed: {exc}") from exc

    def _failed_write(self, exc: BackendUnavailableError) -> None:
        self.error = f"BackendUnavailable: {exc}"
        if self.state != "backpressure":
            self._measure_lag()  # the status shows the waiting messages with the state
        self.state = "backpressure"
        log.warning("%s: %s; pausing consumption", self.source.name, exc)
        if not self._paused:
            assignment = self._consumer.assignment()
            if assignment:
                self._consumer.pause(assignment)
            self._paused = True

    def _backpressure(self) -> None:
        """Retry the queued writes with backoff, polling so the group keeps us."""
        delay = 0.05
        while not self.stop.is_set():
            try:
                self.processor.write_online()
                self.checkpoint(wait=True)
                break
            except BackendUnavailableError as exc:
                self._failed_write(exc)
                deadline = time.monotonic() + delay
                self._measure_lag()
                while time.monotonic() < deadline and not self.stop.is_set():
                    self._consumer.poll(0.05)  # heartbeats; paused: no messages
                delay = min(delay * 2, self.cfg.retry_max_seconds)
        if self._paused:
            assignment = self._consumer.assignment()
            if assignment:
                self._consumer.resume(assignment)
            self._paused = False
        self._unwritten = 0
        self.state, self.error = "running", None

    def _position(self, tp: Any, high: int) -> int | None:
        """The next offset this ingester reads in ``tp`` when no message says it: the
        consumer's position; before its first message (a fresh or restarted consumer, which
        has none until one arrives) the event log's, then the group's committed offset, then
        where ``auto.offset.reset`` starts. Never the high watermark: that said "caught up"
        before a restarted ingester had read its backlog."""
        from confluent_kafka import TopicPartition

        part = TopicPartition(tp.topic, tp.partition)
        found = self._consumer.position([part])
        if found and found[0].offset >= 0:
            return int(found[0].offset)
        seen = self.processor.last_offset(str(tp.partition))
        if seen is not None:
            return seen + 1
        try:
            found = self._consumer.committed([part], timeout=1.0)
        except Exception:
            return None
        if found and found[0].offset >= 0:
            return int(found[0].offset)
        reset = str(self._consumer_conf.get("auto.offset.reset", "latest"))
        if reset in ("earliest", "smallest", "beginning"):
            try:
                low, _ = self._consumer.get_watermark_offsets(tp, timeout=1.0)
            except Exception:
                return None
            return int(low) if low >= 0 else None
        return high

    def _measure_lag(self, cached: bool = False) -> None:
        """Messages (and seconds) behind the end of the topic. ``cached``: the high
        watermark of the last fetch response (no broker request: a ListOffsets request
        queues the fetches behind it on the broker's connection, which held events up by
        tens of ms once a second); only a paused consumer, which fetches nothing, or one
        that has not fetched yet asks the broker."""
        if self._consumer is None:
            return
        total = 0
        known = False

        for tp in self._consumer.assignment():
            try:
                high = -1
                if cached:
                    high = self._consumer.get_watermark_offsets(tp, cached=True)[1]
                if high < 0:
                    _, high = self._consumer.get_watermark_offsets(tp, timeout=1.0)
            except Exception:
                continue
            if high < 0:
                continue
            pos = self._next.get(tp.partition)
            if pos is None:
                pos = self._position(tp, high)
                if pos is None:
                    continue
            total += max(high - pos, 0)
            known = True
        total += self._unwritten
        self.lag_messages = total if known else None
        if total and self._last_ts:
            self.lag_seconds = max(0.0, time.time() - max(self._last_ts.values()) / 1000)
        elif known:
            self.lag_seconds = 0.0
