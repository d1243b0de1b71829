"""``tureen.yaml``: one validated configuration per feature repo.

Example::

    project: fraud_detection
    registry: data/registry.json            # or {type: sql, url: postgresql://...}
    offline_store: {type: duckdb}
    online_store: {type: sqlite, path: data/online.db}

Every section is ``{type: NAME, ...options}``; the options are validated by the backend
named ``type``. Any field can be overridden with ``TUREEN_<SECTION>__<FIELD>`` environment
variables, e.g. ``TUREEN_ONLINE_STORE__TYPE=redis TUREEN_ONLINE_STORE__URL=redis://...``;
``TUREEN_PROJECT`` overrides the project name. Values from the environment are parsed as YAML
scalars (``5`` is an int, ``true`` a bool).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tureen.errors import ConfigError

CONFIG_FILE = "tureen.yaml"


class BackendConfig(BaseModel):
    """A backend chosen by ``type``; all other keys are that backend's options."""

    model_config = ConfigDict(extra="allow")
    type: str

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class RepoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    project: str = Field(description="Project name; namespaces keys in shared stores.")
    registry: BackendConfig = Field(
        default_factory=lambda: BackendConfig.model_validate(
            {"type": "file", "path": "data/registry.json"}
        ),
        description="Where definitions are stored: file (default) or sql.",
    )
    offline_store: BackendConfig = Field(
        default_factory=lambda: BackendConfig(type="duckdb"),
        description="Engine for training sets and materialization: duckdb (default) or spark.",
    )
    online_store: BackendConfig = Field(
        default_factory=lambda: BackendConfig.model_validate(
            {"type": "sqlite", "path": "data/online.db"}
        ),
        description="Low-latency store for serving: sqlite (default) or redis.",
    )
    models: BackendConfig = Field(
        default_factory=lambda: BackendConfig.model_validate({"type": "file", "path": "models"}),
        description="Where registered models are stored (a local path or fsspec URL).",
    )
    serving: dict[str, Any] = Field(
        default_factory=dict, description="Defaults for `tureen serve` (ports, workers)."
    )

    @field_validator("project")
    @classmethod
    def _project_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_\-]*", v):
            raise ValueError("must start with a letter and use letters, digits, '_' or '-'")
        return v

    @field_validator("registry", "offline_store", "online_store", "models", mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        if isinstance(v, str):  # `registry: path/to/registry.json`
            return {"type": "file", "path": v}
        return v


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the YAML node at ``loc`` (or its closest existing parent)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            nxt = node.value[part] if part < len(node.value) else None
        else:
            nxt = None
        if nxt is None:
            break
        node, line = nxt, nxt.start_mark.line + 1
    return line


def _env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    out = dict(data)
    # TYPE first: switching a backend's type drops the file's options for the old backend.
    for key, raw in sorted(environ.items(), key=lambda kv: not kv[0].endswith("__TYPE")):
        if not key.startswith("TUREEN_") or key in ("TUREEN_REQUIRE_SERVICES",):
            continue
        path = key[len("TUREEN_"):].lower().split("__")
        if path[0] not in RepoConfig.model_fields:
            continue
        value = yaml.safe_load(raw) if raw else raw
        if len(path) == 2 and path[1] == "type":
            cur = out.get(path[0])
            cur_type = cur.get("type") if isinstance(cur, Mapping) else ("file" if cur else None)
            if cur_type != value:
                out[path[0]] = {}
        target = out
        for i, part in enumerate(path[:-1]):
            cur = target.get(part)
            if isinstance(cur, str) and i == 0:
                cur = {"type": "file", "path": cur}
            target[part] = dict(cur) if isinstance(cur, Mapping) else {}
            target = target[part]
        target[path[-1]] = value
    return out


def load_config(repo: str | Path, environ: Mapping[str, str] | None = None) -> RepoConfig:
    """Read and validate ``<repo>/tureen.yaml``; errors name the file, line and field."""
    path = Path(repo) / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(
            f"no {CONFIG_FILE} in {Path(repo).resolve()}: run `tureen init DIR` to create a "
            "feature repo, or pass the repo folder with --repo."
        )
    text = path.read_text()
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with at least `project: NAME`.")
    data = _env_overrides(data, os.environ if environ is None else environ)
    try:
        return RepoConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            line = _line_of(node, loc)
            field = ".".join(str(p) for p in loc) or "(top level)"
            at = f"{path}:{line}" if line else str(path)
            problems.append(f"{at}: field `{field}`: {err['msg']}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from exc
