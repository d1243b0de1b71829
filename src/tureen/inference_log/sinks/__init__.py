"""Inference log sinks, chosen by a URL (``--log-sink``):

- empty, a path, ``file://``, ``s3://``...: Parquet dataset (default ``data/inference_log``
  in the repo; relative paths are inside the repo);
- ``kafka://HOST:PORT[,HOST:PORT]?topic_prefix=P&<librdkafka option>=...``: Kafka, one topic
  per deployment;
- ``http://...``, ``https://...``: HTTP CloudEvents in KServe's inference logger format.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tureen.inference_log.protocol import LogSink

DEFAULT_DIR = "data/inference_log"


def sink_from_url(url: str | None, repo_path: str | Path = ".") -> LogSink:
    if url and url.startswith(("http://", "https://")):
        from tureen.inference_log.sinks.cloudevents import CloudEventsSink

        return CloudEventsSink(url)
    if url and url.startswith("kafka://"):
        from tureen.inference_log.sinks.kafka import DEFAULT_PREFIX, KafkaSink

        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        prefix = query.pop("topic_prefix", DEFAULT_PREFIX)
        return KafkaSink(parts.netloc, prefix, config=query)
    from tureen.inference_log.sinks.parquet import ParquetSink

    return ParquetSink(parquet_root(url, repo_path))


def parquet_root(url: str | None, repo_path: str | Path = ".") -> str:
    """The Parquet log location of ``url`` (relative paths are inside the repo)."""
    target = url or DEFAULT_DIR
    if target.startswith("parquet://"):
        target = target[len("parquet://"):]
    if "://" in target or Path(target).is_absolute():
        return target
    return str((Path(repo_path) / target).resolve())
