"""``ModelStore``: versioned model files on any fsspec filesystem (local by default).

Layout (directly servable by ``tureen.serving.ModelRepository``)::

    ROOT/NAME/VERSION/<model files>          e.g. model.joblib, model.onnx, model.pt
    ROOT/NAME/VERSION/tureen-model.json      metadata, written last
    ROOT/NAME/.versions/VERSION              reservation markers (never reused)

Registering never exposes a half-copied version:

1. the next version number is reserved by creating ``.versions/N`` exclusively (``open(..,
   "xb")``): two concurrent registers never get the same number, and numbers of deleted
   versions are never handed out again;
2. on a local filesystem the files are copied into a hidden ``.staging-<uuid>`` directory,
   the metadata is written there last (temp name + rename), and the directory is renamed to
   ``N`` in one step, so a model server scanning ``ROOT/NAME/`` never sees a partial version;
   on object stores (no atomic directory rename) the files go straight to ``N/`` and the
   metadata file is written last;
3. a version is listed only when its ``tureen-model.json`` exists.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import posixpath
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from tureen.errors import InvalidRequestError, NotFoundError, suggest
from tureen.models.version import (
    METADATA_FILE,
    ModelVersion,
    TensorSig,
    check_name,
    normalize_framework,
    parse_metrics,
)

log = logging.getLogger(__name__)

RESERVATIONS = ".versions"
#: metrics where lower is better, for ``best`` when no direction is given
LOWER_IS_BETTER = ("loss", "logloss", "error", "rmse", "mse", "mae", "mape", "latency")


class ModelStore:
    def __init__(self, url: str | Path, storage_options: Mapping[str, Any] | None = None) -> None:
        self.url = str(url)
        fs, root = fsspec.core.url_to_fs(self.url, **dict(storage_options or {}))
        self.fs: Any = fs
        self.root: str = root.rstrip("/") or "/"
        self.is_local = isinstance(fs, LocalFileSystem)

    def describe(self) -> str:
        return self.url

    def _p(self, *parts: str | int) -> str:
        return posixpath.join(self.root, *(str(p) for p in parts))

    def uri(self, name: str, version: int) -> str:
        path = self._p(name, version)
        if self.is_local:
            return path
        return str(self.fs.unstrip_protocol(path))

    def local_path(self, name: str, version: int) -> Path | None:
        """The version directory on this machine (None for remote stores)."""
        return Path(self._p(name, version)) if self.is_local else None

    # ---- reading ----------------------------------------------------------------------------
    def names(self) -> list[str]:
        if not self.fs.exists(self.root):
            return []
        out = []
        for p in self.fs.ls(self.root, detail=False):
            name = posixpath.basename(str(p).rstrip("/"))
            if not name.startswith(".") and self._versions(name):
                out.append(name)
        return sorted(out)

    def _versions(self, name: str) -> list[int]:
        found = self.fs.glob(self._p(name, "*", METADATA_FILE))
        out = []
        for p in found:
            v = posixpath.basename(posixpath.dirname(str(p)))
            if v.isdigit():
                out.append(int(v))
        return sorted(out)

    def version_numbers(self, name: str) -> builtins.list[int]:
        """The listed versions of ``name``, ascending, without reading metadata ([] when
        none). Locally this is one directory listing: a version directory appears complete
        (renamed in one step), so its name is enough; elsewhere the metadata is globbed."""
        check_name(name)
        if not self.is_local:
            return self._versions(name)
        try:
            with os.scandir(self._p(name)) as entries:
                return sorted(int(e.name) for e in entries if e.name.isdigit() and e.is_dir())
        except (FileNotFoundError, NotADirectoryError):
            return []

    def read(self, name: str, version: int) -> ModelVersion | None:
        """One version's metadata without listing the others; None when it is not there."""
        check_name(name)
        try:
            return self._read(name, int(version))
        except FileNotFoundError:
            return None

    def versions(self, name: str) -> list[ModelVersion]:
        return [self._read(name, v) for v in self._versions(name)]

    def list(self, name: str | None = None) -> builtins.list[ModelVersion]:
        if name is not None:
            self._require(name)
            return self.versions(name)
        return [mv for n in self.names() for mv in self.versions(n)]

    def get(self, name: str, version: int | str | None = None) -> ModelVersion:
        """One version (``None`` or ``"latest"``: the highest)."""
        versions = self._require(name)
        if version is None or version == "latest":
            return self._read(name, versions[-1])
        v = _as_version(version)
        if v not in versions:
            raise NotFoundError(
                f"model {name!r} has no version {v}; registered versions: {versions}. "
                f"Run `tureen models list {name}`."
            )
        return self._read(name, v)

    def best(self, name: str, metric: str, direction: str | None = None) -> ModelVersion:
        """The version with the best value of ``metric`` (max, or min for loss-like metrics)."""
        direction = direction or (
            "min" if any(t in metric.lower() for t in LOWER_IS_BETTER) else "max"
        )
        if direction not in ("max", "min"):
            raise InvalidRequestError(f"direction must be 'max' or 'min', not {direction!r}.")
        scored = [mv for mv in self.list(name) if metric in mv.metrics]
        if not scored:
            known = sorted({m for mv in self.list(name) for m in mv.metrics})
            raise NotFoundError(
                f"no version of model {name!r} has metric {metric!r}.{suggest(metric, known)} "
                f"Metrics recorded: {known or 'none'}; register with --metrics '{{...}}'."
            )
        sign = 1.0 if direction == "max" else -1.0
        # ties go to the newest version
        return max(scored, key=lambda mv: (sign * mv.metrics[metric], mv.version))

    def _require(self, name: str) -> builtins.list[int]:
        versions = self._versions(name)
        if not versions:
            names = self.names()
            raise NotFoundError(
                f"no model named {name!r} in {self.url}.{suggest(name, names)} "
                f"Registered models: {names or 'none'}; register one with "
                "`tureen models register NAME PATH --framework ...`."
            )
        return versions

    def _read(self, name: str, version: int) -> ModelVersion:
        with self.fs.open(self._p(name, version, METADATA_FILE), "rb") as f:
            data = json.loads(f.read())
        return ModelVersion.from_dict(data, uri=self.uri(name, version))

    # ---- writing ----------------------------------------------------------------------------
    def register(
        self,
        name: str,
        path: str | Path,
        framework: str,
        *,
        metrics: Mapping[str, Any] | None = None,
        description: str = "",
        inputs: Sequence[TensorSig] = (),
        outputs: Sequence[TensorSig] = (),
        feature_service: str | None = None,
        registry_version: int | None = None,
        project: str | None = None,
        training_set: str | None = None,
        pipeline_run: str | None = None,
        training_snapshot: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> ModelVersion:
        """Copy the model at ``path`` (a file or a directory) in as the next version.
        ``settings`` are merged into the version's ``model-settings.json`` (how the model
        server runs it, e.g. ``{"method": "predict_proba"}``)."""
        check_name(name)
        fw = normalize_framework(framework)
        src = Path(path)
        if not src.exists():
            raise NotFoundError(f"model path {src} does not exist; pass the model file or folder.")
        files = _source_files(src)
        check_files(fw, files, src)
        if settings and SETTINGS_NAME not in files:
            files.append(SETTINGS_NAME)
        version = self._reserve(name)
        mv = ModelVersion(
            name=name, version=version, framework=fw, created_at=datetime.now(UTC),
            uri=self.uri(name, version), description=description,
            metrics=parse_metrics(metrics), inputs=tuple(inputs), outputs=tuple(outputs),
            feature_service=feature_service, registry_version=registry_version,
            project=project, training_set=training_set, files=tuple(sorted(files)),
            pipeline_run=pipeline_run, training_snapshot=training_snapshot,
        )
        final = self._p(name, version)
        target = self._p(name, f".staging-{uuid.uuid4().hex}") if self.is_local else final
        try:
            self._copy_in(src, target)
            if settings:
                merged = {**_settings_of(src), **settings}
                self._write_json(posixpath.join(target, SETTINGS_NAME), merged)
            self._write_json(posixpath.join(target, METADATA_FILE), mv.to_dict())
            if target != final:
                os.rename(target, final)  # atomic: the version appears complete or not at all
        except BaseException:
            if self.fs.exists(target):
                self.fs.rm(target, recursive=True)
            raise
        log.info("registered model %s version %s (%s) at %s", name, version, fw, mv.uri)
        return mv

    def _reserve(self, name: str) -> int:
        marks = self._p(name, RESERVATIONS)
        self.fs.makedirs(marks, exist_ok=True)
        taken = [int(posixpath.basename(str(p))) for p in self.fs.ls(marks, detail=False)
                 if posixpath.basename(str(p)).isdigit()]
        dirs = [int(posixpath.basename(str(p).rstrip("/")))
                for p in self.fs.ls(self._p(name), detail=False)
                if posixpath.basename(str(p).rstrip("/")).isdigit()]
        candidate = max([0, *taken, *dirs]) + 1
        for _ in range(1000):
            try:
                with self.fs.open(posixpath.join(marks, str(candidate)), "xb") as f:
                    f.write(datetime.now(UTC).isoformat().encode())
                return candidate
            except FileExistsError:
                candidate += 1
        raise InvalidRequestError(f"could not reserve a version number for model {name!r}.")

    def _copy_in(self, src: Path, target: str) -> None:
        self.fs.makedirs(target, exist_ok=True)
        if src.is_file():
            self.fs.put_file(str(src), posixpath.join(target, src.name))
            return
        for rel in _source_files(src):
            dest = posixpath.join(target, rel)
            self.fs.makedirs(posixpath.dirname(dest), exist_ok=True)
            self.fs.put_file(str(src / rel), dest)

    def _write_json(self, path: str, data: Mapping[str, Any]) -> None:
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        with self.fs.open(tmp, "wb") as f:
            f.write(json.dumps(data, indent=2).encode())
        self.fs.mv(tmp, path)

    def update_metrics(self, name: str, version: int, metrics: Mapping[str, Any]) -> ModelVersion:
        mv = self.get(name, version)
        merged = {**mv.metrics, **parse_metrics(metrics)}
        new = ModelVersion.from_dict({**mv.to_dict(), "metrics": merged}, uri=mv.uri)
        self._write_json(self._p(name, version, METADATA_FILE), new.to_dict())
        return new

    def delete(self, name: str, version: int | str | None = None) -> builtins.list[int]:
        """Delete one version, or every version when ``version`` is None; returns them."""
        versions = self._require(name)
        targets = versions if version is None else [self.get(name, version).version]
        for v in targets:
            # the metadata goes first: from then on the version is no longer listed
            self.fs.rm(self._p(name, v, METADATA_FILE))
            self.fs.rm(self._p(name, v), recursive=True)
        log.info("deleted model %s versions %s", name, targets)
        return targets

    def fetch(self, name: str, version: int, cache_dir: Path) -> Path:
        """A local directory holding the version's files (downloaded once for remote stores)."""
        local = self.local_path(name, version)
        if local is not None:
            return local
        dest = cache_dir / name / str(version)
        if not (dest / METADATA_FILE).is_file():
            tmp = cache_dir / name / f".download-{uuid.uuid4().hex}"
            self.fs.get(self._p(name, version) + "/", str(tmp), recursive=True)
            tmp.rename(dest)
        return dest


def _as_version(version: int | str) -> int:
    if isinstance(version, int):
        return version
    if not str(version).isdigit():
        raise InvalidRequestError(
            f"model version {version!r} is not a number; pass an integer or 'latest'."
        )
    return int(version)


SETTINGS_NAME = "model-settings.json"


def _settings_of(src: Path) -> dict[str, Any]:
    p = src / SETTINGS_NAME if src.is_dir() else src.with_name(SETTINGS_NAME)
    if src.is_dir() and p.is_file():
        data = json.loads(p.read_text())
        return dict(data) if isinstance(data, dict) else {}
    return {}


def _source_files(src: Path) -> list[str]:
    if src.is_file():
        return [src.name]
    return sorted(
        str(p.relative_to(src)) for p in src.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.name != METADATA_FILE
    )


_CHECKS: dict[str, Callable[[list[str]], bool]] = {
    "sklearn": lambda fs: any(f.endswith((".joblib", ".pkl", ".pickle")) for f in fs),
    "xgboost": lambda fs: any(f.endswith((".ubj", ".bst", ".json")) for f in fs),
    "lightgbm": lambda fs: any(f.endswith(".txt") for f in fs),
    "onnx": lambda fs: any(f.endswith(".onnx") for f in fs),
    "custom": lambda fs: "model.py" in fs,
    "torchscript": lambda fs: any(f.endswith((".pt", ".pth")) for f in fs),
    "tensorflow": lambda fs: "saved_model.pb" in fs,
}


def check_files(framework: str, files: list[str], src: Path) -> None:
    from tureen.models.version import FRAMEWORKS

    if not _CHECKS[framework](files):
        raise InvalidRequestError(
            f"{src} does not look like a {framework} model: expected {FRAMEWORKS[framework]}, "
            f"found {files[:10] or 'no files'}. Pass the right --framework or path."
        )
