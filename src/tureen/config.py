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
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tureen.backend_options import OPTIONS
from tureen.errors import ConfigError, suggest
from tureen.serving.settings import ServingConfig
from tureen.streaming.config import StreamingConfig

CONFIG_FILE = "tureen.yaml"


class BackendConfig(BaseModel):
    """A backend chosen by ``type``; all other keys are that backend's options."""

    model_config = ConfigDict(extra="allow")
    type: str

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class IngestConfig(BaseModel):
    """``ingest:`` rows that arrive at run time (push, write-to-online-store, streams)."""

    model_config = ConfigDict(extra="forbid")
    max_clock_skew_seconds: float | None = Field(
        default=300.0, ge=0, description="Reject rows whose event time is more than this "
        "ahead of the server's clock (newer wins online, so a row dated in the future would "
        "hide every later write); null: no limit.")


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
    ingest: IngestConfig = Field(
        default_factory=IngestConfig, description="Checks on rows written at run time.")
    serving: ServingConfig = Field(
        default_factory=lambda: ServingConfig(), description="Serving processes: ports, "
        "workers, limits, auth, TLS, transformers (see tureen.serving.settings)."
    )
    streaming: StreamingConfig = Field(
        default_factory=StreamingConfig, description="How `tureen ingest` consumes streams "
        "(brokers, batches, checkpoints, dead letters)."
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


_DEFAULT_TYPES = {"registry": "file", "offline_store": "duckdb", "online_store": "sqlite",
                  "models": "file"}


def _env_overrides(data: dict[str, Any], environ: Mapping[str, str],
                   sources: dict[tuple[str, ...], str] | None = None) -> dict[str, Any]:
    """``data`` with ``TUREEN_<SECTION>__<FIELD>`` values applied; ``sources`` collects which
    key paths came from which variable (so errors can name the variable)."""
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
            if cur is None and i == 0 and part in _DEFAULT_TYPES and path[1] != "type":
                cur = {"type": _DEFAULT_TYPES[part]}  # an option of the default backend
            target[part] = dict(cur) if isinstance(cur, Mapping) else {}
            target = target[part]
        target[path[-1]] = value
        if sources is not None:
            sources[tuple(path)] = key
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
    sources: dict[tuple[str, ...], str] = {}
    data = _env_overrides(data, os.environ if environ is None else environ, sources)
    try:
        config = RepoConfig.model_validate(data)
    except ValidationError as exc:
        raise _config_error(path, node, sources, _located(exc, (), RepoConfig)) from exc
    problems: list[tuple[tuple[int | str, ...], str]] = []
    for section in _BACKEND_SECTIONS:
        problems += _check_backend(section, getattr(config, section))
    for i, item in enumerate(config.serving.transformers):
        if isinstance(item, dict):
            from tureen.transformer.config import TransformerConfig

            try:
                TransformerConfig.model_validate(item)
            except ValidationError as exc:
                problems += _located(exc, ("serving", "transformers", i), TransformerConfig)
    if problems:
        raise _config_error(path, node, sources, problems)
    return config


_BACKEND_SECTIONS = ("registry", "offline_store", "online_store", "models")
Problem = tuple[tuple[int | str, ...], str]


def _check_backend(section: str, cfg: BackendConfig) -> list[Problem]:
    """Validate a section's options against its backend's model (built-ins; third-party
    backends are checked when they are built)."""
    model = OPTIONS.get((section, cfg.type))
    if model is None:
        known = sorted(t for s, t in OPTIONS if s == section)
        plugins = _plugin_types(section)
        if cfg.type in plugins:
            return []
        choices = known + sorted(plugins)
        return [((section, "type"), f"unknown {section} type {cfg.type!r}."
                 f"{suggest(cfg.type, choices)} Available: {', '.join(choices)}.")]
    try:
        model.model_validate(cfg.options)
    except ValidationError as exc:
        return _located(exc, (section,), model)
    return []


def _plugin_types(section: str) -> set[str]:
    from importlib.metadata import entry_points

    return {ep.name.partition(".")[2] for ep in entry_points(group="tureen.backends")
            if ep.name.partition(".")[0] == section}


def _fields_at(model: Any, loc: tuple[int | str, ...]) -> list[str]:
    """Field names of the (nested) pydantic model at ``loc`` below ``model``."""
    for part in loc:
        if isinstance(part, int) or not isinstance(model, type) or not issubclass(
            model, BaseModel
        ):
            continue
        info = model.model_fields.get(part)
        if info is None:
            return []
        model = _model_in(info.annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _model_in(annotation: Any) -> Any:
    """The pydantic model inside ``X | None`` / ``list[X]`` (or the annotation itself)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation) if get_origin(annotation) is not None else ():
        found = _model_in(arg)
        if isinstance(found, type) and issubclass(found, BaseModel):
            return found
    return annotation


def _located(exc: ValidationError, prefix: tuple[int | str, ...], model: Any) -> list[Problem]:
    out: list[Problem] = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in _UNION_TAGS))
        msg = err["msg"]
        if err["type"] == "extra_forbidden" and loc:
            key = str(loc[-1])
            known = _fields_at(model, loc[:-1])
            msg = (f"unknown key {key!r}.{suggest(key, known)} "
                   f"Known keys: {', '.join(known) or 'none'}.")
        out.append(((*prefix, *loc), msg))
    return out


#: pydantic's names for union members in error locations (``str | dict`` items)
_UNION_TAGS = {"str", "dict[str,any]"}


def _config_error(path: Path, node: yaml.Node | None,
                  sources: Mapping[tuple[str, ...], str], problems: list[Problem]) -> ConfigError:
    lines = []
    for loc, msg in problems:
        field = ".".join(str(p) for p in loc) or "(top level)"
        var = next((v for k, v in sources.items() if tuple(map(str, loc))[:len(k)] == k), None)
        if var is not None:
            at = f"environment variable {var}"
        else:
            line = _line_of(node, loc)
            at = f"{path}:{line}" if line else str(path)
        lines.append(f"{at}: field `{field}`: {msg}")
    return ConfigError("invalid configuration:\n  " + "\n  ".join(lines))


def serving_settings(section: Mapping[str, Any] | None = None,
                     environ: Mapping[str, str] | None = None) -> ServingConfig:
    """``ServingConfig`` from a ``serving:`` mapping (none: defaults) with the
    ``TUREEN_SERVING__*`` environment overrides applied (for servers run without a repo)."""
    sources: dict[tuple[str, ...], str] = {}
    data = _env_overrides({"serving": dict(section or {})},
                          os.environ if environ is None else environ, sources)
    try:
        return ServingConfig.model_validate(data.get("serving") or {})
    except ValidationError as exc:
        problems = _located(exc, ("serving",), ServingConfig)
        lines = []
        for loc, msg in problems:
            var = next((v for k, v in sources.items() if tuple(map(str, loc))[:len(k)] == k),
                       None)
            where = f" (environment variable {var})" if var else ""
            lines.append(f"{'.'.join(map(str, loc))}{where}: {msg}")
        raise ConfigError("invalid serving settings:\n  " + "\n  ".join(lines)) from exc
