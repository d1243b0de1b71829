"""Kafka sink (confluent-kafka): one JSON message per request, one topic per deployment.

Topic: ``<topic_prefix><deployment>`` (default prefix ``tureen.inference.``); key: the
request id, so a consumer can join the logged request with anything else keyed by it.
Value: the ``LoggedRequest`` as JSON (columns of entities, features and predictions).
Needs ``pip install 'tureen[kafka]'``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from tureen.errors import BackendUnavailableError, ConfigError
from tureen.inference_log.record import LoggedRequest

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "tureen.inference."
_TOPIC_CHARS = re.compile(r"[^A-Za-z0-9._\-]")


def topic_for(deployment: str, prefix: str = DEFAULT_PREFIX) -> str:
    return _TOPIC_CHARS.sub("_", f"{prefix}{deployment}")[:249]


def encode(r: LoggedRequest) -> bytes:
    return orjson.dumps(r.to_json_dict(), default=str)


class KafkaSink:
    def __init__(
        self,
        bootstrap_servers: str,
        topic_prefix: str = DEFAULT_PREFIX,
        config: Mapping[str, Any] | None = None,
        flush_timeout: float = 30.0,
    ) -> None:
        try:
            from confluent_kafka import Producer
        except ImportError as exc:
            raise ConfigError(
                "the Kafka inference log sink needs confluent-kafka: pip install 'tureen[kafka]'."
            ) from exc
        conf: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            "linger.ms": 20,
            "compression.type": "lz4",
            "enable.idempotence": True,
            **dict(config or {}),
        }
        self.topic_prefix = topic_prefix
        self.flush_timeout = flush_timeout
        self.delivered = 0
        self.errors = 0
        self._producer = Producer(conf)

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        if err is None:
            self.delivered += 1
        else:
            self.errors += 1
            log.error("inference log: Kafka delivery failed: %s", err)

    def write(self, batch: Sequence[LoggedRequest]) -> None:
        p = self._producer
        for r in batch:
            topic = topic_for(r.deployment, self.topic_prefix)
            while True:
                try:
                    p.produce(topic, key=r.request_id.encode(), value=encode(r),
                              on_delivery=self._on_delivery)
                    break
                except BufferError:  # the producer's local queue is full: let it drain
                    p.poll(0.1)
        p.poll(0)

    def close(self) -> None:
        left = self._producer.flush(self.flush_timeout)
        if left:
            raise BackendUnavailableError(
                f"{left} inference log messages were not delivered to Kafka within "
                f"{self.flush_timeout}s; check the brokers."
            )
