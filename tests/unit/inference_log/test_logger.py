"""The bounded asynchronous logger: modes, policies, counters, flush on close."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from tureen.inference_log import (
    InferenceLogger,
    InferenceRecord,
    LoggedRequest,
    LogMode,
    SinkWriteError,
    normalize,
)
from tureen.inference_log.record import as_lists
from tureen.serving.inference import InferInput, InferRequest, InferResponse


class MemorySink:
    """A real sink that keeps batches in memory; ``gate`` makes it slow on demand."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.batches: list[list[LoggedRequest]] = []
        self.gate = gate
        self.entered = threading.Event()
        self.closed = False

    def write(self, batch: Sequence[LoggedRequest]) -> None:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(30)
        self.batches.append(list(batch))

    def close(self) -> None:
        self.closed = True

    @property
    def ids(self) -> list[str]:
        return [r.request_id for b in self.batches for r in b]


def rec(i: int, deployment: str = "d") -> InferenceRecord:
    return InferenceRecord(
        request_id=f"r{i}", deployment=deployment, model_name="m", model_version="1",
        inputs={"amount": [float(i)], "country": ["NL"]}, outputs=np.array([i % 2]),
        entities={"account_id": [i]},
    )


def test_everything_logged_is_written_on_close() -> None:
    sink = MemorySink()
    logger = InferenceLogger(sink, LogMode.ALL, batch_size=7, flush_interval=60)
    for i in range(100):
        assert logger.log(rec(i))
    logger.close()
    assert sink.ids == [f"r{i}" for i in range(100)]
    assert sink.closed
    s = logger.stats()
    assert (s.enqueued, s.written, s.dropped, s.failed, s.queued) == (100, 100, 0, 0, 0)
    assert not logger.log(rec(101))  # closed: not accepted, never raises


def test_drop_oldest_when_sink_is_slow_is_counted_and_never_blocks() -> None:
    gate = threading.Event()
    sink = MemorySink(gate)
    logger = InferenceLogger(sink, capacity=10, batch_size=1, flush_interval=0.01)
    assert logger.log(rec(0))
    assert sink.entered.wait(10)  # the flusher holds r0 inside the blocked sink
    for i in range(1, 31):
        assert logger.log(rec(i))  # returns at once although the sink is stuck
    s = logger.stats()
    assert s.dropped == 20 and s.queued == 10 and s.blocked == 0
    gate.set()
    logger.close()
    assert sink.ids == ["r0", *(f"r{i}" for i in range(21, 31))]  # the newest survive
    assert logger.stats().written == 11


def test_block_policy_waits_for_room_and_loses_nothing() -> None:
    gate = threading.Event()
    sink = MemorySink(gate)
    logger = InferenceLogger(sink, capacity=5, batch_size=1, flush_interval=0.01,
                             policy="block", block_timeout=30)
    logger.log(rec(0))
    assert sink.entered.wait(10)
    for i in range(1, 6):
        logger.log(rec(i))
    done = threading.Event()

    def producer() -> None:
        for i in range(6, 20):
            logger.log(rec(i))
        done.set()

    t = threading.Thread(target=producer)
    t.start()
    assert not done.wait(0.2)  # the producer is blocked: the queue is full
    gate.set()
    t.join(30)
    logger.close()
    assert sink.ids == [f"r{i}" for i in range(20)]
    s = logger.stats()
    assert s.blocked >= 1 and s.dropped == 0


def test_block_policy_times_out_into_a_counted_drop() -> None:
    gate = threading.Event()
    sink = MemorySink(gate)
    logger = InferenceLogger(sink, capacity=1, batch_size=1, flush_interval=0.01,
                             policy="block", block_timeout=0.01)
    logger.log(rec(0))
    assert sink.entered.wait(10)
    logger.log(rec(1))
    assert not logger.log(rec(2))
    assert logger.stats().dropped == 1
    gate.set()
    logger.close()


def test_failing_sink_is_counted_not_raised() -> None:
    class Broken(MemorySink):
        def write(self, batch: Sequence[LoggedRequest]) -> None:
            raise OSError("disk gone")

    class Partial(MemorySink):
        def write(self, batch: Sequence[LoggedRequest]) -> None:
            raise SinkWriteError("one lost", 1)

    broken = InferenceLogger(Broken(), batch_size=2)
    for i in range(4):
        broken.log(rec(i))
    broken.close()
    assert (broken.stats().failed, broken.stats().written) == (4, 0)
    partial = InferenceLogger(Partial(), batch_size=4)
    for i in range(4):
        partial.log(rec(i))
    partial.close()
    assert (partial.stats().failed, partial.stats().written) == (1, 3)


def test_flush_waits_for_delivery() -> None:
    sink = MemorySink()
    logger = InferenceLogger(sink, flush_interval=60)
    for i in range(5):
        logger.log(rec(i))
    assert logger.flush(10)
    assert len(sink.ids) == 5
    logger.close()


def test_mode_none_starts_nothing_and_accepts_nothing() -> None:
    sink = MemorySink()
    logger = InferenceLogger(sink, "NONE")
    assert not logger.log(rec(1))
    logger.close()
    assert sink.batches == [] and sink.closed


async def test_aclose_from_event_loop() -> None:
    sink = MemorySink()
    logger = InferenceLogger(sink, flush_interval=60)
    logger.log(rec(1))
    await logger.aclose()
    assert sink.ids == ["r1"]


@pytest.mark.parametrize(
    ("mode", "features", "predictions"),
    [("ALL", True, True), ("MODEL_INPUTS", True, False), ("PREDICTIONS", False, True)],
)
def test_modes_keep_ids_and_entities(mode: str, features: bool, predictions: bool) -> None:
    r = normalize(rec(3), LogMode.parse(mode))
    assert (r.request_id, as_lists(r.entities), r.rows) == ("r3", {"account_id": [3]}, 1)
    assert bool(r.features) is features and bool(r.predictions) is predictions


def test_normalize_shapes_of_inputs_and_outputs() -> None:
    x = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    r = normalize(InferenceRecord("a", "d", "m", "2", x, np.array([0, 1]),
                                  input_names=["f1", "f2"]), LogMode.ALL)
    assert as_lists(r.features) == {"f1": [1.0, 3.0], "f2": [2.0, 4.0]}
    assert as_lists(r.predictions) == {"predictions": [0, 1]} and r.rows == 2
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    assert as_lists(normalize(InferenceRecord("b", "d", "m", "1", frame,
                                              {"predictions": [0.5, 0.7]}),
                              LogMode.ALL).features) == {"a": [1, 2], "b": ["x", "y"]}
    req = InferRequest("m", [InferInput("in", "BYTES", [2], np.array([b"p", b"q"], object))])
    resp = InferResponse.of("m", {"score": np.array([[0.1], [0.9]])})
    r = normalize(InferenceRecord("c", "d", "m", "1", req, resp), LogMode.ALL)
    assert r.features == {"in": ["p", "q"]} and as_lists(r.predictions) == {"score": [0.1, 0.9]}
    v1 = normalize(InferenceRecord("e", "d", "m", "1", {"instances": [[1, 2]]},
                                   {"predictions": [1]}), LogMode.ALL)
    assert as_lists(v1.features) == {"input_0": [1], "input_1": [2]}
    assert as_lists(v1.predictions) == {"predictions": [1]}
