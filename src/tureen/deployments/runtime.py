"""``DeploymentModel``: one started deployment, served as one model named after it.

Per request it picks a version (the main one, or the canary for ``percent`` of requests,
split deterministically so the share is exact over any window), runs that version's chain —
the feature-enriched transformer when the deployment has a feature service (online features
fetched in process, then the model), else the model alone — and hands an
``InferenceRecord`` (the features exactly as fed to the model, the predictions, the entity
keys) to the deployment's ``InferenceLogger``. With batching, the data plane merges
concurrent requests into one call: it is logged as one record (all rows, the request id of
the request that opened the batch).

Changing the served version never fails a request: the new version is loaded off the event
loop while the old one keeps serving; then one reference swap routes new requests to it, and
the old version is unloaded only after its last in-flight request has finished. A background
task re-reads the deployment spec from the registry every ``refresh_seconds`` (so
``tureen deploy update`` reaches a running server) and, with ``idle_unload_seconds`` set,
unloads the model after that long without requests; the next request loads it again (a
"cold start", logged with its duration).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import gc
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from multiprocessing import util as mp_util
from pathlib import Path
from typing import Any

from tureen.deployments.engine import Engine, build_engine
from tureen.deployments.spec import DeploymentSpec
from tureen.deployments.status import VersionStats, file_logger, status_path
from tureen.errors import InvalidRequestError, NotReadyError
from tureen.inference_log import InferenceLogger, InferenceRecord, LogMode, sink_from_url
from tureen.models import ModelRegistry
from tureen.serving.context import model_label, new_request_id, request_id
from tureen.serving.inference import InferRequest, InferResponse
from tureen.serving.metrics import Metrics
from tureen.serving.model import Headers, Model
from tureen.store import FeatureStore

log = logging.getLogger(__name__)
_unfreeze_registered = False


def _freeze() -> None:
    """``gc.freeze()``, undone at exit so interpreter shutdown still frees everything."""
    global _unfreeze_registered
    if not _unfreeze_registered:
        atexit.register(gc.unfreeze)
        mp_util.Finalize(None, gc.unfreeze, exitpriority=0)  # forked workers skip atexit
        _unfreeze_registered = True
    gc.freeze()


SpecSource = Callable[[], DeploymentSpec]


class DeploymentModel(Model):
    platform = "tureen-deployment"

    def __init__(
        self,
        spec: DeploymentSpec,
        store: FeatureStore,
        models: ModelRegistry,
        *,
        spec_source: SpecSource | None = None,
        refresh_seconds: float = 1.0,
        cache_dir: Path | None = None,
    ) -> None:
        super().__init__(spec.name, "1")
        self.spec = spec
        self.store = store
        self.models = models
        self.spec_source = spec_source
        self.refresh_seconds = refresh_seconds
        self.cache_dir = cache_dir or store.repo_path / ".tureen" / "model-cache"
        self.logger: InferenceLogger | None = None
        #: loggers replaced or closed: their lost records still count in /metrics
        self._old_loggers: list[InferenceLogger] = []
        self.stats: dict[int, VersionStats] = {}
        self._metrics: Metrics | None = None
        self.cold_starts = 0
        self.swaps = 0
        #: why the last attempt to apply a changed spec failed (None: it did not)
        self.switch_error: str | None = None
        self._engines: dict[int, Engine] | None = None
        self._acc = 0.0
        self._last_request = time.monotonic()
        self._watcher: asyncio.Task[None] | None = None
        self._lock: asyncio.Lock | None = None
        self._last_payload: Any = None
        self.log = log
        if spec.batching is not None:  # the data plane's adaptive batcher merges requests
            self.max_batch_size = spec.batching.max_batch_size
            self.max_latency_ms = spec.batching.max_latency_ms

    # ---- building ---------------------------------------------------------------------------

    def _build_all(self, versions: Sequence[int], spec: DeploymentSpec) -> dict[int, Engine]:
        return {v: build_engine(v, spec, self.store, self.models, self.cache_dir)
                for v in versions}

    def bind_metrics(self, metrics: Metrics) -> None:
        """Per-version request counts and latencies also go to the server's ``/metrics``
        (``tureen_deployment_requests_total``, ``..._request_duration_seconds``), and so do
        the inference log's lost records (``tureen_inference_log_dropped_total``)."""
        self._metrics = metrics
        metrics.add_collector(self._report_lost_records)

    def _report_lost_records(self, metrics: Metrics) -> None:
        loggers = {id(x): x for x in (*self._old_loggers, self.logger) if x is not None}
        lost: collections.Counter[tuple[str, str]] = collections.Counter()
        for logger in loggers.values():
            lost.update(logger.losses())
        for (sink, reason), n in lost.items():
            metrics.set("tureen_inference_log_dropped_total", (self.name, sink, reason), n)

    def load(self) -> bool:
        repo = self.store.repo_path
        self.log = file_logger(repo, self.name, "predictor", "")
        if self.spec.feature_service:
            file_logger(repo, self.name, "transformer", "tureen.transformer")
        t0 = time.perf_counter()
        self._engines = self._build_all(self.spec.versions, self.spec)
        self.log.info("deployment %s: loaded %s versions %s in %.1f ms", self.name,
                      self.spec.model, self.spec.versions, (time.perf_counter() - t0) * 1000)
        self._adopt_signature()
        # Long-lived objects (modules, models, the registry) leave the collector's scans: a
        # full collection otherwise costs hundreds of ms on the serving thread, and loading a
        # new version later is what tends to trigger one (measured: 276 ms -> 3 ms).
        _freeze()
        if self.logger is None:
            self.logger = self._new_logger()
        self.ready = True
        return True

    def _adopt_signature(self) -> None:
        eng = (self._engines or {}).get(self.spec.version)
        if eng is not None:
            src = eng.transformer or eng.model
            self.inputs, self.outputs = list(src.inputs), list(src.outputs)

    def unload(self) -> None:
        engines, self._engines = self._engines, None
        for e in (engines or {}).values():
            e.unload()
        if self.logger is not None:
            self._old_loggers.append(self.logger)  # before it goes: counted once, always
            self.logger.close()
            self.logger = None

    async def aclose(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        await asyncio.to_thread(self.unload)

    # ---- request path -----------------------------------------------------------------------
    def served_versions(self) -> list[str]:
        """The versions requests are routed to now (main and canary), for model metadata."""
        return [str(v) for v in sorted(self.spec.versions)]

    def _route(self, engines: dict[int, Engine], pinned: str | None = None) -> Engine:
        if pinned is not None and pinned.isdigit() and int(pinned) in engines:
            return engines[int(pinned)]  # /v2/models/<name>/versions/<v>/infer
        c = self.spec.canary
        main = engines[self.spec.version]
        if c is None or c.version not in engines:
            return main
        self._acc += c.percent
        if self._acc >= 100.0:
            self._acc -= 100.0
            return engines[c.version]
        return main

    async def predict(self, payload: Any, headers: Headers | None = None) -> Any:
        h = headers or {}
        self._last_request = time.monotonic()
        self._last_payload = payload
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())
        if self.spec.state != "started":
            raise NotReadyError(
                f"deployment {self.name!r} is stopped; run `tureen deploy start {self.name}`."
            )
        engines = self._engines
        if engines is None:
            engines = await self._cold_start()
        pinned = payload.model_version if isinstance(payload, InferRequest) else None
        eng = self._route(engines, pinned)
        model_label.set(f"{self.name}:{eng.version}")  # log lines name the version answering
        eng.inflight += 1
        stats = self.stats.setdefault(eng.version, VersionStats())
        t0 = time.perf_counter()
        outcome = "error"
        try:
            fed, result = await eng.call(payload, h)
            outcome = "ok"
        except InvalidRequestError:
            stats.errors += 1
            outcome = "invalid"
            raise
        except Exception:
            stats.errors += 1
            raise
        finally:
            dt = time.perf_counter() - t0
            stats.requests += 1
            stats.seconds += dt
            stats.latencies.append(dt)
            if self._metrics is not None:
                labels = (self.name, str(eng.version))
                self._metrics.inc("tureen_deployment_requests_total", (*labels, outcome))
                self._metrics.observe("tureen_deployment_request_duration_seconds", labels, dt)
            eng.inflight -= 1
            if eng.retired and eng.inflight == 0:
                asyncio.get_running_loop().create_task(self._unload_engine(eng))
        if self.logger is not None:
            self._log(eng, payload, fed, result)
        if isinstance(payload, InferRequest):  # OIP responses name the version that answered
            result = self._versioned(result, eng.version)
        return result

    def _versioned(self, result: Any, version: int) -> InferResponse:
        if isinstance(result, InferResponse):
            out = result
        else:
            if isinstance(result, dict) and "predictions" in result and len(result) <= 2:
                result = result["predictions"]
            out = InferResponse.of(self.name, result, [o.name for o in self.outputs])
        out.model_version = str(version)
        return out

    def _log(self, eng: Engine, payload: Any, fed: Any, result: Any) -> None:
        rid = request_id.get()
        if rid == "-":  # called outside a transport (in process): a cheap unique id
            rid = new_request_id()
        inputs, names = fed, None
        matrix = getattr(fed, "matrix", None)
        if matrix is not None:
            inputs, names = matrix, getattr(fed, "names", None)
        elif getattr(fed, "columns", None) is not None:
            inputs = dict(fed.columns)
        fn = eng.entity_fn
        assert self.logger is not None
        self.logger.log(InferenceRecord(
            request_id=rid, deployment=self.name, model_name=self.spec.model,
            model_version=str(eng.version), inputs=inputs, outputs=result,
            input_names=names,
            entities_fn=(lambda: fn(payload)) if fn is not None else None,
            entity_keys=eng.entity_keys, input_types=eng.feature_types,
        ))

    # ---- changes ---------------------------------------------------------------------------
    def _lock_(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def _cold_start(self) -> dict[int, Engine]:
        async with self._lock_():
            if self._engines is not None:
                return self._engines
            t0 = time.perf_counter()
            engines = await asyncio.to_thread(self._build_all, self.spec.versions, self.spec)
            self._engines = engines
            _freeze()
            self.cold_starts += 1
            self.log.warning("deployment %s: cold start, loaded %s versions %s in %.1f ms",
                        self.name, self.spec.model, sorted(engines),
                        (time.perf_counter() - t0) * 1000)
            return engines

    async def apply(self, spec: DeploymentSpec) -> None:
        """Serve ``spec`` from now on: load new versions first, then swap, then retire."""
        async with self._lock_():
            old = self._engines
            if old is None:  # unloaded (idle): the next request loads what spec says
                self.spec = spec
                return
            if spec.model != self.spec.model:
                raise NotReadyError("a deployment cannot change its model name; recreate it.")
            wanted = spec.versions
            rebuild = (spec.feature_service, spec.transformer) != (
                self.spec.feature_service, self.spec.transformer)
            keep = {} if rebuild else {v: old[v] for v in wanted if v in old}
            missing = [v for v in wanted if v not in keep]
            loaded = await asyncio.to_thread(self._build_all, missing, spec) if missing else {}
            await self._warm_up(loaded.values())
            new = keep | loaded
            logger_change = (spec.logging, spec.log_sink) != (self.spec.logging,
                                                              self.spec.log_sink)
            self.spec, self._engines = spec, new  # the swap: one assignment on the loop
            if logger_change:
                await self._replace_logger()
            _freeze()
            self._acc = 0.0
            self._adopt_signature()
            if missing or set(old) - set(new):
                self.swaps += 1
                self.log.warning("deployment %s now serves %s version %s%s", self.name, spec.model,
                            spec.version, f" (canary {spec.canary.version} at "
                            f"{spec.canary.percent:g}%)" if spec.canary else "")
            for v, eng in old.items():
                if new.get(v) is not eng:
                    eng.retired = True
                    if eng.inflight == 0:
                        await self._unload_engine(eng)

    def _new_logger(self) -> InferenceLogger | None:
        if self.spec.logging is LogMode.NONE:
            return None
        sink = sink_from_url(self.spec.log_sink, self.store.repo_path)
        logger = InferenceLogger(sink, self.spec.logging)
        # forked server workers skip atexit; multiprocessing finalizers run in both
        mp_util.Finalize(logger, logger.close, exitpriority=10)
        return logger

    async def _replace_logger(self) -> None:
        """Logging settings changed: new records go to a new logger, the old one drains."""
        new = await asyncio.to_thread(self._new_logger)
        old, self.logger = self.logger, new
        if old is not None:
            self._old_loggers.append(old)
            await old.aclose()
        self.log.warning("deployment %s: logging %s to %s", self.name,
                         self.spec.logging.value, self.spec.log_sink or "parquet")

    async def _warm_up(self, engines: Any) -> None:
        """Run the last served request through new versions before they take traffic, so
        first-call costs (connections, caches, calibration) are not paid by clients."""
        payload = self._last_payload
        if payload is None:
            return
        for eng in engines:
            for _ in range(3):
                try:
                    await eng.call(payload, {})
                except Exception as exc:  # a request the new version rejects: still swap
                    self.log.info("deployment %s: warm-up of version %s: %s", self.name,
                                  eng.version, exc)
                    break

    async def _unload_engine(self, eng: Engine) -> None:
        # no gc.collect() here: it stops every thread, and this runs while serving; dropping
        # the references frees the model (idle unload, with no traffic, does collect)
        await asyncio.to_thread(eng.unload)
        self.log.info("deployment %s: unloaded version %s", self.name, eng.version)

    async def idle_unload(self) -> bool:
        """Unload every version now if nothing is in flight (the idle timer calls this)."""
        async with self._lock_():
            engines = self._engines
            if engines is None or any(e.inflight for e in engines.values()):
                return False
            self._engines = None
            for e in engines.values():
                e.retired = True
            for e in engines.values():
                await asyncio.to_thread(e.unload)
            engines.clear()
            # the models may be in the frozen generation (see load): scan everything once
            gc.unfreeze()
            gc.collect()
            _freeze()
            self.log.warning("deployment %s: unloaded after %.0f s idle", self.name,
                        self.spec.idle_unload_seconds or 0)
            return True

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval())
            try:
                await asyncio.to_thread(self._write_status)
                if self.spec_source is not None:
                    fresh = await asyncio.to_thread(self.spec_source)
                    if _differs(fresh, self.spec):
                        await self.apply(fresh)
                idle = self.spec.idle_unload_seconds
                if (idle and self._engines is not None
                        and time.monotonic() - self._last_request >= idle):
                    await self.idle_unload()
                self.switch_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep serving what we have; try again later
                if str(exc) != self.switch_error:  # once per distinct failure, not every second
                    self.log.error("deployment %s: cannot switch to the new spec, still serving "
                                   "%s version %s: %s", self.name, self.spec.model,
                                   self.spec.version, exc)
                self.switch_error = str(exc)

    def _interval(self) -> float:
        idle = self.spec.idle_unload_seconds
        return min(self.refresh_seconds, idle / 4) if idle else self.refresh_seconds

    def _write_status(self) -> None:
        """Publish ``status()`` for ``tureen deploy status`` (one file per worker process)."""
        path = status_path(self.store.repo_path, self.name, os.getpid())
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**self.status(), "pid": os.getpid(), "at": time.time()}))
        os.replace(tmp, path)

    def status(self) -> dict[str, Any]:
        engines = self._engines
        return {
            "deployment": self.name, "model": self.spec.model, "version": self.spec.version,
            "canary": None if self.spec.canary is None else {
                "version": self.spec.canary.version, "percent": self.spec.canary.percent},
            "loaded_versions": sorted(engines) if engines is not None else [],
            "cold_starts": self.cold_starts, "swaps": self.swaps,
            "switch_error": self.switch_error,
            "versions": {str(v): s.as_dict() for v, s in sorted(self.stats.items())},
            "logging": None if self.logger is None else self.logger.stats().as_dict(),
        }


def _differs(a: DeploymentSpec, b: DeploymentSpec) -> bool:
    da, db = a.to_dict(), b.to_dict()
    for d in (da, db):
        d.pop("updated_at")
        d.pop("history")
    return da != db
