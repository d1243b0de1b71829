"""The one table from tureen errors to gRPC status codes."""

from __future__ import annotations

import grpc

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

GRPC_STATUS: dict[type[TureenError], grpc.StatusCode] = {
    InvalidRequestError: grpc.StatusCode.INVALID_ARGUMENT,
    NotFoundError: grpc.StatusCode.NOT_FOUND,
    ConflictError: grpc.StatusCode.ABORTED,
    NotReadyError: grpc.StatusCode.UNAVAILABLE,
    BackendUnavailableError: grpc.StatusCode.UNAVAILABLE,
    UpstreamTimeoutError: grpc.StatusCode.DEADLINE_EXCEEDED,
    RegistryCorruptError: grpc.StatusCode.INTERNAL,
    TureenError: grpc.StatusCode.INTERNAL,
}


def grpc_status(exc: TureenError) -> grpc.StatusCode:
    for cls in type(exc).__mro__:
        code = GRPC_STATUS.get(cls)
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL
