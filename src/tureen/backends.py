"""The one table mapping a backend name in tureen.yaml to the class that implements it.

Third-party backends register an entry point in the group ``tureen.backends`` named
``<section>.<type>`` (e.g. ``online_store.dynamodb``) pointing at ``module:Class``. Every
backend class has ``from_config(options: dict, repo_path: Path, project: str)``.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tureen.config import BackendConfig
from tureen.errors import ConfigError, suggest

BUILTIN: dict[tuple[str, str], str] = {
    ("registry", "file"): "tureen.registry.file_store:FileRegistryStore",
    ("registry", "sql"): "tureen.registry.sql_store:SqlRegistryStore",
    ("offline_store", "duckdb"): "tureen.offline.duckdb_engine:DuckDBEngine",
    ("offline_store", "spark"): "tureen.offline.spark_engine:SparkEngine",
    ("online_store", "sqlite"): "tureen.online.sqlite_store:SqliteOnlineStore",
    ("online_store", "redis"): "tureen.online.redis_store:RedisOnlineStore",
}


def _table(section: str) -> dict[str, str]:
    table = {t: target for (s, t), target in BUILTIN.items() if s == section}
    for ep in entry_points(group="tureen.backends"):
        s, _, t = ep.name.partition(".")
        if s == section:
            table[t] = ep.value
    return table


def load_backend(section: str, cfg: BackendConfig, repo_path: Path, project: str) -> Any:
    table = _table(section)
    target = table.get(cfg.type)
    if target is None:
        raise ConfigError(
            f"tureen.yaml: {section}.type {cfg.type!r} is unknown.{suggest(cfg.type, table)} "
            f"Available: {', '.join(sorted(table))}."
        )
    module_name, _, cls_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name and exc.name.split(".")[0] == "tureen":
            raise
        extra = {"redis": "redis", "sql": "sql", "spark": "spark"}.get(cfg.type, cfg.type)
        raise ConfigError(
            f"{section}.type {cfg.type!r} needs an optional dependency that is not installed "
            f"({exc.name}): pip install 'tureen[{extra}]'."
        ) from exc
    cls = getattr(module, cls_name)
    try:
        return cls.from_config(cfg.options, repo_path, project)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"tureen.yaml: {section} ({cfg.type}) options: {problems}") from exc
