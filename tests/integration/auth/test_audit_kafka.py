"""The audit log on Kafka: one JSON message per event, keyed by request id (librdkafka's mock
cluster, reached over TCP, as the inference-log sink tests use)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tureen.auth.audit import AuditLog, KafkaAuditSink, event, sink_from_url


@pytest.fixture()
def kafka_bootstrap() -> Iterator[str]:
    ck = pytest.importorskip("confluent_kafka", reason="pip install 'tureen[kafka]'")
    holder = ck.Producer({"test.mock.num.brokers": 1, "log_level": 0})
    b = next(iter(holder.list_topics(timeout=10).brokers.values()))
    yield f"{b.host}:{b.port}"
    holder.flush(5)


def _consume(bootstrap: str, topic: str, n: int) -> list[Any]:
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{topic}", "log_level": 0,
                  "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got: list[Any] = []
    deadline = time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m)
    c.close()
    return got


def test_audit_events_on_kafka(kafka_bootstrap: str) -> None:
    sink = sink_from_url(f"kafka://{kafka_bootstrap}?topic=audit.test&log_level=0")
    assert isinstance(sink, KafkaAuditSink)
    log = AuditLog(sink, flush_seconds=0.05)
    for i in range(3):
        log.record(event(request_id=f"r{i}", subject="ci", source="token", token_id="abc",
                         action="deploy", resource="p/fraud", outcome="ok", status=200,
                         route="http POST /deploy"))
    log.close()
    assert log.written == 3
    msgs = _consume(kafka_bootstrap, "audit.test", 3)
    assert sorted(m.key() for m in msgs) == [b"r0", b"r1", b"r2"]
    body = json.loads(msgs[0].value())
    assert body["action"] == "deploy" and body["subject"] == "ci" and body["outcome"] == "ok"
