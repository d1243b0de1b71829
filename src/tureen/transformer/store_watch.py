"""A fused transformer notices an online store that lost its data (issue 11 #14).

A Redis restarted empty answers every entity NOT_FOUND; with ``missing: {policy: default}``
the transformer would score everyone with defaults and say nothing. ``StoreWatch`` compares
the store's materialization markers with the registry (``tureen.watermarks``) at most every
``every`` seconds, off the event loop, and logs a warning when a view of the service is lost
(once, until it is reloaded by ``tureen materialize-incremental``, which is logged too).
"""

from __future__ import annotations

import asyncio
import logging
import time

from tureen.errors import BackendUnavailableError
from tureen.store import FeatureStore
from tureen.watermarks import states

log = logging.getLogger(__name__)

CHECK_EVERY_SECONDS = 10.0


class StoreWatch:
    def __init__(self, store: FeatureStore, service: str, name: str,
                 every: float = CHECK_EVERY_SECONDS) -> None:
        self.store, self.service, self.name, self.every = store, service, name, every
        self.lost: frozenset[str] = frozenset()
        self._next = 0.0
        self._running: asyncio.Future[frozenset[str]] | None = None

    def poke(self) -> None:
        """From the request path: a check when one is due, in a thread when called on the
        event loop (the request never waits for it), inline in a worker thread."""
        now = time.monotonic()
        if now < self._next or (self._running is not None and not self._running.done()):
            return
        self._next = now + self.every
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.check()
            return
        self._running = loop.run_in_executor(None, self.check)

    def check(self) -> frozenset[str]:
        """The service's views whose data the store lost; logs when that changes."""
        snapshot = self.store.snapshot()
        service = snapshot.feature_services.get(self.service)
        mine = {view for view, _ in service.projections()} if service else set()
        try:
            lost = frozenset(s.view for s in states(snapshot, self.store.online)
                             if s.status == "lost" and s.view in mine)
        except BackendUnavailableError:
            return self.lost  # the store is down: requests say so themselves
        if lost - self.lost:
            log.warning(
                "%s: the online store %s lost the data of %s (its materialization marker is "
                "gone: restarted empty, flushed or recreated); every entity is missing there "
                "and is answered by the missing-feature policy until `tureen "
                "materialize-incremental now` reloads it.", self.name,
                self.store.config.online_store.type, ", ".join(sorted(lost - self.lost)))
        if self.lost - lost:
            log.warning("%s: the online store holds %s again.", self.name,
                        ", ".join(sorted(self.lost - lost)))
        self.lost = lost
        return lost
