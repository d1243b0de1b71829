"""Events posted over HTTP (``POST /ingest/{source}``, ``POST /push`` for a push source that
feeds stream views): the same processor as Kafka, with a receipt.

``wait`` says when the call returns:

- ``none``: once the events are validated and queued (a worker writes them); the receipt
  has the ingestion id and the counts, no lag;
- ``online`` (default): once the online store holds them (read-after-write);
- ``durable``: once the offline log holds them too.

The receipt measures event -> visible: from the newest event time in the request to the
moment the rows became readable, and from the request's arrival to that moment. Bad rows
never fail the call: each goes to the source's dead-letter Parquet folder
(``<log>/_dead_letters/``) with its reason, and the receipt lists the first ones. A request
larger than ``streaming.max_request_rows`` is refused whole; when more than ten requests'
worth of ``wait=none`` rows are queued the call waits for the queue like ``online`` does.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
import pyarrow as pa
from pydantic import BaseModel

from tureen.errors import BackendUnavailableError, InvalidRequestError
from tureen.ingest import WriteResult
from tureen.streaming.event_log import LogFolder
from tureen.streaming.processor import BatchResult, DeadLetter, Event, StreamProcessor
from tureen.streaming.service import StreamService

log = logging.getLogger(__name__)
Wait = Literal["none", "online", "durable"]
WAITS: tuple[str, ...] = ("none", "online", "durable")
DEAD_LETTERS = "_dead_letters"


class DeadLetterInfo(BaseModel):
    row: int
    reason: str


class Receipt(BaseModel):
    """What ``POST /ingest/{source}`` (and ``/push?wait=...``) answers."""

    ingestion_id: str
    source: str
    wait: Wait
    accepted: int
    late: int = 0
    dead_letters: int = 0
    dead_letter_reasons: list[DeadLetterInfo] = []
    visible: bool = False
    durable: bool = False
    event_to_visible_ms: float | None = None
    received_to_visible_ms: float | None = None


def plain_receipt(source: str, to: str, wait: str | None, result: WriteResult,
                  received: float) -> Receipt:
    """The receipt of a push to a source without stream views: its rows were written before
    the call returned (``to`` says where), whatever ``wait`` asked for."""
    visible = time.time()
    online = to in ("online", "online_and_offline")
    newest = result.newest_event_us
    return Receipt(
        ingestion_id=uuid.uuid4().hex, source=source,
        wait=check_wait(wait or ("online" if to == "online" else "durable")),
        accepted=int(result), visible=online, durable=to != "online",
        event_to_visible_ms=None if newest is None else round(
            visible * 1000 - newest / 1000, 3),
        received_to_visible_ms=round((visible - received) * 1000, 3),
    )


def check_wait(wait: str) -> Wait:
    if wait not in WAITS:
        raise InvalidRequestError(f"wait must be one of {', '.join(WAITS)}, got {wait!r}.")
    return wait  # type: ignore[return-value]


class HttpIngestion:
    """Per push source: a processor behind a lock, a worker for ``wait=none`` and a flusher."""

    def __init__(self, service: StreamService) -> None:
        self.service = service
        self.cfg = service.config
        self._locks: dict[str, threading.Lock] = {}
        self._queue: queue.Queue[tuple[str, list[Event], float] | None] = queue.Queue()
        self._queued_rows = 0
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, daemon=True, name="tureen-ingest-http"),
            threading.Thread(target=self._flush_loop, daemon=True, name="tureen-ingest-flush"),
        ]
        for t in self._threads:
            t.start()

    def _lock(self, source: str) -> threading.Lock:
        lock = self._locks.get(source)
        if lock is None:
            lock = self._locks.setdefault(source, threading.Lock())
        return lock

    # ---- the call --------------------------------------------------------------------------
    def ingest(self, source: str, rows: Sequence[Any], wait: str = "online") -> Receipt:
        received = time.time()
        mode = check_wait(wait)
        if not isinstance(rows, Sequence) or isinstance(rows, (str, bytes)):
            raise InvalidRequestError("events must be a JSON array of objects (one per event).")
        if len(rows) > self.cfg.max_request_rows:
            raise InvalidRequestError(
                f"{len(rows)} events in one request; the limit is {self.cfg.max_request_rows} "
                "(streaming.max_request_rows): split the request.")
        proc = self.service.processor(source)  # NotFoundError for an unknown source
        iid = uuid.uuid4().hex
        events = [
            Event(r if isinstance(r, dict) else None, f"{iid}:{i}", "http",
                  payload=None, error="" if isinstance(r, dict) else
                  "an event must be a JSON object")
            for i, r in enumerate(rows)
        ]
        if mode == "none" and self._queued_rows < 10 * self.cfg.max_request_rows:
            self._queued_rows += len(events)
            self._queue.put((source, events, received))
            return Receipt(ingestion_id=iid, source=source, wait=mode, accepted=len(events))
        with self._lock(source):
            res = proc.process(events)
            visible = time.time()
            if mode == "durable":
                proc.flush()
        self._dead(proc, iid, res.dead)
        done = time.time()
        return self._receipt(iid, source, mode, res, received, visible if mode != "durable"
                             else done)

    def _receipt(self, iid: str, source: str, mode: Wait, res: BatchResult, received: float,
                 visible: float) -> Receipt:
        newest = res.newest_event_us
        return Receipt(
            ingestion_id=iid, source=source, wait=mode, accepted=res.accepted, late=res.late,
            dead_letters=len(res.dead),
            dead_letter_reasons=[DeadLetterInfo(row=int(d.event.event_id.rsplit(":", 1)[1]),
                                                reason=d.reason) for d in res.dead[:20]],
            visible=True, durable=mode == "durable",
            event_to_visible_ms=None if newest is None else round(
                visible * 1000 - newest / 1000, 3),
            received_to_visible_ms=round((visible - received) * 1000, 3),
        )

    # ---- dead letters --------------------------------------------------------------------------
    def _dead(self, proc: StreamProcessor, iid: str, dead: list[DeadLetter]) -> None:
        if not dead:
            return
        now = datetime.now(UTC)
        table = pa.table({
            "ingestion_id": [iid] * len(dead),
            "row": [int(d.event.event_id.rsplit(":", 1)[1]) for d in dead],
            "reason": [d.reason for d in dead],
            "event": [orjson.dumps(d.event.row, default=str).decode() if d.event.row is not None
                      else None for d in dead],
            "received_at": pa.array([now] * len(dead), pa.timestamp("us", tz="UTC")),
        })
        folder = LogFolder(f"{proc.event_log.path}/{DEAD_LETTERS}", proc.event_log.fs,
                           f"{proc.event_log.written}/{DEAD_LETTERS}")
        try:
            folder.write(table)
        except Exception:  # the receipt still reports them; the log says why they were not kept
            log.exception("could not write %d dead letters of %s", len(dead), iid)

    # ---- background ----------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            source, events, _ = item
            proc = self.service.processor(source)
            res = BatchResult(0, 0, [], None)
            try:
                with self._lock(source):
                    res = proc.process(events)
            except BackendUnavailableError as exc:  # queued inside: retry until written
                delay = 0.05
                log.warning("ingest into %s: %s; retrying", source, exc)
                while not self._stop.wait(delay):
                    try:
                        with self._lock(source):
                            proc.write_online()
                        break
                    except BackendUnavailableError:
                        delay = min(delay * 2, self.cfg.retry_max_seconds)
            finally:
                self._queued_rows -= len(events)
            if events:
                self._dead(proc, events[0].event_id.split(":")[0], res.dead)

    def _flush_loop(self) -> None:
        while not self._stop.wait(self.cfg.flush_interval_seconds):
            self.flush()

    def flush(self) -> None:
        for name, proc in self.service.push_processors().items():
            with self._lock(name):
                try:
                    proc.write_online()
                    proc.flush()
                except Exception:
                    log.exception("flushing the stream log of %s failed; retrying", name)

    def close(self) -> None:
        self._queue.put(None)
        self._threads[0].join(30)
        self._stop.set()
        self._threads[1].join(5)
        self.flush()
