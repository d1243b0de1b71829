"""Inference log records a failing sink loses are counted in ``/metrics``
(``tureen_inference_log_dropped_total``), summed over the server's workers."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
from tests.e2e.deployments.conftest import SERVICE, serve, tureen

BODY = {"instances": [{"account_id": 1001}]}
REQUESTS = 20


def dropped(metrics: str, reason: str) -> float | None:
    m = re.search(
        r'^tureen_inference_log_dropped_total\{deployment="droplog",sink="parquet",'
        rf'reason="{reason}"\}} (\S+)$',
        metrics,
        re.M,
    )
    return None if m is None else float(m.group(1))


def test_records_a_failing_sink_loses_are_counted_in_metrics(repo: Path, tmp_path: Path) -> None:
    # a real failure root cannot bypass: the log's root folder is a regular file
    sink = tmp_path / "inference-log"
    sink.write_text("not a folder\n")
    tureen(
        "deploy",
        "create",
        "droplog",
        "--model",
        "vmodel:1",
        "--feature-service",
        SERVICE,
        "--logging",
        "ALL",
        "--log-sink",
        str(sink),
        "--repo",
        str(repo),
    )
    tureen("deploy", "start", "droplog", "--repo", str(repo))
    server = serve(repo, tmp_path / "serve.log", ["--workers", "2"])
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            for _ in range(REQUESTS):
                r = c.post(
                    "/v1/models/droplog:predict", json=BODY, headers={"connection": "close"}
                )  # both workers take some
                assert r.status_code == 200, r.text
            deadline = time.monotonic() + 30  # logger flushes and snapshots are 1 s apart
            while True:
                text = c.get("/metrics").text
                if dropped(text, "write_failed") == REQUESTS or time.monotonic() > deadline:
                    break
                time.sleep(0.25)
        assert dropped(text, "write_failed") == REQUESTS, text[-2000:]
        assert dropped(text, "queue_full") == 0
        assert "# TYPE tureen_inference_log_dropped_total counter" in text
    finally:
        assert server.stop() == 0
    assert sink.read_text() == "not a folder\n"
