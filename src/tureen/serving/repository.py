"""The models being served: names, versions, loading and unloading.

Models come from code (``register``) or from a repository directory laid out as
``ROOT/<name>/<version>/<files>`` (TF-Serving / Triton layout), plus directories the operator
names explicitly (``pinned``: ``serve-model --model_dir``). The default version of a model is
its highest one.

A model name that reaches the file system is 1–128 characters of ``A-Z a-z 0-9 _ . -``
starting with a letter or digit (``MODEL_NAME``), so it is one path component and never
``.`` or ``..``; its directory must resolve (symlinks followed) inside the repository root.
Errors name models relative to the repository and never show where the repository is.
``load(name)`` rescans a model's directory and applies the version policy: new versions are
loaded off the event loop and swapped in atomically, so requests in flight finish on the
version they started with; dropped versions are unloaded only after
their last in-flight request ends. ``load(name, override)`` reloads every version with
model-settings values from a Triton config override (see ``model_config.parse_override``).

``load_all`` loads the repository's models concurrently, each within ``load_timeout``
seconds: a model that fails or hangs is reported in ``index()`` with the reason while the
others serve. Sync ``load()``s run in daemon threads, so one that never returns cannot keep
the process alive after shutdown.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import inspect
import logging
import re
import threading
from collections.abc import Callable, Mapping
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
    #: the version policy and settings override of the last load
    policy: VersionPolicy | None = None
    override: dict[str, Any] | None = None

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
        load_timeout: float = 600.0,
        load_concurrency: int = 4,
    ) -> None:
        """``defaults``: model-settings.json values for models whose files do not set them.
        ``pinned``: model name → a directory of version subdirectories outside the root,
        chosen by the operator.
        ``load_timeout``: seconds one model may take to load before it is reported failed.
        ``load_concurrency``: models loaded at the same time by ``load_all``."""
        self.root = Path(root) if root else None
        self.pinned = {check_model_name(n): Path(d) for n, d in (pinned or {}).items()}
        self.load_timeout = load_timeout
        self.load_concurrency = max(1, load_concurrency)
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

    def policy_of(self, name: str) -> VersionPolicy:
        entry = self._entries.get(name)
        return entry.policy if entry is not None and entry.policy is not None else self.policy

    async def load_all(self) -> dict[str, str]:
        """Load every model on disk concurrently; returns {name: reason} of those that failed
        (they stay in the index as UNAVAILABLE with that reason)."""
        gate = asyncio.Semaphore(self.load_concurrency)
        failed: dict[str, str] = {}

        async def one(name: str) -> None:
            async with gate:
                try:
                    await self.load(name)
                except Exception as exc:
                    failed[name] = str(exc)

        await asyncio.gather(*(one(n) for n in sorted(self._disk_names())))
        return failed

    async def load(self, name: str, override: dict[str, Any] | None = None) -> list[str]:
        """(Re)load ``name`` from disk by the version policy; returns the served versions.
        ``override``: model-settings values replacing the files' for this load (every
        version is reloaded with them); a later load without one goes back to the files."""
        check_model_name(name)
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            mdir = self._model_dir(name)
            settings_root = {**read_settings(mdir), **(override or {})}
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
            reload = override is not None or entry.override is not None
            entry.state = "LOADING"
            fresh: dict[str, Served] = {}
            try:
                for v in wanted:
                    if v in entry.versions and not reload:
                        continue
                    fresh[v] = Served(await self._load_version(name, v, mdir / v, override))
            except Exception as exc:
                why = _without_paths(str(exc), (mdir, f"<repository>/{name}"),
                                     (self.root, "<repository>"))
                entry.reason = f"version {v}: {why}"
                entry.state = "UNAVAILABLE" if not entry.versions else "READY"
                log.error("loading model %s version %s from %s failed: %s", name, v, mdir / v,
                          exc)
                for served in fresh.values():
                    await self._blocking(served.model.unload)
                if isinstance(exc, NotReadyError):
                    raise NotReadyError(f"failed to load model {name!r} version {v}: {why}") \
                        from exc
                raise InvalidRequestError(
                    f"failed to load model {name!r} version {v}: {why}. Fix the files in "
                    f"<repository>/{name}/{v}/ and load again (the server log has the details)."
                ) from exc
            for v, served in fresh.items():
                old = entry.versions.get(v)
                entry.versions[v] = served
                entry.refresh_default()
                if self._on_change:
                    self._on_change(served.model, True)
                if old is not None:
                    self._retire_later(old)
                log.info("loaded model %s version %s (%s)", name, v,
                         type(served.model).__name__)
            for v in [v for v in entry.versions if v not in wanted]:
                self._retire_later(entry.versions.pop(v))
            entry.refresh_default()
            entry.reason = ""
            entry.state = "READY"
            entry.policy = policy
            entry.override = override
            return sorted(entry.versions, key=version_key)

    async def _load_version(self, name: str, version: str, vdir: Path,
                            override: dict[str, Any] | None) -> Model:
        settings = {**self.defaults, **read_settings(vdir.parent, vdir), **(override or {})}
        model = model_from_dir(name, version, vdir, settings)
        try:
            await asyncio.wait_for(load_model(model), self.load_timeout)
        except TimeoutError:
            raise NotReadyError(
                f"loading did not finish within {self.load_timeout:g} s (load_timeout); "
                "make load() faster or raise the timeout") from None
        return model

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


async def load_model(model: Model, run_blocking: Any = None) -> None:
    """Run ``model.load()`` — awaited when async, in a daemon thread when sync (a load that
    never returns must not keep the process from exiting)."""
    if inspect.iscoroutinefunction(model.load):
        await model.load()
    else:
        await in_daemon_thread(model.load, f"tureen-load-{model.name}",
                               abandoned=model.unload)
    apply_declared(model)


def in_daemon_thread(
    fn: Callable[[], Any], name: str, abandoned: Callable[[], Any] | None = None
) -> asyncio.Future[Any]:
    """``fn()`` in a new daemon thread (with the caller's context), as an awaitable. If the
    caller stopped waiting (timeout, shutdown) before ``fn`` returned, ``abandoned()`` runs in
    that thread afterwards (e.g. to unload what a late ``load()`` acquired)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Any] = loop.create_future()
    ctx = contextvars.copy_context()

    def settle(result: Any, exc: BaseException | None) -> None:
        if fut.done():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)

    def run() -> None:
        try:
            result, exc = ctx.run(fn), None
        except BaseException as e:
            result, exc = None, e
        if fut.done() and exc is None and abandoned is not None:
            try:
                abandoned()
            except Exception:
                log.exception("cleaning up after an abandoned %s failed", name)
            return
        try:
            loop.call_soon_threadsafe(settle, result, exc)
        except RuntimeError:  # the loop is gone (shutting down): nobody is waiting
            pass

    threading.Thread(target=run, name=name, daemon=True).start()
    return fut
