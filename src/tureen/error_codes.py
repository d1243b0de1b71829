"""The one table from tureen errors to (HTTP status, gRPC status code).

Every transport maps errors here and nowhere else: REST answers the HTTP status, both gRPC
servers the gRPC code (``GrpcStatus`` holds the integers of the gRPC spec, so no grpc import
is needed). The most specific class in an error's MRO wins; anything that is not a
``TureenError`` is an internal error (500 / INTERNAL) whose message is never shown to the
client.
"""

from __future__ import annotations

from enum import IntEnum

from tureen.errors import (
    BackendUnavailableError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    NotReadyError,
    OverloadedError,
    PayloadTooLargeError,
    PermissionDeniedError,
    PortInUseError,
    RegistryCorruptError,
    RequestTimeoutError,
    TooManyRequestsError,
    TureenError,
    UnauthenticatedError,
    UpstreamTimeoutError,
    UpstreamUnreachableError,
)


class GrpcStatus(IntEnum):
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


INTERNAL = (500, GrpcStatus.INTERNAL)

ERROR_CODES: dict[type[TureenError], tuple[int, GrpcStatus]] = {
    InvalidRequestError: (400, GrpcStatus.INVALID_ARGUMENT),
    PayloadTooLargeError: (413, GrpcStatus.RESOURCE_EXHAUSTED),
    RequestTimeoutError: (408, GrpcStatus.DEADLINE_EXCEEDED),
    UnauthenticatedError: (401, GrpcStatus.UNAUTHENTICATED),
    PermissionDeniedError: (403, GrpcStatus.PERMISSION_DENIED),
    NotFoundError: (404, GrpcStatus.NOT_FOUND),
    ConflictError: (409, GrpcStatus.ABORTED),
    NotReadyError: (503, GrpcStatus.UNAVAILABLE),
    OverloadedError: (503, GrpcStatus.UNAVAILABLE),
    TooManyRequestsError: (429, GrpcStatus.RESOURCE_EXHAUSTED),
    BackendUnavailableError: (503, GrpcStatus.UNAVAILABLE),
    UpstreamUnreachableError: (502, GrpcStatus.UNAVAILABLE),
    UpstreamTimeoutError: (504, GrpcStatus.DEADLINE_EXCEEDED),
    PortInUseError: INTERNAL,
    RegistryCorruptError: INTERNAL,
    TureenError: INTERNAL,
}


def codes_of(exc: BaseException) -> tuple[int, GrpcStatus]:
    """(HTTP status, gRPC code) of ``exc``; 500 / INTERNAL for anything unexpected."""
    for cls in type(exc).__mro__:
        codes = ERROR_CODES.get(cls)
        if codes is not None:
            return codes
    return INTERNAL


def http_status(exc: BaseException) -> int:
    return codes_of(exc)[0]


def grpc_status(exc: BaseException) -> GrpcStatus:
    return codes_of(exc)[1]


def is_client_error(exc: BaseException) -> bool:
    """Whether ``exc`` is the caller's doing (a 4xx), not the server's."""
    return 400 <= codes_of(exc)[0] < 500
