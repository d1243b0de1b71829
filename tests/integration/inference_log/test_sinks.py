"""Each sink against a real target: Parquet on disk, a Kafka broker in this process (the
librdkafka mock cluster that ships inside confluent-kafka), an HTTP CloudEvents receiver."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from tests.integration.conftest import consume_kafka

from tureen.inference_log import InferenceLogger, InferenceRecord, LogMode, sink_from_url
from tureen.inference_log.dataset import read_log
from tureen.inference_log.sinks.cloudevents import REQUEST_TYPE, RESPONSE_TYPE
from tureen.inference_log.sinks.kafka import topic_for
from tureen.inference_log.sinks.parquet import ParquetSink


def rec(i: int, deployment: str = "fraud", ts: float | None = None) -> InferenceRecord:
    r = InferenceRecord(
        request_id=f"req-{i}", deployment=deployment, model_name="fraud-model",
        model_version="2",
        inputs={"amount": np.array([float(i), float(i) + 0.5]), "country": ["NL", "DE"]},
        outputs=np.array([[0.1], [0.9]]), entities={"account_id": [i, i + 1000]},
    )
    if ts is not None:
        r.timestamp = ts
    return r


# ---- Parquet -------------------------------------------------------------------------------

def test_parquet_partitioned_atomic_and_readable(tmp_path: Path) -> None:
    root = tmp_path / "log"
    day1 = datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp()
    day2 = datetime(2026, 3, 2, 0, 0, 1, tzinfo=UTC).timestamp()
    logger = InferenceLogger(ParquetSink(root), LogMode.ALL, batch_size=50)
    for i in range(120):
        logger.log(rec(i, ts=day1 if i < 100 else day2))
    logger.log(rec(500, deployment="other", ts=day1))
    logger.close()
    dirs = sorted(str(p.relative_to(root)) for p in root.glob("*/*"))
    assert dirs == ["deployment=fraud/date=2026-03-01", "deployment=fraud/date=2026-03-02",
                    "deployment=other/date=2026-03-01"]
    files = list(root.rglob("*"))
    assert not [f for f in files if f.name.endswith(".tmp")]  # no partial files left
    assert all(f.name.startswith("part-") for f in files if f.is_file())
    table = read_log(str(root), "fraud")
    assert table.num_rows == 240  # two instances per request
    first = table.slice(0, 2).to_pylist()
    assert first[0]["request_id"] == "req-0" and [r["row"] for r in first] == [0, 1]
    assert first[1]["entity.account_id"] == 1000 and first[1]["feature.country"] == "DE"
    assert first[1]["feature.amount"] == 0.5 and first[1]["prediction.predictions"] == 0.9
    assert first[0]["model_version"] == "2"
    assert str(table.schema.field("timestamp").type) == "timestamp[us, tz=UTC]"
    only_day2 = read_log(str(root), "fraud", start=datetime(2026, 3, 2).date())
    assert only_day2.num_rows == 40
    # a hive-partitioned dataset other tools read as is
    ds = pq.ParquetDataset(str(root / "deployment=fraud"))
    assert ds.read().num_rows == 240


def test_parquet_mode_predictions_drops_features(tmp_path: Path) -> None:
    logger = InferenceLogger(sink_from_url(str(tmp_path / "l")), "PREDICTIONS")
    logger.log(rec(1))
    logger.close()
    cols = read_log(str(tmp_path / "l"), "fraud").column_names
    assert "prediction.predictions" in cols and "entity.account_id" in cols
    assert not [c for c in cols if c.startswith("feature.")]


# ---- Kafka ---------------------------------------------------------------------------------

def test_kafka_topic_per_deployment_keyed_by_request_id(kafka_bootstrap: str) -> None:
    sink = sink_from_url(f"kafka://{kafka_bootstrap}?topic_prefix=log.&log_level=0")
    logger = InferenceLogger(sink, LogMode.ALL, batch_size=10)
    for i in range(25):
        logger.log(rec(i))
    logger.log(rec(99, deployment="other"))
    logger.close()  # flushes the producer: every message is delivered before it returns
    assert logger.stats().written == 26
    msgs = consume_kafka(kafka_bootstrap, "log.fraud", 25)
    assert sorted(m.key().decode() for m in msgs) == sorted(f"req-{i}" for i in range(25))
    body = json.loads(next(m for m in msgs if m.key() == b"req-3").value())
    assert body["deployment"] == "fraud" and body["model_version"] == "2"
    assert body["entities"] == {"account_id": [3, 1003]}
    assert body["features"] == {"amount": [3.0, 3.5], "country": ["NL", "DE"]}
    assert body["predictions"] == {"predictions": [0.1, 0.9]}
    other = consume_kafka(kafka_bootstrap, "log.other", 1)
    assert [m.key() for m in other] == [b"req-99"]
    assert topic_for("a/b c") == "tureen.inference.a_b_c"


# ---- HTTP CloudEvents ----------------------------------------------------------------------

class _Receiver(BaseHTTPRequestHandler):
    events: list[tuple[dict[str, str], Any]] = []
    fail_first = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        if type(self).fail_first > 0:
            type(self).fail_first -= 1
            self.send_response(503)
            self.end_headers()
            return
        type(self).events.append(({k.lower(): v for k, v in self.headers.items()},
                                  json.loads(body)))
        self.send_response(202)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def receiver() -> Iterator[str]:
    _Receiver.events = []
    _Receiver.fail_first = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_cloudevents_kserve_logger_format(receiver: str) -> None:
    _Receiver.fail_first = 1  # one 503: retried, not lost
    logger = InferenceLogger(sink_from_url(receiver), LogMode.ALL, batch_size=5)
    for i in range(10):
        logger.log(rec(i))
    logger.close()
    assert logger.stats().written == 10 and logger.stats().failed == 0
    events = _Receiver.events
    assert len(events) == 20
    by_id: dict[str, dict[str, Any]] = {}
    for headers, body in events:
        assert headers["ce-specversion"] == "1.0"
        assert headers["content-type"] == "application/json"
        assert headers["ce-inferenceservicename"] == "fraud"
        assert headers["ce-source"] and headers["ce-time"].endswith("Z")
        assert headers["ce-component"] == "predictor" and headers["ce-namespace"]
        by_id.setdefault(headers["ce-id"], {})[headers["ce-type"]] = body
    assert sorted(by_id) == sorted(f"req-{i}" for i in range(10))
    pair = by_id["req-4"]
    assert set(pair) == {REQUEST_TYPE, RESPONSE_TYPE}  # request and response share ce-id
    req = pair[REQUEST_TYPE]
    assert req["id"] == "req-4"
    assert {i["name"]: i["data"] for i in req["inputs"]} == {
        "amount": [4.0, 4.5], "country": ["NL", "DE"]}
    assert req["parameters"]["entities"] == {"account_id": [4, 1004]}
    resp = pair[RESPONSE_TYPE]
    assert resp["model_name"] == "fraud-model" and resp["model_version"] == "2"
    assert resp["outputs"][0]["data"] == [0.1, 0.9] and resp["outputs"][0]["datatype"] == "FP64"


def test_cloudevents_model_inputs_mode_sends_requests_only(receiver: str) -> None:
    logger = InferenceLogger(sink_from_url(receiver), "MODEL_INPUTS")
    logger.log(rec(1))
    logger.close()
    assert [h["ce-type"] for h, _ in _Receiver.events] == [REQUEST_TYPE]


def test_cloudevents_unreachable_receiver_is_counted() -> None:
    logger = InferenceLogger(sink_from_url("http://127.0.0.1:9/"), "ALL")
    logger.log(rec(1))
    logger.close()
    assert logger.stats().failed == 1 and logger.stats().written == 0
