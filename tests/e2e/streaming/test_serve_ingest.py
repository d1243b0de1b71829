"""``tureen serve --ingest``: the server consumes the repo's Kafka streams beside it, serves
the streamed features, and /metrics shows every stream view's consumer."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.e2e.server_process import ServerProcess
from tests.integration.streaming.broker import Broker, free_port
from tests.integration.streaming.repo import event, make_repo

pytestmark = [pytest.mark.services, pytest.mark.slow]


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    b = Broker()
    b.start()
    try:
        yield b
    finally:
        b.stop()


def test_serve_hosts_the_ingester_and_reports_it(broker: Broker, tmp_path: Path) -> None:
    topic = f"serve-{uuid.uuid4().hex[:6]}"
    broker.create_topic(topic, 1)
    repo = make_repo(tmp_path / "r", broker.bootstrap, topic)
    port = free_port()
    with open(tmp_path / "serve.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tureen", "serve", "--repo", str(repo), "--host",
             "127.0.0.1", "--http-port", str(port), "--grpc-port", "0", "--no-console",
             "--no-models", "--ingest"], stdout=log, stderr=subprocess.STDOUT)
    server = ServerProcess(proc, port, repo=repo)
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
