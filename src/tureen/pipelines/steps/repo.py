"""Which feature repo a component works on, and with which configuration.

``repo`` defaults to ``$TUREEN_REPO`` (the local runner sets it to the repo it runs in; the
tureen image sets it to ``/app/repo``), else the working directory. ``config`` is YAML with
``tureen.yaml`` keys that override the repo's file for this task (on a cluster: the SQL
registry, Redis, the bucket of the models store), applied as ``TUREEN_*`` variables — the
same mechanism as every other tureen command, so a Kubernetes Secret or ConfigMap mapped to
``TUREEN_*`` environment variables works as well.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tureen.config import RepoConfig, load_config
from tureen.errors import ConfigError


def _scalar(v: Any) -> str:
    """``v`` as text that ``tureen.config`` parses back (as YAML) into ``v``."""
    if isinstance(v, str):
        try:
            if yaml.safe_load(v) == v:
                return v
        except yaml.YAMLError:
            pass
    text: str = yaml.safe_dump(v, default_flow_style=True, width=1 << 20).strip()
    return text.removesuffix("...").strip()


def overrides_env(config: str | Mapping[str, Any] | None) -> dict[str, str]:
    """``{registry: {type: sql, url: ...}}`` → ``{"TUREEN_REGISTRY__TYPE": "sql", ...}``."""
    if not config:
        return {}
    data = yaml.safe_load(config) if isinstance(config, str) else dict(config)
    if not isinstance(data, Mapping):
        raise ConfigError(f"config override must be a YAML mapping of tureen.yaml keys, got "
                          f"{type(data).__name__}.")
    env: dict[str, str] = {}
    for section, value in data.items():
        key = f"TUREEN_{str(section).upper()}"
        if isinstance(value, Mapping):
            for k, v in value.items():
                env[f"{key}__{str(k).upper()}"] = _scalar(v)
        else:
            env[key] = _scalar(value)
    return env


def repo_path(repo: str = "") -> Path:
    return Path(repo or os.environ.get("TUREEN_REPO") or ".").resolve()


def repo_config(repo: str = "", config: str = "", env: Mapping[str, str] | None = None
                ) -> tuple[Path, RepoConfig]:
    """The repo and its configuration with ``config`` applied, without touching os.environ
    (``env``: the task's environment, when computing for a task from outside it)."""
    environ = {**os.environ, **(env or {})}
    path = Path(repo or environ.get("TUREEN_REPO") or ".").resolve()
    return path, load_config(path, environ={**environ, **overrides_env(config)})
