"""``ConsoleServices``: the services a console reads and drives, built once per app.

The console holds no state of its own beyond small caches: definitions come from the
registry, models from the model store, deployments from the ``Deployments`` service (the
one the CLI uses), live numbers from the status and log files serving processes write.
Optional providers (pipeline runs, streaming status) plug in when their areas offer them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from tureen.deployments import Deployments
from tureen.models import ModelRegistry
from tureen.models.registry import store_from_config
from tureen.store import FeatureStore

T = TypeVar("T")


@dataclass(frozen=True)
class Endpoints:
    """Where the deployments are served, for the URLs and curl lines pages show."""

    host: str = "127.0.0.1"
    http_port: int = 8080
    grpc_port: int = 8081
    scheme: str = "http"

    def display_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host

    @property
    def http(self) -> str:
        return f"{self.scheme}://{self.display_host()}:{self.http_port}"

    @property
    def grpc(self) -> str:
        return f"{self.display_host()}:{self.grpc_port}"


class TtlCache:
    """Values computed at most once per ``ttl`` seconds per key (thread-safe)."""

    def __init__(self) -> None:
        self._data: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any, ttl: float, compute: Callable[[], T]) -> T:
        now = time.monotonic()
        with self._lock:
            hit = self._data.get(key)
        if hit is not None and now - hit[0] < ttl:
            value: T = hit[1]
            return value
        value = compute()
        with self._lock:
            if len(self._data) > 1024:
                self._data.clear()
            self._data[key] = (time.monotonic(), value)
        return value


class ConsoleServices:
    def __init__(self, repo_path: str | Path, endpoints: Endpoints | None = None,
                 store: FeatureStore | None = None) -> None:
        self.features = store if store is not None else FeatureStore(repo_path)
        self.repo_path = self.features.repo_path
        self.project = self.features.project
        self.endpoints = endpoints or Endpoints(
            host=self.features.config.serving.host or "127.0.0.1",
            http_port=self.features.config.serving.http_port or 8080,
            grpc_port=self.features.config.serving.grpc_port or 8081,
        )
        self.cache = TtlCache()
        #: the server's authentication (``tureen.auth.guard.AuthGuard``); None: auth is off
        self.guard: Any = None
        from tureen.console.runs import PipelineRuns

        self.pipeline_runs: PipelineRuns | None = PipelineRuns(self.repo_path)

    def streaming_status(self, view: str) -> dict[str, Any] | None:
        """The ingester's status of ``view`` (lag, rates, state) when a stream feeds it."""
        from tureen.streaming.status import read_statuses

        statuses = self.cache.get("streaming", 2.0, lambda: {
            s.view: s.model_dump(mode="json") for s in read_statuses(self.repo_path)})
        found: dict[str, Any] | None = statuses.get(view)
        return found

    @cached_property
    def models(self) -> ModelRegistry:
        cfg = self.features.config.models
        return ModelRegistry(store_from_config(cfg.options, self.repo_path), self.features)

    @cached_property
    def deployments(self) -> Deployments:
        return Deployments(self.features, self.models)

    @cached_property
    def model_index(self) -> Any:
        from tureen.console.model_index import ModelIndex

        return ModelIndex(self.models.store)

    @cached_property
    def rates(self) -> Any:
        from tureen.console.rates import RateSampler

        return RateSampler(self.repo_path)
