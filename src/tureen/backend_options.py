"""The options every built-in backend accepts in ``tureen.yaml``, one pydantic model each.

They live here, apart from the backends, so ``load_config`` can check every section the
moment the file is read (a misspelt option fails there, with file, line and a suggestion)
without importing Redis, SQLAlchemy, DuckDB or PySpark. ``OPTIONS`` maps
``(section, type)`` to the model; third-party backends (entry points) are checked when they
are built. Every field is listed in README.md's configuration reference (a unit test compares
the two).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_SQL_TABLE = "tureen_registry"


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileRegistryOptions(_Options):
    """``registry: {type: file, ...}``."""

    path: str = Field(default="data/registry.json",
                      description="Registry file; relative paths are relative to the repo.")


class SqlRegistryOptions(_Options):
    """``registry: {type: sql, ...}``."""

    url: str = Field(description="SQLAlchemy URL, e.g. postgresql://user@host:5432/db.")
    cache_ttl_seconds: float = Field(
        default=5.0, ge=0,
        description="How long servers may serve a cached registry before re-reading it.",
    )
    table: str = Field(
        default=DEFAULT_SQL_TABLE, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Name of the documents table; history goes to <table>_history.",
    )
    connect_timeout_seconds: int = Field(default=5, ge=1)


class DuckDBOptions(_Options):
    """``offline_store: {type: duckdb, ...}``."""

    threads: int | None = Field(
        default=None, ge=1, description="Worker threads; default all cores."
    )
    memory_limit: str | None = Field(
        default=None, description="Most memory DuckDB may use, such as '6GB'; past it, work "
        "spills to temp_directory. Default: half of the machine's (or container's) memory.",
    )
    temp_directory: str | None = Field(
        default=None, description="Where DuckDB spills when over memory_limit (relative to "
        "the repo); default a tureen-spill folder in the system temp folder. '' turns "
        "spilling off (then going over the limit is an error).",
    )
    chunk_rows: int = Field(
        default=1_000_000, ge=1, description="Entity rows joined at a time when a training "
        "set is streamed to a file (or its entity rows do not fit one chunk).",
    )
    batch_rows: int = Field(
        default=100_000, ge=1, description="Rows per RecordBatch yielded to materialization."
    )


class SparkOptions(_Options):
    """``offline_store: {type: spark, ...}``."""

    master: str = Field(default="local[*]", description="Spark master URL.")
    app_name: str = Field(default="tureen", description="Spark application name.")
    conf: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Extra Spark configuration (spark.* keys)."
    )
    batch_rows: int = Field(
        default=100_000, ge=1, description="Rows per RecordBatch yielded to materialization."
    )
    python: str | None = Field(
        default=None,
        description="Python interpreter of the Spark workers. Default: this process's own "
        "interpreter (sys.executable) with a local[...] master, unless PYSPARK_PYTHON is set; "
        "on a cluster, PYSPARK_PYTHON or the cluster's setting (the workers need tureen "
        "installed).",
    )
    staging_dir: str | None = Field(
        default=None,
        description="Where entity rows are staged as Parquet for Spark to read: a folder or "
        "URL every executor can reach. Default: a local temporary folder with a local[...] "
        "master (much faster than sending rows through the driver), else no staging.",
    )


class SqliteOptions(_Options):
    """``online_store: {type: sqlite, ...}``."""

    path: str = Field(
        default="data/online.db",
        description="Database file; relative paths are relative to the feature repo.",
    )
    busy_timeout_ms: int = Field(
        default=30_000, ge=0, description="How long a writer waits for another writer's lock."
    )
    mmap_size_mb: int = Field(
        default=256, ge=0, description="Memory-map this much of the file (0: off); random "
        "point reads then skip a read() system call per page."
    )
    cache_size_mb: int = Field(
        default=32, ge=0, description="Page cache per connection (one connection per thread)."
    )


class RedisOptions(_Options):
    """``online_store: {type: redis, ...}``."""

    url: str | list[str] = Field(
        default="redis://localhost:6379/0",
        description="redis:// or rediss:// URL; a list of node URLs means a Redis Cluster.",
    )
    cluster: bool = Field(
        default=False, description="Treat `url` as a Redis Cluster node (implied by a list)."
    )
    key_ttl_seconds: int | None = Field(
        default=None, gt=0,
        description="Expire an entity's hash this long after its last write (default: never).",
    )
    key_prefix: str = Field(default="tureen", pattern=r"^[A-Za-z0-9_\-.]+$")
    connect_timeout_seconds: float = Field(default=2.0, gt=0)
    socket_timeout_seconds: float = Field(default=5.0, gt=0)
    write_batch_size: int = Field(
        default=5000, ge=1, description="Rows per pipelined round trip when writing."
    )
    max_connections: int | None = Field(default=None, ge=1)

    @field_validator("url")
    @classmethod
    def _urls(cls, v: str | list[str]) -> str | list[str]:
        for u in [v] if isinstance(v, str) else v:
            if urlsplit(u).scheme not in ("redis", "rediss", "unix"):
                raise ValueError(f"{u!r} is not a redis://, rediss:// or unix:// URL")
        if isinstance(v, list) and not v:
            raise ValueError("give at least one cluster node URL")
        return v


class ModelsOptions(_Options):
    """``models: {type: file, ...}``."""

    path: str = Field(default="models",
                      description="Local folder (relative to the repo) or fsspec URL.")
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="fsspec options for a remote `path` (credentials, "
        "endpoint).")


#: (section, type) -> the options model of a built-in backend
OPTIONS: dict[tuple[str, str], type[BaseModel]] = {
    ("registry", "file"): FileRegistryOptions,
    ("registry", "sql"): SqlRegistryOptions,
    ("offline_store", "duckdb"): DuckDBOptions,
    ("offline_store", "spark"): SparkOptions,
    ("online_store", "sqlite"): SqliteOptions,
    ("online_store", "redis"): RedisOptions,
    ("models", "file"): ModelsOptions,
}
