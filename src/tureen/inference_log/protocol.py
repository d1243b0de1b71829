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


@runtime_checkable
class RollsFiles(Protocol):
    """A sink that keeps files open between batches: the logger's thread calls ``roll_due``
    at every wake (so files are finished on time while no records come) and ``flush`` when
    asked to make everything visible."""

    def roll_due(self) -> int:
        """Finish the files that are due; returns how many were finished."""
        ...

    def flush(self) -> None: ...


class SinkWriteError(Exception):
    """Raised by a sink that delivered only part of a batch: ``failed`` records of this
    batch were lost, and ``lost_earlier`` records of earlier batches it had accepted (a
    file that could not be finished)."""

    def __init__(self, message: str, failed: int, lost_earlier: int = 0) -> None:
        super().__init__(message)
        self.failed = failed
        self.lost_earlier = lost_earlier
