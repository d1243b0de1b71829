"""Serve deployments started while ``tureen serve`` runs (from the console or the CLI).

``tureen serve`` builds a model for each deployment started when it starts. This watcher,
one per serving process, re-reads the deployment specs every ``interval`` seconds; a started
deployment no model serves yet is built, loaded off the event loop and registered in the
data plane, so it answers within about a second of ``deploy start`` — no restart. A model
that fails to load is logged and retried on the next tick (the other models keep serving).
Stopping and version changes need nothing here: each deployment's model follows its own
spec.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import TYPE_CHECKING

from tureen.deployments.service import Deployments
from tureen.deployments.serving import _spec
from tureen.models import ModelRegistry
from tureen.serving.repository import load_model
from tureen.serving.transport import ServerParts, register_transport
from tureen.store import FeatureStore

if TYPE_CHECKING:
    from tureen.serving.dataplane import DataPlane

log = logging.getLogger(__name__)


class DeploymentWatcher:
    """A ``Transport`` without a port: ``start`` / ``stop(drain)`` / ``describe``."""

    kind = "deployments"
    port = 0

    def __init__(self, dataplane: DataPlane, store: FeatureStore,
                 interval: float = 1.0) -> None:
        self.dataplane = dataplane
        self.store = store
        self.interval = interval
        self.models = ModelRegistry.for_repo(store.repo_path)
        self.deployments = Deployments(store, self.models)
        self._task: asyncio.Task[None] | None = None
        self._failed: set[str] = set()

    def describe(self) -> str:
        return f"deployment watcher (every {self.interval:g} s)"

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self, drain: float) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the registry may be briefly unreadable: try again
                log.warning("deployment watcher: %s", exc)

    async def tick(self) -> list[str]:
        """Register every started deployment not served yet; returns their names."""
        from tureen.deployments.runtime import DeploymentModel

        specs = await asyncio.to_thread(self.deployments.specs)
        served = set(self.dataplane.list_models())
        added = []
        for name, spec in sorted(specs.items()):
            if spec.state != "started" or name in served:
                continue
            model = DeploymentModel(spec, self.store, self.models,
                                    spec_source=functools.partial(_spec, self.deployments, name))
            try:
                await load_model(model, self.dataplane.run_blocking)
            except Exception as exc:
                if name not in self._failed:
                    log.error("deployment %s was started but does not load: %s", name, exc)
                    self._failed.add(name)
                continue
            self._failed.discard(name)
            self.dataplane.register(model)
            added.append(name)
            log.warning("now serving deployment %s (started while the server ran)", name)
        return added


KIND = "deployments"
_served: list[FeatureStore] = []


def watch_repo(store: FeatureStore) -> None:
    """Serve ``store``'s deployments started from now on: ``ModelServer(transports=[...,
    KIND])`` then runs a watcher in each serving process (``tureen serve`` serves one repo
    per process; forked workers inherit it)."""
    _served[:] = [store]
    register_transport(KIND, "tureen.deployments.watcher:watcher_transport")


def watcher_transport(parts: ServerParts) -> DeploymentWatcher:
    """The transport factory: the data plane comes with ``parts``."""
    if not _served:
        raise RuntimeError("call tureen.deployments.watcher.watch_repo(store) first.")
    return DeploymentWatcher(parts.dataplane, _served[0])
