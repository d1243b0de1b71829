"""The one table from tureen errors to gRPC status codes (the gRPC spec's integers).

Both gRPC servers use it: ``h2server`` writes the integer into ``grpc-status``; the
``grpc.aio`` fallback turns it into a ``grpc.StatusCode`` with ``grpc_status``.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from tureen.errors import (
    BackendUnavailableError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    NotReadyError,
    RegistryCorruptError,
    TureenError,
    UpstreamTimeoutError,
)


class Status(IntEnum):
    """gRPC status codes (doc/statuscodes.md of the gRPC spec)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


STATUS: dict[type[TureenError], Status] = {
    InvalidRequestError: Status.INVALID_ARGUMENT,
    NotFoundError: Status.NOT_FOUND,
    ConflictError: Status.ABORTED,
    NotReadyError: Status.UNAVAILABLE,
    BackendUnavailableError: Status.UNAVAILABLE,
    UpstreamTimeoutError: Status.DEADLINE_EXCEEDED,
    RegistryCorruptError: Status.INTERNAL,
    TureenError: Status.INTERNAL,
}


def status_of(exc: TureenError) -> Status:
    for cls in type(exc).__mro__:
        code = STATUS.get(cls)
        if code is not None:
            return code
    return Status.INTERNAL


def grpc_status(exc: TureenError) -> Any:
    """``status_of`` as a ``grpc.StatusCode`` (needs the grpc package)."""
    import grpc

    code = status_of(exc)
    return next(s for s in grpc.StatusCode if s.value[0] == code)
