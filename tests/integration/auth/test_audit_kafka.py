"""The audit log on Kafka: one JSON message per event, keyed by request id (librdkafka's mock
cluster, reached over TCP, as the inference-log sink tests use)."""

from __future__ import annotations

import json

from tests.integration.conftest import consume_kafka

from tureen.auth.audit import AuditLog, KafkaAuditSink, event, sink_from_url


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
    msgs = consume_kafka(kafka_bootstrap, "audit.test", 3)
    assert sorted(m.key() for m in msgs) == [b"r0", b"r1", b"r2"]
    body = json.loads(msgs[0].value())
    assert body["action"] == "deploy" and body["subject"] == "ci" and body["outcome"] == "ok"
