"""``tureen serve --ingest``: the server consumes the repo's Kafka streams beside it, serves
the streamed features, and /metrics shows every stream view's consumer."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.e2e.server_process import ServerProcess, children, gone_within
from tests.integration.streaming.broker import Broker, free_port
from tests.integration.streaming.repo import event, make_repo

pytestmark = [pytest.mark.services, pytest.mark.slow]

#: how long the ingester may take to notice its server's death and drain (a bound)
GONE_WITHIN_SECONDS = 30.0


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    b = Broker()
    b.start()
    try:
        yield b
    finally:
        b.stop()


def serve_with_ingest(repo: Path, log_path: Path) -> ServerProcess:
    """``tureen serve --ingest`` of ``repo`` on a free loopback port, its output (and its
    ingester's) in ``log_path``."""
    port = free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tureen", "serve", "--repo", str(repo), "--host",
             "127.0.0.1", "--http-port", str(port), "--grpc-port", "0", "--no-console",
             "--no-models", "--ingest"], stdout=log, stderr=subprocess.STDOUT)
    return ServerProcess(proc, port, repo=repo, log=log_path)


def test_serve_hosts_the_ingester_and_reports_it(broker: Broker, tmp_path: Path) -> None:
    topic = f"serve-{uuid.uuid4().hex[:6]}"
    broker.create_topic(topic, 1)
    repo = make_repo(tmp_path / "r", broker.bootstrap, topic)
    server = serve_with_ingest(repo, tmp_path / "serve.log")
    try:
        broker.produce(topic, [event(i, 42, i, float(i), "m") for i in range(10)])
        body = {"features": ["last_tx:amount"], "entities": {"account_id": [42]}}
        deadline = time.monotonic() + 90
        while True:
            try:
                r = httpx.post(f"{server.url}/get-online-features", json=body, timeout=5)
                if r.status_code == 200 and r.json()["results"][1]["values"] == [9.0]:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(0.2)
        deadline = time.monotonic() + 30
        while True:
            metrics = httpx.get(f"{server.url}/metrics", timeout=5).text
            if 'tureen_stream_rows_total{view="last_tx",source="tx"} 10' in metrics:
                break
            assert time.monotonic() < deadline, metrics[-2000:]
            time.sleep(0.2)
        assert 'tureen_stream_consumer_state{view="tx_stats",source="tx",state="running"} 1' \
            in metrics
        assert "tureen_stream_lag_messages" in metrics
    finally:
        assert server.stop() == 0


def test_the_ingester_exits_when_the_server_is_killed(broker: Broker, tmp_path: Path) -> None:
    """``kill -9`` of ``tureen serve``: its ``tureen ingest`` child drains (a final
    checkpoint, as on SIGTERM) and exits instead of consuming on as an orphan."""
    topic = f"orphan-{uuid.uuid4().hex[:6]}"
    broker.create_topic(topic, 1)
    repo = make_repo(tmp_path / "r", broker.bootstrap, topic)
    log_path = tmp_path / "serve.log"
    server = serve_with_ingest(repo, log_path)
    proc = server.proc
    ingesters: list[int] = []
    try:
        broker.produce(topic, [event(i, 7, i, float(i), "m") for i in range(5)])
        deadline = time.monotonic() + 90
        while "Ingesting" not in log_path.read_text():  # the child consumes
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        ingesters = children(proc.pid)
        assert len(ingesters) == 1, ingesters
        proc.kill()
        proc.wait()
        assert gone_within(ingesters, GONE_WITHIN_SECONDS) == [], log_path.read_text()[-3000:]
        assert "Stopping: writing the last rows" in log_path.read_text()  # drained, not killed
    finally:
        for pid in ingesters:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        server.stop()
