"""Log lines a client can cause at will (a refused connection) are written at most once per
interval, with the number of the same events since the last line: a flood of connections
must not become a flood of log lines."""

from __future__ import annotations

import logging
import time
from typing import Any


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self.logger = logger
        self.interval = interval
        self._last = -interval
        self._unreported = 0

    def warning(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last < self.interval:
            self._unreported += 1
            return
        more, self._unreported, self._last = self._unreported, 0, now
        if more:
            self.logger.warning(message + " (and %d more times since the last report)",
                                *args, more)
        else:
            self.logger.warning(message, *args)
