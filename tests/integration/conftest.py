"""Integration tests share the machine's Redis: whatever a test wrote there under a project it
registered with ``tests.services.redis_project`` is deleted when the test ends. Kafka sink
tests get a cluster in this process (``kafka_bootstrap``) and read it with
``consume_kafka``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from tests.services import REDIS_PROJECTS, purge_redis_project, redis_available


@pytest.fixture(autouse=True)
def _purge_shared_redis() -> Iterator[None]:
    yield
    if not REDIS_PROJECTS:
        return
    projects = sorted(REDIS_PROJECTS)
    REDIS_PROJECTS.clear()
    if redis_available():
        for project in projects:
            purge_redis_project(project)


@pytest.fixture()
def kafka_bootstrap() -> Iterator[str]:
    """A Kafka cluster in this process: librdkafka's mock cluster, reached over TCP."""
    ck = pytest.importorskip("confluent_kafka", reason="pip install 'tureen[kafka]'")
    holder = ck.Producer({"test.mock.num.brokers": 1, "log_level": 0})
    b = next(iter(holder.list_topics(timeout=10).brokers.values()))
    yield f"{b.host}:{b.port}"
    holder.flush(5)


def consume_kafka(bootstrap: str, topic: str, n: int) -> list[Any]:
    """Up to ``n`` messages of ``topic`` from the start (30 s at most)."""
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
