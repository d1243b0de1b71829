"""Load a feature repo's Python definition files and collect what they declare.

Every ``*.py`` file in the repo folder and its sub-folders (except hidden folders, ``data``,
``models``, ``pipelines`` (Kubeflow pipelines, run with ``tureen pipeline``) and virtualenvs)
is imported in a fresh module; every Entity, FeatureView,
OnDemandFeatureView and FeatureService found at module level is collected.
"""

from __future__ import annotations

import ast
import os
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


IGNORE_FILE = ".tureenignore"
#: names whose import marks a file as a definition file
DEFINITION_NAMES = frozenset({
    "Entity", "FeatureView", "FeatureService", "OnDemandFeatureView", "on_demand_feature_view",
    "StreamFeatureView", "Field", "FileSource", "PushSource", "RequestSource", "KafkaSource",
    "Aggregation",
})


@dataclass(frozen=True)
class Scan:
    files: list[Path]  # definition files, in load order
    skipped: list[tuple[Path, str]]  # other .py files and why they are not loaded


def scan(repo: Path) -> Scan:
    """The repo's definition files and the Python files it leaves alone (with the reason)."""
    repo = repo.resolve()
    ignore = _ignore_spec(repo)
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for here, dirs, names in os.walk(repo):
        root = Path(here)
        dirs[:] = sorted(d for d in dirs if _descend(root / d))
        for name in sorted(names):
            if not name.endswith(".py"):
                continue
            path = root / name
            rel = path.relative_to(repo).as_posix()
            if name.startswith((".", "test_")) or name in ("setup.py", "conftest.py"):
                continue
            if ignore is not None and ignore.match_file(rel):
                skipped.append((path, f"listed in {IGNORE_FILE}"))
                continue
            why = _not_definitions(path)
            if why is None:
                files.append(path)
            else:
                skipped.append((path, why))
    return Scan(sorted(files), skipped)


def definition_files(repo: Path) -> list[Path]:
    return scan(repo).files


def _descend(folder: Path) -> bool:
    name = folder.name
    return not (name.startswith(".") or name in _SKIP_DIRS
                or (folder / "pyvenv.cfg").exists()  # a virtualenv
                or (folder / "tureen.yaml").exists())  # another repo (e.g. an export)


def _ignore_spec(repo: Path) -> Any:
    path = repo / IGNORE_FILE
    if not path.is_file():
        return None
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines(path.read_text().splitlines())


def _not_definitions(path: Path) -> str | None:
    """Why ``path`` is not a definition file, or None when it is one."""
    try:
        tree = ast.parse(path.read_bytes(), str(path))
    except (SyntaxError, ValueError):
        return None  # load it, so the error is reported with its line
    for node in tree.body:
        if isinstance(node, ast.If) and _is_main_guard(node.test):
            return 'a script (it has an `if __name__ == "__main__":` block)'
    for sub in ast.walk(tree):
        if isinstance(sub, ast.ImportFrom) and sub.module and (
            sub.module == "tureen" or sub.module.startswith("tureen.")
        ) and any(a.name == "*" or a.name in DEFINITION_NAMES for a in sub.names):
            return None
        if (isinstance(sub, ast.Attribute) and sub.attr in DEFINITION_NAMES
                and isinstance(sub.value, ast.Name) and sub.value.id == "tureen"):
            return None
    return "imports no tureen definition class (Entity, FeatureView, FeatureService, ...)"


def _is_main_guard(test: ast.expr) -> bool:
    return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name)
            and test.left.id == "__name__" and len(test.comparators) == 1
            and isinstance(test.comparators[0], ast.Constant)
            and test.comparators[0].value == "__main__")


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
