"""Where feature rows come from: files (Parquet/CSV), pushes, and request-time data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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


DataSource = FileSource | PushSource | RequestSource


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
    if kind == "request":
        return RequestSource(d["name"], [Field.from_dict(f) for f in d["schema"]], **common)
    raise InvalidRequestError(f"unknown data source kind {kind!r} in the registry.")
