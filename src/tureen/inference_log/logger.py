"""``InferenceLogger``: asynchronous, bounded logging of served requests.

``log(record)`` only appends a reference to a bounded in-memory queue (no conversion, no
I/O) and returns; a background thread normalizes records, applies the logging mode and
hands batches of up to ``batch_size`` to the sink. The thread takes the whole queue at once
(so ``log`` never waits behind it); at most ``capacity`` records wait in the queue and as
many more may be in the sink's hands. When the queue is full, ``policy`` decides:

- ``drop_oldest`` (default): the oldest queued record is discarded (counted in ``dropped``);
  the request never waits.
- ``block``: the caller waits for room (up to ``block_timeout`` seconds, then the record is
  dropped); every wait is counted in ``blocked``.

``close()`` (or ``await aclose()``) stops accepting records, writes everything queued and
closes the sink. ``stats()`` returns the counters for metrics; ``losses()`` the records lost,
by sink and reason (the server's ``tureen_inference_log_dropped_total``).

When the sink fails (a full disk, a broker down), the batch is counted in ``failed`` and the
logger backs off: batches are dropped (and counted) without calling the sink for 0.25 s,
then 0.5 s, doubling up to ``max_backoff``; the first failure of a streak is logged at
ERROR, the recovery at WARNING with how many records were lost, not one line per batch.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from tureen.errors import InvalidRequestError
from tureen.inference_log.protocol import LogSink, RollsFiles, SinkWriteError
from tureen.inference_log.record import InferenceRecord, LoggedRequest, LogMode, normalize

log = logging.getLogger(__name__)

#: records normalized between two GIL hand-backs: without them the thread would hold the GIL
#: for a whole batch (tens of ms) while requests wait
_YIELD_EVERY = 32


class QueuePolicy(enum.Enum):
    DROP_OLDEST = "drop_oldest"
    BLOCK = "block"

    @classmethod
    def parse(cls, value: str | QueuePolicy) -> QueuePolicy:
        if isinstance(value, QueuePolicy):
            return value
        try:
            return cls(value.lower().replace("-", "_"))
        except ValueError:
            raise InvalidRequestError(
                f"queue policy {value!r} is not 'drop_oldest' or 'block'."
            ) from None


@dataclass(frozen=True)
class LoggerStats:
    enqueued: int  # records accepted by log()
    written: int  # records the sink accepted
    dropped: int  # records discarded because the queue was full
    blocked: int  # log() calls that had to wait for room (policy block)
    failed: int  # records lost because the sink raised
    queued: int  # records waiting now
    batches: int  # sink writes
    sink_seconds: float  # time spent in the sink
    sink_errors: int = 0  # sink failures (each starts or extends a back-off)

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.__dict__.items()}


class InferenceLogger:
    def __init__(
        self,
        sink: LogSink,
        mode: LogMode | str = LogMode.ALL,
        *,
        capacity: int = 10_000,
        policy: QueuePolicy | str = QueuePolicy.DROP_OLDEST,
        batch_size: int = 1_000,
        flush_interval: float = 1.0,
        block_timeout: float | None = 5.0,
        max_backoff: float = 30.0,
    ) -> None:
        if capacity < 1 or batch_size < 1:
            raise InvalidRequestError("capacity and batch_size must be at least 1.")
        self.sink = sink
        self.mode = LogMode.parse(mode)
        self.capacity = capacity
        self.policy = QueuePolicy.parse(policy)
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.block_timeout = block_timeout
        self._q: collections.deque[InferenceRecord] = collections.deque()
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # signalled when the flusher takes records
        self._idle = threading.Condition(self._lock)  # signalled when nothing is pending
        self._wake = threading.Event()
        self._closing = False
        self._inflight = 0
        self._enqueued = self._written = self._dropped = self._blocked = 0
        self._failed = self._batches = 0
        self._sink_seconds = 0.0
        self.max_backoff = max_backoff
        self._failing = 0  # consecutive sink failures
        self._sink_errors = 0
        self._lost_in_streak = 0
        self._retry_at = 0.0
        self._thread: threading.Thread | None = None
        if self.mode is not LogMode.NONE:
            self._thread = threading.Thread(
                target=self._run, name="tureen-inference-log", daemon=True
            )
            self._thread.start()

    # ---- request path ------------------------------------------------------------------------
    def log(self, record: InferenceRecord) -> bool:
        """Queue ``record``; never does I/O. False if it was not accepted (mode NONE, closed,
        or ``block`` timed out)."""
        if self._thread is None:
            return False
        with self._lock:
            if self._closing:
                return False
            if len(self._q) >= self.capacity:
                if self.policy is QueuePolicy.DROP_OLDEST:
                    self._q.popleft()
                    self._dropped += 1
                else:
                    self._blocked += 1
                    self._wake.set()
                    room = self._room.wait_for(
                        lambda: len(self._q) < self.capacity or self._closing, self.block_timeout
                    )
                    if not room or self._closing:
                        self._dropped += 1
                        return False
            self._q.append(record)
            self._enqueued += 1
            if len(self._q) >= self.batch_size:
                self._wake.set()
        return True

    # ---- background thread -----------------------------------------------------------------
    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            while True:
                with self._lock:  # O(1) under the lock: take the whole queue
                    taken, self._q = self._q, collections.deque()
                    self._inflight = len(taken)
                    if taken:
                        self._room.notify_all()
                    elif self._closing:
                        self._idle.notify_all()
                        return
                    else:
                        self._idle.notify_all()
                        break
                while taken:
                    n = min(len(taken), self.batch_size)
                    self._deliver([taken.popleft() for _ in range(n)])
                self._maintain()
                with self._lock:
                    self._inflight = 0
            self._maintain()

    def _maintain(self) -> None:
        """Let a sink that keeps files open finish them on time (also while idle)."""
        if isinstance(self.sink, RollsFiles) and time.monotonic() >= self._retry_at:
            try:
                finished = self.sink.roll_due()
            except SinkWriteError as exc:
                self._sink_failed(exc, exc.lost_earlier)
                with self._lock:
                    self._written -= min(exc.lost_earlier, self._written)
            except Exception as exc:
                self._sink_failed(exc, 0)
            else:
                if finished:
                    self._recovered()

    def _sink_failed(self, exc: Exception, lost: int) -> None:
        """Count ``lost`` records and back off (log the first failure of a streak only)."""
        self._failing += 1
        self._sink_errors += 1
        self._lost_in_streak += lost
        delay = min(self.max_backoff, 0.25 * 2 ** (self._failing - 1))
        self._retry_at = time.monotonic() + delay
        with self._lock:
            self._failed += lost
        if self._failing == 1:
            log.error("inference log: sink %s failed (%s); backing off (up to %.0f s), "
                      "records meanwhile are dropped and counted (stats().failed)",
                      type(self.sink).__name__, exc, self.max_backoff)
        else:
            log.debug("inference log: sink still failing: %s", exc)

    def _recovered(self) -> None:
        if self._failing:
            log.warning("inference log: sink %s recovered after %d failed attempts; %d "
                        "records were lost", type(self.sink).__name__, self._failing,
                        self._lost_in_streak)
            self._failing = self._lost_in_streak = 0

    def _deliver(self, batch: list[InferenceRecord]) -> None:
        t0 = time.perf_counter()
        written = failed = 0
        if time.monotonic() < self._retry_at:  # backing off: drop, count, do not call the sink
            with self._lock:
                self._failed += len(batch)
                self._inflight = max(0, self._inflight - len(batch))
            self._lost_in_streak += len(batch)
            return
        try:
            logged: list[LoggedRequest] = []
            for i, r in enumerate(batch):
                if i and not i % _YIELD_EVERY:
                    time.sleep(0)  # let the serving thread take the GIL between chunks
                try:
                    logged.append(normalize(r, self.mode))
                except Exception as exc:  # a malformed record must not lose the batch
                    failed += 1
                    log.warning("inference log: cannot convert request %s: %s", r.request_id, exc)
            if logged:
                self.sink.write(logged)
            written = len(logged)
        except SinkWriteError as exc:
            lost = min(exc.failed, len(batch))
            written = len(batch) - failed - lost
            with self._lock:  # records accepted earlier that the sink lost with this batch
                self._written -= min(exc.lost_earlier, self._written)
            self._sink_failed(exc, lost + exc.lost_earlier)
        except Exception as exc:
            self._sink_failed(exc, len(batch))
            written = failed = 0
        else:
            # a sink keeping files open has only buffered the batch: it recovered once a file
            # was finished (see _maintain)
            if not isinstance(self.sink, RollsFiles):
                self._recovered()
        with self._lock:
            self._written += written
            self._failed += failed
            self._batches += 1
            self._sink_seconds += time.perf_counter() - t0
            self._inflight = max(0, self._inflight - len(batch))

    # ---- control -----------------------------------------------------------------------------
    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every record logged so far has been delivered (True) or timeout.
        Files a sink keeps open stay open (they are finished when they roll or on close)."""
        if self._thread is None:
            return True
        self._wake.set()
        with self._lock:
            return self._idle.wait_for(lambda: not self._q and not self._inflight, timeout)

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop accepting records, deliver everything queued, close the sink."""
        if self._thread is None:
            self.sink.close()
            return
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._room.notify_all()
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("inference log: %d records still queued after %ss", len(self._q), timeout)
        self.sink.close()

    async def aclose(self, timeout: float | None = 30.0) -> None:
        await asyncio.to_thread(self.close, timeout)

    def stats(self) -> LoggerStats:
        with self._lock:
            return LoggerStats(
                enqueued=self._enqueued, written=self._written, dropped=self._dropped,
                blocked=self._blocked, failed=self._failed, queued=len(self._q),
                batches=self._batches, sink_seconds=self._sink_seconds,
                sink_errors=self._sink_errors,
            )

    @property
    def sink_name(self) -> str:
        """``parquet``, ``kafka``, ``cloudevents``: the sink's class without ``Sink``."""
        return type(self.sink).__name__.removesuffix("Sink").lower()

    def losses(self) -> dict[tuple[str, str], int]:
        """Records lost so far by (sink, reason): ``queue_full`` (``stats().dropped``) and
        ``write_failed`` (``stats().failed``)."""
        s = self.stats()
        return {(self.sink_name, "queue_full"): s.dropped,
                (self.sink_name, "write_failed"): s.failed}

    def __enter__(self) -> InferenceLogger:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
