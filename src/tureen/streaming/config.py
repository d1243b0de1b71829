"""``streaming:`` in tureen.yaml: how ``tureen ingest`` (and ``tureen serve``) run streams."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class StreamingConfig(BaseModel):
    """Settings shared by every stream view's consumer and the HTTP ingestion routes."""

    model_config = ConfigDict(extra="forbid")

    bootstrap_servers: str = Field(
        default="", description="Kafka brokers for KafkaSources that name none (host:port,...).")
    group_id: str = Field(
        default="", description="Consumer group prefix; default tureen.<project>. Each source "
        "reads as group <prefix>.<source>.")
    consumer: dict[str, Any] = Field(
        default_factory=dict, description="Extra librdkafka consumer settings (e.g. "
        "security.protocol); tureen's own (offset commits) cannot be overridden.")
    producer: dict[str, Any] = Field(
        default_factory=dict, description="Extra librdkafka settings of the dead-letter producer.")
    dead_letter_suffix: str = Field(
        default=".dlq", pattern=r"^[A-Za-z0-9._\-]{1,40}$",
        description="Bad Kafka records go to <topic><suffix> with the reason in headers.")
    batch_max_messages: int = Field(
        default=5000, ge=1, le=1_000_000, description="Most messages handled per batch.")
    batch_wait_ms: float = Field(
        default=2.0, ge=0, le=10_000, description="Longest wait for a batch to fill.")
    flush_interval_seconds: float = Field(
        default=1.0, gt=0, le=3600, description="Offline files are written (and offsets "
        "committed) at least this often while events flow.")
    file_max_rows: int = Field(
        default=200_000, ge=1, description="Rows buffered before an offline file is written early.")
    compact_min_files: int = Field(
        default=32, ge=2, description="Compact a log once it has this many small files.")
    compact_target_rows: int = Field(
        default=2_000_000, ge=1, description="Rows per file after compaction.")
    retry_max_seconds: float = Field(
        default=5.0, gt=0, description="Longest pause between retries while a store is down.")
    status_interval_seconds: float = Field(
        default=1.0, gt=0, description="How often ingesters write their status file.")
    ingest_in_serve: bool = Field(
        default=False, description="`tureen serve` also runs `tureen ingest` for every "
        "KafkaSource view (the --ingest flag does the same).")
    max_request_rows: int = Field(
        default=10_000, ge=1, description="Most events one POST /ingest/{source} may carry.")
    max_request_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="Largest body of one POST "
        "/ingest/{source}, checked before it is parsed.")
