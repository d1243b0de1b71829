"""``InlineBudget``: run short synchronous work on the event loop, long work in a thread.

Handing a call to a thread pool costs tens of microseconds and a GIL hand-off — more than a
scikit-learn predict over a few rows or a SQLite point read. A budget watches the recent
average duration (EWMA) of one kind of call: while it stays under ``budget_ms`` the call runs
inline; otherwise, and always for the first call, in a worker thread, so a model that turns
out to be slow never stalls the loop for long. ``budget_ms = 0`` always offloads.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class InlineBudget:
    __slots__ = ("_budget_s", "_calls", "_ewma_s")

    def __init__(self, budget_ms: float) -> None:
        self._budget_s = max(0.0, budget_ms) / 1000.0
        self._calls = 0
        self._ewma_s = 0.0

    @property
    def calls(self) -> int:
        """How many calls were observed."""
        return self._calls

    def inline(self) -> bool:
        """Whether the next call may run on the event loop."""
        return self._budget_s > 0 and self._calls > 0 and self._ewma_s < self._budget_s

    def observe(self, seconds: float) -> None:
        self._calls += 1
        self._ewma_s = seconds if self._calls == 1 else 0.9 * self._ewma_s + 0.1 * seconds

    def timed(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``, its duration observed (wherever it runs)."""
        t = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.observe(time.perf_counter() - t)
