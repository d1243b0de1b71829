"""``LogSink``: where the inference logger's background thread delivers batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from tureen.inference_log.record import LoggedRequest


@runtime_checkable
class LogSink(Protocol):
    def write(self, batch: Sequence[LoggedRequest]) -> None:
        """Deliver a batch (blocking is fine: only the logger's thread calls this)."""
        ...

    def close(self) -> None:
        """Flush whatever the sink buffers and release connections."""
        ...


class SinkWriteError(Exception):
    """Raised by a sink that delivered only part of a batch; ``failed`` records were lost."""

    def __init__(self, message: str, failed: int) -> None:
        super().__init__(message)
        self.failed = failed
