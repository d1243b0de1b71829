"""Load a feature repo's Python definition files and collect what they declare.

Every ``*.py`` file in the repo folder and its sub-folders (except hidden folders, ``data``,
``models``, ``pipelines`` (Kubeflow pipelines, run with ``tureen pipeline``) and virtualenvs)
is imported in a fresh module; every Entity, FeatureView,
OnDemandFeatureView and FeatureService found at module level is collected.
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from tureen.definitions import Entity, FeatureService, FeatureView, OnDemandFeatureView
from tureen.errors import ConfigError, TureenError
from tureen.user_code import NotImportableError, import_file

_SKIP_DIRS = {"data", "models", "pipelines", "__pycache__", "venv", ".venv", "node_modules",
              "logs"}


@dataclass
class RepoDefinitions:
    entities: dict[str, Entity] = field(default_factory=dict)
    feature_views: dict[str, FeatureView] = field(default_factory=dict)
    on_demand_views: dict[str, OnDemandFeatureView] = field(default_factory=dict)
    feature_services: dict[str, FeatureService] = field(default_factory=dict)
    origin: dict[tuple[str, str], str] = field(default_factory=dict)

    def add(self, obj: Any, where: str) -> None:
        table: dict[str, Any]
        if isinstance(obj, Entity):
            kind, table = "entity", self.entities
        elif isinstance(obj, FeatureView):
            kind, table = "feature view", self.feature_views
        elif isinstance(obj, OnDemandFeatureView):
            kind, table = "on-demand feature view", self.on_demand_views
        elif isinstance(obj, FeatureService):
            kind, table = "feature service", self.feature_services
        else:
            return
        key = (kind, obj.name)
        if obj.name in table and table[obj.name] != obj:
            raise ConfigError(
                f"two different {kind}s are named {obj.name!r} ({self.origin[key]} and {where}); "
                "rename one of them."
            )
        if kind in ("feature view", "on-demand feature view"):
            other = self.on_demand_views if kind == "feature view" else self.feature_views
            if obj.name in other:
                raise ConfigError(
                    f"a feature view and an on-demand feature view are both named {obj.name!r}; "
                    "feature references must be unambiguous: rename one."
                )
        table[obj.name] = obj
        self.origin.setdefault(key, where)


def definition_files(repo: Path) -> list[Path]:
    out = []
    for p in sorted(repo.rglob("*.py")):
        rel = p.relative_to(repo)
        if any(part.startswith(".") or part in _SKIP_DIRS for part in rel.parts[:-1]):
            continue
        if p.name.startswith((".", "test_")) or p.name in ("setup.py", "conftest.py"):
            continue
        out.append(p)
    return out


def _import(path: Path) -> ModuleType:
    try:
        return import_file(path, f"_tureen_repo_{path.stem}_", keep=False)
    except NotImportableError as exc:
        raise ConfigError(str(exc)) from exc
    except TureenError as exc:
        raise ConfigError(f"{path}{_line_in(exc, path)}: {exc}") from exc
    except Exception as exc:
        raise ConfigError(f"{path}{_line_in(exc, path)}: error while loading definitions: "
                          f"{type(exc).__name__}: {exc}") from exc


def _line_in(exc: BaseException, path: Path) -> str:
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f":{exc.lineno}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == path]
    return f":{frames[-1].lineno}" if frames else ""


def load_definitions(repo: Path) -> RepoDefinitions:
    repo = repo.resolve()
    defs = RepoDefinitions()
    added = str(repo) not in sys.path
    if added:  # let definition files import each other
        sys.path.insert(0, str(repo))
    try:
        for path in definition_files(repo):
            module = _import(path)
            for value in vars(module).values():
                defs.add(value, str(path.relative_to(repo)))
    finally:
        if added:
            sys.path.remove(str(repo))
    return defs
