"""Where feature rows come from: files (Parquet/CSV), pushes, and request-time data."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from tureen.definitions.field import Field, check_name
from tureen.errors import InvalidRequestError

FileFormat = Literal["parquet", "csv"]


def _infer_format(path: str) -> FileFormat:
    lowered = path.lower().rstrip("/")
    if lowered.endswith((".csv", ".csv.gz", ".tsv")):
        return "csv"
    return "parquet"


@dataclass(frozen=True)
class FileSource:
    """Rows in a Parquet or CSV file, folder, glob or hive-partitioned dataset.

    ``path`` is a local path (relative paths are relative to the feature repo) or an fsspec
    URL. ``field_mapping`` renames source columns to feature names: ``{"src_col": "feature"}``.
    """

    path: str
    timestamp_field: str = "event_timestamp"
    created_timestamp_column: str = ""
    field_mapping: Mapping[str, str] = field(default_factory=dict)
    name: str = ""
    file_format: FileFormat | None = None
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path:
            raise InvalidRequestError("FileSource needs a path to a Parquet or CSV file or folder.")
        if self.file_format is None:
            object.__setattr__(self, "file_format", _infer_format(self.path))
        if self.file_format not in ("parquet", "csv"):
            raise InvalidRequestError(
                f"FileSource {self.path!r}: file_format must be 'parquet' or 'csv', "
                f"got {self.file_format!r}."
            )
        if not self.timestamp_field:
            raise InvalidRequestError(
                f"FileSource {self.path!r} needs timestamp_field (the event time column)."
            )
        if not self.name:
            object.__setattr__(self, "name", self.path)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "file",
            "name": self.name,
            "path": self.path,
            "timestamp_field": self.timestamp_field,
            "created_timestamp_column": self.created_timestamp_column,
            "field_mapping": dict(self.field_mapping),
            "file_format": self.file_format,
            "description": self.description,
            "tags": dict(self.tags),
        }


@dataclass(frozen=True)
class PushSource:
    """Rows pushed at run time (``FeatureStore.push``); also written to ``batch_source``."""

    name: str
    batch_source: FileSource
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_name("PushSource", self.name)
        if not isinstance(self.batch_source, FileSource):
            raise InvalidRequestError(
                f"PushSource {self.name!r} needs batch_source=FileSource(...): pushed rows are "
                "also kept offline there for training."
            )

    @property
    def timestamp_field(self) -> str:
        return self.batch_source.timestamp_field

    @property
    def created_timestamp_column(self) -> str:
        return self.batch_source.created_timestamp_column

    @property
    def field_mapping(self) -> Mapping[str, str]:
        return self.batch_source.field_mapping

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "push",
            "name": self.name,
            "batch_source": self.batch_source.to_dict(),
            "description": self.description,
            "tags": dict(self.tags),
        }


@dataclass(frozen=True)
class RequestSource:
    """Values that arrive with each request (e.g. the transaction amount)."""

    name: str
    schema: Sequence[Field]
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_name("RequestSource", self.name)
        object.__setattr__(self, "schema", tuple(self.schema))
        if not self.schema:
            raise InvalidRequestError(f"RequestSource {self.name!r} needs a non-empty schema.")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "request",
            "name": self.name,
            "schema": [f.to_dict() for f in self.schema],
            "description": self.description,
            "tags": dict(self.tags),
        }


@dataclass(frozen=True)
class JsonFormat:
    """Messages are JSON objects, one row each (Feast's ``JsonFormat``; the schema comes
    from the view, so ``schema_json`` is accepted and ignored)."""

    schema_json: str = ""


@dataclass(frozen=True)
class AvroFormat:
    """Messages are Avro records written with ``schema_json``: schemaless binary, or with
    ``confluent_framing=True`` Confluent's wire format (magic byte 0 and a 4-byte schema id
    before the record; the id is not looked up, the schema given here is used)."""

    schema_json: str
    confluent_framing: bool = False


MessageFormat = Literal["json", "avro"]


@dataclass(frozen=True, init=False)
class KafkaSource:
    """Events read from a Kafka topic by ``tureen ingest`` (names as in Feast).

    Each message is one row: a JSON object (``message_format="json"``) or an Avro record
    (``AvroFormat(schema_json)``; ``confluent_framing=True`` for Confluent's wire format).
    ``timestamp_field`` names the event time in the message (ISO-8601 string, or a number
    of seconds since the epoch); ``field_mapping`` renames
    message fields to feature names. ``batch_source`` is a Parquet folder: the offline log
    every accepted event is appended to, so training sets include streamed rows.
    ``watermark_delay`` is how far behind the newest event time an event may arrive and
    still count as on time; later ones are counted as late (see docs/streaming.md).
    """

    name: str
    topic: str
    batch_source: FileSource
    bootstrap_servers: str = ""
    message_format: MessageFormat | JsonFormat | AvroFormat = "json"
    timestamp_field: str = "event_timestamp"
    created_timestamp_column: str = ""
    field_mapping: Mapping[str, str] = field(default_factory=dict)
    watermark_delay: timedelta = timedelta(0)
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    owner: str = ""

    def __init__(
        self,
        name: str,
        topic: str,
        batch_source: FileSource,
        bootstrap_servers: str = "",
        message_format: MessageFormat | JsonFormat | AvroFormat = "json",
        timestamp_field: str = "event_timestamp",
        created_timestamp_column: str = "",
        field_mapping: Mapping[str, str] | None = None,
        watermark_delay: timedelta = timedelta(0),
        description: str = "",
        tags: Mapping[str, str] | None = None,
        owner: str = "",
        *,
        kafka_bootstrap_servers: str = "",
        watermark_delay_threshold: timedelta | None = None,
    ) -> None:
        values = {
            "name": name, "topic": topic, "batch_source": batch_source,
            "bootstrap_servers": bootstrap_servers or kafka_bootstrap_servers,
            "message_format": message_format, "timestamp_field": timestamp_field,
            "created_timestamp_column": created_timestamp_column,
            "field_mapping": dict(field_mapping or {}),
            "watermark_delay": (watermark_delay_threshold if watermark_delay_threshold
                                is not None else watermark_delay),
            "description": description, "tags": dict(tags or {}), "owner": owner,
        }
        for k, v in values.items():
            object.__setattr__(self, k, v)
        self.__post_init__()

    def __post_init__(self) -> None:
        check_name("KafkaSource", self.name)
        fmt = self.message_format
        if isinstance(fmt, JsonFormat):
            object.__setattr__(self, "message_format", "json")
        elif fmt not in ("json", "avro") and not isinstance(fmt, AvroFormat):
            raise InvalidRequestError(
                f"KafkaSource {self.name!r}: message_format must be 'json', JsonFormat() or "
                f"AvroFormat(schema_json), got {fmt!r}."
            )
        if fmt == "avro":
            raise InvalidRequestError(
                f"KafkaSource {self.name!r}: Avro messages need their schema: "
                "message_format=AvroFormat(schema_json='{...}')."
            )
        if not isinstance(self.topic, str) or not _TOPIC.fullmatch(self.topic):
            raise InvalidRequestError(
                f"KafkaSource {self.name!r}: topic {self.topic!r} is not a Kafka topic name "
                "(1-249 of letters, digits, '.', '_' and '-')."
            )
        if not isinstance(self.batch_source, FileSource) or self.batch_source.file_format != (
            "parquet"
        ):
            raise InvalidRequestError(
                f"KafkaSource {self.name!r} needs batch_source=FileSource(path='data/<folder>/') "
                "(Parquet): every accepted event is appended there for training sets."
            )
        if not self.timestamp_field:
            raise InvalidRequestError(
                f"KafkaSource {self.name!r} needs timestamp_field (the event time field)."
            )
        if not isinstance(self.watermark_delay, timedelta) or self.watermark_delay < timedelta(0):
            raise InvalidRequestError(
                f"KafkaSource {self.name!r}: watermark_delay must be a non-negative timedelta, "
                f"got {self.watermark_delay!r}."
            )

    @property
    def avro_schema(self) -> str:
        return self.message_format.schema_json if isinstance(self.message_format,
                                                             AvroFormat) else ""

    @property
    def format_name(self) -> str:
        return "avro" if isinstance(self.message_format, AvroFormat) else "json"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "kafka",
            "name": self.name,
            "topic": self.topic,
            "bootstrap_servers": self.bootstrap_servers,
            "message_format": self.format_name,
            "avro_schema": self.avro_schema,
            "avro_confluent_framing": isinstance(self.message_format, AvroFormat)
            and self.message_format.confluent_framing,
            "timestamp_field": self.timestamp_field,
            "created_timestamp_column": self.created_timestamp_column,
            "field_mapping": dict(self.field_mapping),
            "watermark_delay_seconds": self.watermark_delay.total_seconds(),
            "batch_source": self.batch_source.to_dict(),
            "description": self.description,
            "tags": dict(self.tags),
            "owner": self.owner,
        }


_TOPIC = re.compile(r"[A-Za-z0-9._\-]{1,249}")

DataSource = FileSource | PushSource | RequestSource | KafkaSource


def source_from_dict(d: Mapping[str, Any]) -> DataSource:
    kind = d.get("kind")
    common = {"description": d.get("description", ""), "tags": dict(d.get("tags", {}))}
    if kind == "file":
        return FileSource(
            path=d["path"],
            timestamp_field=d["timestamp_field"],
            created_timestamp_column=d.get("created_timestamp_column", ""),
            field_mapping=dict(d.get("field_mapping", {})),
            name=d.get("name", ""),
            file_format=d.get("file_format"),
            **common,
        )
    if kind == "push":
        batch = source_from_dict(d["batch_source"])
        assert isinstance(batch, FileSource)
        return PushSource(d["name"], batch, **common)
    if kind == "kafka":
        batch = source_from_dict(d["batch_source"])
        assert isinstance(batch, FileSource)
        fmt: MessageFormat | AvroFormat = (
            AvroFormat(d["avro_schema"], bool(d.get("avro_confluent_framing", False)))
            if d.get("message_format") == "avro" else "json"
        )
        return KafkaSource(
            d["name"], d["topic"], batch, d.get("bootstrap_servers", ""), fmt,
            d["timestamp_field"], d.get("created_timestamp_column", ""),
            dict(d.get("field_mapping", {})),
            timedelta(seconds=d.get("watermark_delay_seconds", 0)),
            d.get("description", ""), dict(d.get("tags", {})), d.get("owner", ""),
        )
    if kind == "request":
        return RequestSource(d["name"], [Field.from_dict(f) for f in d["schema"]], **common)
    raise InvalidRequestError(f"unknown data source kind {kind!r} in the registry.")
