"""The models being served: names, versions, loading and unloading.

Models come from code (``register``) or from a repository directory laid out as
``ROOT/<name>/<version>/<files>`` (TF-Serving / Triton layout), plus directories the operator
names explicitly (``pinned``: ``serve-model --model_dir``). The default version of a model is
its highest one.

A model name that reaches the file system is 1–128 characters of ``A-Z a-z 0-9 _ . -``
starting with a letter or digit (``MODEL_NAME``), so it is one path component and never
``.`` or ``..``; its directory must resolve (symlinks followed) inside the repository root.
Errors name models relative to the repository and never show where the repository is.
``load(name)`` rescans a model's directory and applies the version
policy: new versions are loaded off the event loop and swapped in atomically, so requests in
flight finish on the version they started with; dropped versions are unloaded only after
their last in-flight request ends.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tureen.errors import InvalidRequestError, NotFoundError, NotReadyError, suggest
from tureen.serving.model import Model, ServesVersions
from tureen.serving.runtimes import apply_declared, model_from_dir, read_settings
from tureen.serving.versions import VersionPolicy, version_key

log = logging.getLogger(__name__)

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")


def check_model_name(name: str) -> str:
    """``name`` if it is a valid repository model name, else InvalidRequestError."""
    if not MODEL_NAME.fullmatch(name):
        raise InvalidRequestError(
            "the model name is not valid: use 1-128 letters, digits, '_', '.' or '-', starting "
            "with a letter or digit (no '/', no '..').")
    return name


@dataclass
class Served:
    """One loaded model version plus its in-flight request count."""

    model: Model
    inflight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Entry:
    versions: dict[str, Served] = field(default_factory=dict)
    default: str | None = None
    state: str = "READY"
    reason: str = ""

    def refresh_default(self) -> None:
        ready = [v for v, s in self.versions.items() if s.model.ready]
        self.default = max(ready or self.versions, key=version_key) if self.versions else None


class ModelRepository:
    def __init__(
        self,
        root: str | Path | None = None,
        policy: VersionPolicy | None = None,
        run_blocking: Callable[..., Any] | None = None,
        on_change: Callable[[Model, bool], None] | None = None,
        defaults: dict[str, Any] | None = None,
        pinned: Mapping[str, Path] | None = None,
    ) -> None:
        """``defaults``: model-settings.json values for models whose files do not set them.
        ``pinned``: model name → a directory of version subdirectories outside the root,
        chosen by the operator."""
        self.root = Path(root) if root else None
        self.pinned = {check_model_name(n): Path(d) for n, d in (pinned or {}).items()}
        self.defaults = dict(defaults or {})
        self.policy = policy or VersionPolicy()
        self._entries: dict[str, _Entry] = {}
        self._run_blocking = run_blocking
        self._on_change = on_change
        self._locks: dict[str, asyncio.Lock] = {}
        self._background: set[asyncio.Task[None]] = set()

    # lookup (hot path)

    def get(self, name: str, version: str | None = None) -> Served:
        entry = self._entries.get(name)
        if entry is not None and not entry.versions and entry.state == "LOADING":
            raise NotReadyError(f"model {name!r} is still loading; retry shortly.")
        if entry is not None and not entry.versions and entry.reason == "unloaded":
            raise NotFoundError(
                f"Request for unknown model: {name!r} was unloaded; load it again with POST "
                f"/v2/repository/models/{name}/load. Served models: "
                f"{sorted(self.names()) or 'none'}."
            )
        if entry is None or not entry.versions:
            # clients (Triton's among them) look for the words "Request for unknown model"
            others = [n for n in self.names() if n != name]
            raise NotFoundError(
                f"Request for unknown model: {name!r} is not served.{suggest(name, others)} "
                f"Served models: {sorted(self.names()) or 'none'}."
            )
        v = version or entry.default
        served = entry.versions.get(v) if v else None
        if served is None and version is not None and len(entry.versions) == 1:
            only = next(iter(entry.versions.values()))
            if isinstance(only.model, ServesVersions) and version in only.model.served_versions():
                served = only  # a deployment: it routes the request to that version itself
        if served is None:
            versions = sorted(entry.versions, key=version_key)
            what = (f"failed to get model version from specified version string {version!r}"
                    if version and not version.isdigit() else f"Request for unknown model: "
                    f"{name!r} has no version {version!r}")
            raise NotFoundError(
                f"{what}; model {name!r} has no version {version!r}, served versions: "
                f"{versions}."
            )
        if not served.model.ready:
            raise NotReadyError(f"model {name!r} version {v} is not ready yet; retry shortly.")
        return served

    def names(self) -> list[str]:
        return [n for n, e in self._entries.items() if e.versions]

    def versions(self, name: str) -> list[str]:
        entry = self._entries.get(name)
        return sorted(entry.versions, key=version_key) if entry else []

    def all_ready(self) -> bool:
        return all(
            e.state != "LOADING" and all(s.model.ready for s in e.versions.values())
            for e in self._entries.values()
        )

    def announce(self) -> None:
        """Mark every model on disk as loading (its requests get 503) before ``load_all``."""
        for name in self._disk_names():
            self._entries.setdefault(name, _Entry(state="LOADING"))

    def models(self) -> list[Model]:
        return [s.model for e in self._entries.values() for s in e.versions.values()]

    def index(self) -> list[dict[str, str]]:
        """Every model known (loaded or on disk), for the repository extension."""
        out: list[dict[str, str]] = []
        names = set(self._entries) | set(self._disk_names())
        for name in sorted(names):
            entry = self._entries.get(name)
            if entry is None or not entry.versions:
                reason = entry.reason if entry else ""
                state = "LOADING" if entry is not None and entry.state == "LOADING" else \
                    "UNAVAILABLE"
                out.append({"name": name, "version": "", "state": state,
                            "reason": reason or ("" if state == "LOADING" else "unloaded")})
                continue
            for v in sorted(entry.versions, key=version_key):
                ready = entry.versions[v].model.ready
                out.append({"name": name, "version": v,
                            "state": "READY" if ready else "LOADING", "reason": ""})
        return out

    # changes

    def register(self, model: Model) -> None:
        """Serve a model built in code (``load`` must already have run or run later)."""
        entry = self._entries.setdefault(model.name, _Entry())
        old = entry.versions.get(model.version)
        entry.versions[model.version] = Served(model)
        entry.refresh_default()
        if self._on_change:
            self._on_change(model, True)
        if old is not None and old.model is not model:
            try:
                self._retire_later(old)
            except RuntimeError:  # no event loop yet: nothing can be in flight
                old.model.unload()

    def _disk_names(self) -> list[str]:
        names = list(self.pinned)
        if self.root is None or not self.root.is_dir():
            return names
        real_root = self.root.resolve()
        for p in self.root.iterdir():
            if p.name.startswith(".") or not p.is_dir() or p.name in self.pinned:
                continue
            if not MODEL_NAME.fullmatch(p.name):
                log.warning("skipping %r in the model repository: not a valid model name",
                            p.name)
            elif not p.resolve().is_relative_to(real_root):
                log.warning("skipping %r in the model repository: it links outside of it",
                            p.name)
            else:
                names.append(p.name)
        return names

    def disk_versions(self, name: str) -> list[str]:
        d = self._model_dir(name)
        return [p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")]

    def _model_dir(self, name: str) -> Path:
        """The directory of ``name``'s versions: pinned, or inside the root once symlinks
        are resolved. Raises without saying where anything is on disk."""
        check_model_name(name)
        pinned = self.pinned.get(name)
        if pinned is not None:
            return pinned
        if self.root is None:
            raise InvalidRequestError(
                "this server has no model repository directory; start it with "
                "--model_repository DIR to load models by name."
            )
        real: Path | None
        try:
            real = (self.root / name).resolve(strict=True)
            if not (real.is_dir() and real.is_relative_to(self.root.resolve(strict=True))):
                real = None
        except (OSError, RuntimeError):
            real = None
        if real is None:
            raise NotFoundError(
                f"model {name!r} is not in the model repository."
                f"{suggest(name, self._disk_names())} Add <repository>/{name}/<version>/ with "
                "the model files, then load it."
            )
        return real

    async def load_all(self) -> None:
        for name in sorted(self._disk_names()):
            await self.load(name)

    async def load(self, name: str) -> list[str]:
        """(Re)load ``name`` from disk by the version policy; returns the served versions."""
        check_model_name(name)
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            mdir = self._model_dir(name)
            settings_root = read_settings(mdir)
            policy = self.policy
            if "version_policy" in settings_root:
                policy = VersionPolicy.parse(str(settings_root["version_policy"]))
            wanted = policy.select(self.disk_versions(name))
            if not wanted:
                raise NotFoundError(
                    f"model {name!r} has no version directory matching policy {policy}; add "
                    f"<repository>/{name}/1/ with the model files."
                )
            entry = self._entries.setdefault(name, _Entry())
            for v in wanted:
                if v in entry.versions:
                    continue
                vdir = mdir / v
                try:
                    settings = {**self.defaults, **read_settings(mdir, vdir)}
                    model = model_from_dir(name, v, vdir, settings)
                    await load_model(model, self._blocking)
                except Exception as exc:
                    why = _without_paths(str(exc), (mdir, f"<repository>/{name}"),
                                         (self.root, "<repository>"))
                    entry.reason = f"version {v}: {why}"
                    entry.state = "UNAVAILABLE"
                    log.error("loading model %s version %s from %s failed: %s", name, v, vdir,
                              exc)
                    raise InvalidRequestError(
                        f"model {name!r} version {v} failed to load: {why}. Fix the files in "
                        f"<repository>/{name}/{v}/ and load again (the server log has the "
                        "details)."
                    ) from exc
                entry.versions[v] = Served(model)
                entry.refresh_default()
                if self._on_change:
                    self._on_change(model, True)
                log.info("loaded model %s version %s (%s)", name, v, type(model).__name__)
            for v in [v for v in entry.versions if v not in wanted]:
                self._retire_later(entry.versions.pop(v))
            entry.refresh_default()
            entry.reason = ""
            entry.state = "READY"
            return sorted(entry.versions, key=version_key)

    async def unload(self, name: str) -> None:
        entry = self._entries.get(check_model_name(name))
        if entry is None or not entry.versions:
            raise NotFoundError(f"model {name!r} is not loaded; nothing to unload.")
        retired = list(entry.versions.values())
        entry.versions.clear()
        entry.default = None
        entry.reason = "unloaded"
        entry.state = "UNAVAILABLE"
        await asyncio.gather(*(self._retire(s) for s in retired))

    def _retire_later(self, served: Served) -> None:
        task = asyncio.get_running_loop().create_task(self._retire(served))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _retire(self, served: Served) -> None:
        while served.inflight:
            served.idle.clear()
            await served.idle.wait()
        if self._on_change:
            self._on_change(served.model, False)
        served.model.ready = False
        await self._blocking(served.model.unload)
        log.info("unloaded model %s version %s", served.model.name, served.model.version)
        del served
        gc.collect()

    async def _blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._run_blocking is not None:
            return await self._run_blocking(fn, *args)
        return await asyncio.to_thread(fn, *args)


def _without_paths(message: str, *dirs: tuple[Path | None, str]) -> str:
    """``message`` with the server's directories replaced by what a client may see, so it
    learns nothing about the file system from a failed load."""
    for d, shown in dirs:
        if d is None:
            continue
        for form in sorted({str(d.resolve()), str(d)}, key=len, reverse=True):
            message = message.replace(form, shown)
    return message


async def load_model(
    model: Model, run_blocking: Callable[..., Awaitable[Any]] | None = None
) -> None:
    """Run ``model.load()`` — awaited when async, in a thread when sync."""
    if inspect.iscoroutinefunction(model.load):
        await model.load()
    elif run_blocking is not None:
        await run_blocking(model.load)
    else:
        await asyncio.to_thread(model.load)
    apply_declared(model)
