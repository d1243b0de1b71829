"""The audit log: batched Parquet writes, filters, and a bounded queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tureen.auth.audit import AuditLog, ParquetAuditSink, event, read_events, sink_from_url
from tureen.errors import ConfigError


def _ev(subject: str, action: str, outcome: str, rid: str = "r1") -> object:
    return event(request_id=rid, subject=subject, source="token", token_id="abc",
                 action=action, resource="proj/fraud", outcome=outcome, status=200,
                 route="POST /push")


def test_events_land_in_a_parquet_dataset_and_filter(tmp_path: Path) -> None:
    log = AuditLog(ParquetAuditSink(tmp_path / "audit"), flush_seconds=0.05)
    log.record(_ev("ci", "write_features", "ok", "r1"))  # type: ignore[arg-type]
    log.record(_ev("eve", "deploy", "denied", "r2"))  # type: ignore[arg-type]
    log.record(_ev("ci", "admin", "ok", "r3"))  # type: ignore[arg-type]
    log.close()
    assert log.written == 3 and log.failed == 0
    files = list((tmp_path / "audit").glob("date=*/part-*.parquet"))
    assert files and not list((tmp_path / "audit").rglob("*.tmp"))
    root = str(tmp_path / "audit")
    rows = read_events(root)
    assert [r["request_id"] for r in rows] == ["r1", "r2", "r3"]
    assert rows[1]["subject"] == "eve" and rows[1]["outcome"] == "denied"
    assert [r["request_id"] for r in read_events(root, subject="ci")] == ["r1", "r3"]
    assert [r["request_id"] for r in read_events(root, outcome="denied")] == ["r2"]
    assert [r["request_id"] for r in read_events(root, limit=1)] == ["r3"]
    future = datetime.now(UTC) + timedelta(hours=1)
    assert read_events(root, since=future) == []
    assert len(read_events(root, until=future)) == 3
    assert read_events(str(tmp_path / "none")) == []


def test_queue_is_bounded_and_counts_drops(tmp_path: Path) -> None:
    class Stuck:
        def write(self, events: object) -> None:
            raise OSError("disk full")

        def close(self) -> None:
            pass

    log = AuditLog(Stuck(), queue_size=100, flush_seconds=60)
    for i in range(250):
        log.record(_ev("x", "admin", "ok", str(i)))  # type: ignore[arg-type]
    assert log.dropped == 150
    log.close()
    assert log.failed == 100  # the sink failed: counted and logged, nothing raised


def test_sink_urls(tmp_path: Path) -> None:
    sink = sink_from_url("audit", tmp_path)
    assert isinstance(sink, ParquetAuditSink) and sink.root == str(tmp_path / "audit")
    with pytest.raises(ConfigError, match="kafka://"):
        sink_from_url("s3x://bucket", tmp_path)
