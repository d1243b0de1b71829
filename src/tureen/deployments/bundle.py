"""What an exported image carries, so it runs on the target as it ran here:

- the repo's definition files (the ones ``tureen plan`` loads, at their relative paths),
  ``tureen.yaml``, ``.tureenignore`` and a file registry: a transformer needs the registry
  for datatypes and feature order;
- the online store, when it is a local SQLite file: a cluster cannot reach this machine's
  disk, so the export either carries a consistent snapshot of the file
  (``--bundle-online-store``) or refuses, saying how to point the image at a shared store;
- an installable tureen: when tureen runs from a source checkout (not a published release),
  a wheel is built into ``wheels/`` and ``requirements.txt`` names that file, so the image
  build never asks an index for a version it does not have.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tureen.config import RepoConfig
from tureen.errors import ConfigError
from tureen.repo_loader import IGNORE_FILE, scan

WHEELS = "wheels"


def copy_repo(repo: Path, dest: Path, config: RepoConfig, *, reads_online: bool,
              bundle_online_store: bool) -> list[str]:
    """Copy what serving needs from ``repo`` to ``dest``; returns notes for the user."""
    notes: list[str] = []
    online_db = _sqlite_online_file(repo, config) if reads_online else None
    if online_db is not None and not bundle_online_store:
        raise ConfigError(
            f"this deployment reads online features from the SQLite file {online_db}, which "
            "a cluster cannot reach: the exported transformer would answer every entity as "
            "missing. Point the repo at a shared online store (online_store: {type: redis, "
            "url: ...} in tureen.yaml, or TUREEN_ONLINE_STORE__TYPE/__URL in the manifest's "
            "env), or pass --bundle-online-store to copy a snapshot of the file into the image "
            "(it does not change while serving)."
        )
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("tureen.yaml", IGNORE_FILE):
        if (repo / name).is_file():
            shutil.copy2(repo / name, dest / name)
    for f in scan(repo).files:
        target = dest / f.relative_to(repo.resolve())
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, target)
    if config.registry.type == "file":
        reg = _in_repo(repo, str(config.registry.options.get("path", "data/registry.json")))
        if reg is not None and reg.is_file():
            target = dest / reg.relative_to(repo.resolve())
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(reg, target)
        else:
            notes.append("the file registry is outside the repo or missing; the image needs "
                         "it: run `tureen apply` in the image or use a SQL registry.")
    if online_db is not None:
        target = dest / online_db.relative_to(repo.resolve())
        target.parent.mkdir(parents=True, exist_ok=True)
        _snapshot_sqlite(online_db, target)
        notes.append(f"the image carries a snapshot of {online_db.name} taken now; features "
                     "materialized or pushed later do not reach it.")
    return notes


def _in_repo(repo: Path, path: str) -> Path | None:
    p = Path(path).expanduser()
    p = (p if p.is_absolute() else repo / p).resolve()
    return p if p.is_relative_to(repo.resolve()) else None


def _sqlite_online_file(repo: Path, config: RepoConfig) -> Path | None:
    if config.online_store.type != "sqlite":
        return None
    path = _in_repo(repo, str(config.online_store.options.get("path", "data/online.db")))
    if path is None:
        raise ConfigError("the SQLite online store is outside the repo; the exported image "
                          "cannot carry it: use a shared online store (Redis).")
    return path


def _snapshot_sqlite(src: Path, dest: Path) -> None:
    """A consistent single-file copy (WAL included) with SQLite's backup API."""
    dest.unlink(missing_ok=True)
    a, b = sqlite3.connect(src), sqlite3.connect(dest)
    try:
        a.backup(b)
    finally:
        b.close()
        a.close()


def tureen_requirement(extras: list[str], out_dir: Path, override: str | None = None) -> str:
    """The requirements.txt line installing tureen on the target."""
    suffix = f"[{','.join(extras)}]" if extras else ""
    if override:
        return override
    try:
        dist = distribution("tureen")
    except PackageNotFoundError:  # pragma: no cover - running from a tree without metadata
        return f"tureen{suffix}"
    source = _local_source(dist.read_text("direct_url.json"))
    if source is None:  # installed from an index: that release exists there
        return f"tureen{suffix}=={dist.version}"
    wheel = build_wheel(source, out_dir / WHEELS)
    return f"./{WHEELS}/{wheel.name}{suffix}"


def _local_source(direct_url: str | None) -> Path | None:
    if not direct_url:
        return None
    info = json.loads(direct_url)
    url = info.get("url", "")
    if "dir_info" not in info or not url.startswith("file://"):
        return None
    path = Path(unquote(urlsplit(url).path))
    return path if (path / "pyproject.toml").is_file() else None


def build_wheel(source: Path, wheels: Path) -> Path:
    """Build tureen's wheel from a checkout into ``wheels`` (from a copy of the sources, so
    the checkout gets no build/ folder)."""
    wheels.mkdir(parents=True, exist_ok=True)
    for old in wheels.glob("tureen-*.whl"):
        old.unlink()
    with tempfile.TemporaryDirectory(prefix="tureen-wheel-") as tmp:
        copy = Path(tmp) / "src-copy"
        copy.mkdir()
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (source / name).is_file():
                shutil.copy2(source / name, copy / name)
        shutil.copytree(source / "src", copy / "src",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
             "-w", str(wheels), str(copy)], capture_output=True, text=True, timeout=600)
    built = sorted(wheels.glob("tureen-*.whl"))
    if proc.returncode != 0 or not built:
        raise ConfigError(
            f"building tureen's wheel from {source} failed ({proc.stderr.strip()[-500:]}); "
            "pass --tureen-requirement with an installable requirement instead (a published "
            "version, a wheel URL or a git URL)."
        )
    return built[-1]
