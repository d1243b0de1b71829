"""``DataPlane``: the one place inference, metadata, readiness and repository logic live.

Every transport (KServe v1 REST, OIP REST, OIP gRPC) decodes its wire format, calls one
method here, and encodes the result. Errors are ``tureen.errors`` exceptions, mapped to
status codes by the one table (``tureen.error_codes``). Authorization is decided here: a
predict checks ``Action.PREDICT`` on ``/<name>``, repository load/unload
``Action.MODEL_CONTROL`` (and needs ``model_control`` on).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as pkg_version
from typing import Any

from tureen.codecs.v1 import to_predictions
from tureen.errors import (
    InvalidRequestError,
    NotFoundError,
    NotReadyError,
    PermissionDeniedError,
    TureenError,
)
from tureen.serving.context import Action, authorize, model_label, permitted
from tureen.serving.inference import InferRequest, InferResponse
from tureen.serving.metrics import Metrics, ReportsMetrics
from tureen.serving.model import Explainer, Headers, Model, ServesVersions
from tureen.serving.model_config import model_config, parse_override
from tureen.serving.pipeline import Pipeline, Stage, build_pipeline
from tureen.serving.repository import ModelRepository, Served
from tureen.serving.responses import rows_of_request, to_response, v1_body
from tureen.serving.shared_memory import SharedMemoryRegistry
from tureen.serving.shm_tensors import attach_inputs, uses_shared_memory, write_outputs
from tureen.serving.signature import validate
from tureen.serving.statistics import model_statistics
from tureen.serving.streaming import check_sequence, decoupled_results

EXTENSIONS = ["binary_tensor_data", "model_repository", "parameters", "statistics",
              "model_configuration", "sequence", "sequence(string_id)"]
DURATION = "tureen_request_duration_seconds"

try:
    _VERSION = pkg_version("tureen")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    _VERSION = "0"


class DataPlane:
    def __init__(
        self,
        repository: ModelRepository | None = None,
        metrics: Metrics | None = None,
        threads: int = 8,
        server_name: str = "tureen",
        model_control: bool = False,
    ) -> None:
        """``threads``: threads per served model version for its sync handlers.
        ``model_control``: whether ``load`` / ``unload`` (the repository extension, reached
        over the network) are allowed at all (Triton's explicit model control mode)."""
        self.threads = threads
        self.model_control = model_control
        self.executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="tureen-load")
        self.metrics = metrics or Metrics()
        self.repository = repository or ModelRepository()
        self.repository._run_blocking = self.run_blocking
        self.repository._on_change = self._on_change
        self.server_name = server_name
        #: system shared memory regions; None: the extension is off (see --allow_shared_memory)
        self.shared_memory: SharedMemoryRegistry | None = None
        self._pipelines: dict[int, Pipeline] = {}
        #: model name -> the action a caller needs (decided before the model is looked up,
        #: so a refused caller learns nothing about what is served)
        self._actions: dict[str, str] = {}
        for m in self.repository.models():
            self._on_change(m, True)

    # setup

    def register(self, model: Model) -> None:
        self.repository.register(model)

    def _on_change(self, model: Model, added: bool) -> None:
        old = self._pipelines.pop(id(model), None)
        if old is not None:
            old.executor.shutdown(wait=False)
        if not added:
            return
        self._actions[model.name] = model.action
        if isinstance(model, ReportsMetrics):
            model.bind_metrics(self.metrics)
        labels = (model.name, model.version)
        queue, predict = (*labels, "queue"), (*labels, "predict")

        def on_batch(rows: int, seconds: float, waits: list[float]) -> None:
            mt = self.metrics
            mt.observe("tureen_batch_size", labels, rows)
            self._executed(labels, rows, seconds)
            for wait in waits:
                mt.observe(DURATION, queue, wait)
            mt.observe(DURATION, predict, seconds, len(waits))  # each request waited for it

        self._pipelines[id(model)] = build_pipeline(model, self.threads, self.run_blocking,
                                                    on_batch)

    def executor_of(self, model: Model) -> ThreadPoolExecutor:
        """The threads that run ``model``'s sync code."""
        return self._pipelines[id(model)].executor

    async def run_blocking(
        self, fn: Callable[..., Any], *args: Any, executor: ThreadPoolExecutor | None = None
    ) -> Any:
        """Run ``fn(*args)`` in a thread (with the caller's context: request id for logs)."""
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        return await loop.run_in_executor(executor or self.executor, ctx.run, fn, *args)

    def close(self) -> None:
        for pipe in self._pipelines.values():
            pipe.executor.shutdown(wait=False, cancel_futures=True)
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self.shared_memory is not None:
            self.shared_memory.close()

    # health and metadata

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.repository.all_ready()

    def server_metadata(self) -> dict[str, Any]:
        extensions = EXTENSIONS + (["system_shared_memory"] if self.shared_memory else [])
        return {"name": self.server_name, "version": _VERSION, "extensions": extensions}

    def shared_memory_control(self, every_region: bool = False) -> SharedMemoryRegistry:
        """The registry for register/status/unregister; refused while the extension is off.
        Clients that predict use regions, so one region's register/status/unregister asks
        ``predict``; unregistering every region (other callers' too) asks ``model_control``.
        The caller is authorized first: a refused one learns nothing of the setting."""
        self.authorize_shared_memory(every_region)
        if self.shared_memory is None:
            raise InvalidRequestError(
                "system shared memory is off on this server; start it with "
                "--allow_shared_memory (serving.allow_shared_memory; same-host clients only).")
        return self.shared_memory

    def authorize_shared_memory(self, every_region: bool = False) -> None:
        """What a shared memory request (system or CUDA) asks of its caller."""
        authorize(Action.MODEL_CONTROL if every_region else Action.PREDICT, "/shared-memory")

    def _authorize(self, name: str) -> None:
        authorize(self._actions.get(name, Action.PREDICT), f"/{name}")

    def model_ready(self, name: str, version: str | None = None) -> bool:
        """Whether the model (version) answers; NotFoundError when it is not served at all."""
        self._authorize(name)
        try:
            self.repository.get(name, version)
        except NotReadyError:
            return False
        return True

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        self._authorize(name)
        model = self.repository.get(name, version).model
        versions = (model.served_versions() if isinstance(model, ServesVersions)
                    else self.repository.versions(name))
        return {
            "name": name,
            "versions": versions,
            "platform": model.platform or type(model).__name__,
            "inputs": [t.as_dict() for t in model.inputs],
            "outputs": [t.as_dict() for t in model.outputs],
        }

    def list_models(self) -> list[str]:
        """The models the caller may call (every one in process)."""
        return sorted(n for n in self.repository.names()
                      if permitted(self._actions.get(n, Action.PREDICT), f"/{n}"))

    def statistics(self, name: str | None = None, version: str | None = None) -> dict[str, Any]:
        """Triton's statistics extension: every served version, one model's, or one version's."""
        repo = self.repository
        if name:
            self._authorize(name)  # before the lookup: a refused caller learns nothing
        if name and version:
            pairs = [(name, repo.get(name, version).model.version)]
        elif name:
            repo.get(name)  # NotFoundError for a model that is not served
            pairs = [(name, v) for v in repo.versions(name)]
        else:  # every model the caller may call
            pairs = [(n, v) for n in self.list_models() for v in repo.versions(n)]
        return {"model_stats": model_statistics(self.metrics, pairs)}

    # repository extension

    def repository_index(self) -> list[dict[str, str]]:
        authorize(Action.MODEL_CONTROL, "")
        return self.repository.index()

    async def load(self, name: str, parameters: dict[str, Any] | None = None) -> list[str]:
        """Repository load; ``parameters`` of the request: ``config`` (Triton's model config as
        JSON) is applied to this load; file overrides and unknown parameters are refused."""
        self._may_control(name)
        params = dict(parameters or {})
        config = params.pop("config", None)
        if params:
            files = [k for k in params if k.startswith("file:")]
            what = ("file overrides (" + ", ".join(repr(k[:40]) for k in files[:3]) + ") are "
                    "not accepted: they would let a client upload code; put the files in the "
                    "model repository and load again") if files else (
                f"parameters {sorted(params)} are not understood; a load takes 'config'")
            raise InvalidRequestError(f"failed to load model {name!r}: {what}.")
        override = None
        if config is not None:
            if not isinstance(config, str):
                raise InvalidRequestError(
                    f"failed to load model {name!r}: parameter 'config' must be a string "
                    "holding the model configuration as JSON.")
            try:
                current = self.model_config(name)
            except TureenError:
                current = {}
            override = parse_override(name, config, current)
        try:
            return await self.repository.load(name, override)
        except NotFoundError as exc:  # clients (Triton's) look for "failed to load"
            raise NotFoundError(f"failed to load model {name!r}: {exc}") from exc

    def model_config(self, name: str, version: str | None = None) -> dict[str, Any]:
        """Triton's model configuration of a served model (version)."""
        self._authorize(name)
        model = self.repository.get(name, version).model
        return model_config(model, self.repository.policy_of(name), self.threads)

    async def unload(self, name: str) -> None:
        self._may_control(name)
        await self.repository.unload(name)

    def _may_control(self, name: str) -> None:
        if not self.model_control:
            raise PermissionDeniedError(
                "model control (repository load/unload) is off on this server; start it with "
                "--enable_model_control (serving.enable_model_control) to allow it.")
        authorize(Action.MODEL_CONTROL, f"/{name}")

    # inference

    async def infer(self, request: InferRequest, protocol: str = "v2") -> InferResponse:
        """OIP inference (REST v2 and gRPC)."""
        served = self._acquire(request.model_name, request.model_version, protocol)
        model = served.model
        t0 = time.perf_counter()
        status = "error"
        try:
            pipe = self._pipelines[id(model)]
            shm = uses_shared_memory(request)
            if shm:
                attach_inputs(self.shared_memory, request)
            if pipe.pre is None and model.inputs:
                validate(request, model)
            check_sequence(request)
            if pipe.decoupled:
                result = await self._only_result(model, pipe, request)
            else:
                result = await self._run(model, pipe, request, request.headers)
            response = to_response(model, request, result)
            if shm:
                write_outputs(self.shared_memory, request, response)
            status = "ok"
            return response
        except InvalidRequestError:
            status = "invalid"
            raise
        finally:
            self._release(served, protocol, status, t0, rows_of_request(model, request))

    async def infer_stream(
        self, request: InferRequest, protocol: str = "grpc-stream"
    ) -> AsyncIterator[InferResponse]:
        """Every response to ``request``: one, or as many as a decoupled model yields."""
        try:
            found = self.repository.get(request.model_name, request.model_version)
            decoupled = self._pipelines[id(found.model)].decoupled
        except (TureenError, KeyError):
            decoupled = False
        if not decoupled:
            yield await self.infer(request, protocol)
            return
        served = self._acquire(request.model_name, request.model_version, protocol)
        model = served.model
        pipe = self._pipelines[id(model)]
        t0 = time.perf_counter()
        status = "error"
        try:
            shm = uses_shared_memory(request)
            if shm:
                attach_inputs(self.shared_memory, request)
            if pipe.pre is None and model.inputs:
                validate(request, model)
            check_sequence(request)
            async for item in decoupled_results(self, model, request, request.headers,
                                                pipe.pre, pipe.post):
                response = to_response(model, request, item)
                if shm:
                    write_outputs(self.shared_memory, request, response)
                yield response
            self._executed((model.name, model.version), 1, time.perf_counter() - t0)
            status = "ok"
        except InvalidRequestError:
            status = "invalid"
            raise
        finally:
            self._release(served, protocol, status, t0, rows_of_request(model, request))

    async def _only_result(self, model: Model, pipe: Pipeline, request: InferRequest) -> Any:
        """A unary call to a decoupled model: fine when it answers exactly once."""
        t0 = time.perf_counter()
        results = [r async for r in decoupled_results(self, model, request, request.headers,
                                                      pipe.pre, pipe.post)]
        if len(results) != 1:
            raise InvalidRequestError(
                f"model {model.name!r} is decoupled and gave {len(results)} responses to this "
                "request; a unary call takes exactly one. Call it with gRPC ModelStreamInfer.")
        self._executed((model.name, model.version), 1, time.perf_counter() - t0)
        return results[0]

    async def predict_v1(self, name: str, body: Any, headers: Headers) -> Any:
        """KServe v1 ``:predict``; returns the response body."""
        if not isinstance(body, dict):
            raise InvalidRequestError(
                'a KServe v1 request is a JSON object such as {"instances": [[...], ...]}.')
        served = self._acquire(name, None, "v1")
        model = served.model
        t0 = time.perf_counter()
        status = "error"
        try:
            result = await self._run(model, self._pipelines[id(model)], body, headers)
            status = "ok"
            return v1_body(result)
        except InvalidRequestError:
            status = "invalid"
            raise
        finally:
            self._release(served, "v1", status, t0, rows_of_request(model, body))

    async def explain_v1(self, name: str, body: Any, headers: Headers) -> Any:
        served = self._acquire(name, None, "v1-explain")
        model = served.model
        t0 = time.perf_counter()
        status = "error"
        try:
            if not isinstance(model, Explainer):
                raise NotFoundError(
                    f"model {name!r} has no explainer; call :predict, or add an explain() "
                    "method to the model."
                )
            explain = model.explain
            result = await self._stage(explain, inspect.iscoroutinefunction(explain), body,
                                       headers, self._pipelines[id(model)].executor)
            status = "ok"
            return result if isinstance(result, dict) else {"explanations": to_predictions(result)}
        finally:
            self._release(served, "v1-explain", status, t0)

    def _acquire(self, name: str, version: str | None, protocol: str) -> Served:
        try:
            self._authorize(name)
            served = self.repository.get(name, version)
        except TureenError as exc:
            self.metrics.inc("tureen_requests_total", ("", "", protocol, type(exc).__name__))
            raise
        served.inflight += 1
        self.metrics.inc("tureen_inflight_requests", (name,))
        model_label.set(f"{name}:{served.model.version}")
        return served

    def _release(self, served: Served, protocol: str, status: str, t0: float,
                 rows: int = 1) -> None:
        m = served.model
        served.inflight -= 1
        if served.inflight == 0:
            served.idle.set()
        mt = self.metrics
        labels = (m.name, m.version)
        took = time.perf_counter() - t0
        mt.inc("tureen_inflight_requests", (m.name,), -1.0)
        mt.inc("tureen_requests_total", (*labels, protocol, status))
        mt.observe(DURATION, (*labels, "total"), took)
        if status == "ok":
            mt.observe(DURATION, (*labels, "success"), took)
            mt.inc("tureen_inferences_total", labels, rows)
            mt.set("tureen_last_inference_timestamp_seconds", labels, time.time())

    def _executed(self, labels: tuple[str, str], rows: int, seconds: float) -> None:
        """One model execution (predict call) of ``rows`` rows took ``seconds``."""
        key = (*labels, str(rows))
        self.metrics.inc("tureen_executions_total", key)
        self.metrics.inc("tureen_execution_seconds_total", key, seconds)

    async def _stage(self, fn: Stage, is_async: bool, payload: Any, headers: Headers,
                     executor: ThreadPoolExecutor) -> Any:
        if is_async:
            return await fn(payload, headers)
        return await self.run_blocking(fn, payload, headers, executor=executor)

    async def _run(self, model: Model, pipe: Pipeline, payload: Any, headers: Headers) -> Any:
        if pipe.all_sync:  # every stage inline, or one hop to the thread pool for all
            if pipe.budget.inline():
                return pipe.budget.timed(self._run_sync, model, pipe, payload, headers)
            return await self.run_blocking(pipe.budget.timed, self._run_sync, model, pipe,
                                           payload, headers, executor=pipe.executor)
        observe = self.metrics.observe
        labels = (model.name, model.version)
        if pipe.pre is not None:
            t = time.perf_counter()
            payload = await self._stage(pipe.pre, pipe.pre_async, payload, headers,
                                        pipe.executor)
            observe(DURATION, (*labels, "preprocess"),
                    time.perf_counter() - t)
        if pipe.batcher is not None:  # the batch records its own time (see on_batch)
            result = await pipe.batcher.submit(model.decode(payload) if pipe.batch_arrays
                                               else payload)
        else:
            t = time.perf_counter()
            result = await self._stage(pipe.predict, pipe.predict_async, payload, headers,
                                       pipe.executor)
            took = time.perf_counter() - t
            observe(DURATION, (*labels, "predict"), took)
            self._executed(labels, 1, took)
        if pipe.post is not None:
            t = time.perf_counter()
            result = await self._stage(pipe.post, pipe.post_async, result, headers,
                                       pipe.executor)
            observe(DURATION, (*labels, "postprocess"),
                    time.perf_counter() - t)
        return result

    def _run_sync(self, model: Model, pipe: Pipeline, payload: Any, headers: Headers) -> Any:
        observe = self.metrics.observe
        labels = (model.name, model.version)
        if pipe.pre is not None:
            t = time.perf_counter()
            payload = pipe.pre(payload, headers)
            observe(DURATION, (*labels, "preprocess"),
                    time.perf_counter() - t)
        t = time.perf_counter()
        result = pipe.predict(payload, headers)
        took = time.perf_counter() - t
        observe(DURATION, (*labels, "predict"), took)
        self._executed(labels, 1, took)
        if pipe.post is not None:
            t = time.perf_counter()
            result = pipe.post(result, headers)
            observe(DURATION, (*labels, "postprocess"),
                    time.perf_counter() - t)
        return result
