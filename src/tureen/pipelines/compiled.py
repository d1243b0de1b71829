"""Compiled IR of pipeline files, kept while nothing it was compiled from changes.

Running ``FILE.py`` means importing kfp, importing the file and compiling: about a second
that a rerun (all cached, say) should not pay. After a compile, the IR is stored with the
size and modification time of every source file then loaded that is not an installed
package (the pipeline file, its sibling modules, an editable tureen) and the kfp and tureen
versions; a later run uses the IR only if all of them are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import sys
import sysconfig
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from tureen.pipelines.runs import write_atomic

_INSTALLED = ("site-packages", "dist-packages")


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("kfp", "tureen"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "-"
    return out


def _stat(path: str) -> list[int] | None:
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def source_files() -> dict[str, list[int] | None]:
    """Loaded module files that are not installed packages or the standard library."""
    stdlib = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib")}
    out: dict[str, list[int] | None] = {}
    for mod in list(sys.modules.values()):
        f = getattr(mod, "__file__", None)
        if not f or any(part in f for part in _INSTALLED) or any(f.startswith(s) for s in stdlib):
            continue
        out[f] = _stat(f)
    return out


def _entry(root: Path, path: Path, name: str | None) -> Path:
    ident = hashlib.sha256(f"{path.resolve()}:{name or ''}".encode()).hexdigest()[:32]
    return root / f"{ident}.json"


def get(root: Path, path: Path, name: str | None) -> dict[str, Any] | None:
    try:
        entry = json.loads(_entry(root, path, name).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("versions") != _versions():
        return None
    files = entry.get("files") or {}
    if str(path.resolve()) not in files or any(_stat(f) != s for f, s in files.items()):
        return None
    return entry


def put(root: Path, path: Path, name: str | None, doc: dict[str, Any],
        platform: dict[str, Any], python_defaults: dict[str, Any]) -> None:
    files = source_files()
    files[str(path.resolve())] = _stat(str(path.resolve()))
    try:
        text = json.dumps({"versions": _versions(), "files": files, "doc": doc,
                           "platform": platform, "python_defaults": python_defaults})
    except (TypeError, ValueError):
        return  # a default that is not JSON: compile again next time
    root.mkdir(parents=True, exist_ok=True)
    write_atomic(_entry(root, path, name), text)
