"""The one table from tureen errors to HTTP status codes."""

from __future__ import annotations

from tureen.errors import (
    BackendUnavailableError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    NotReadyError,
    RegistryCorruptError,
    TureenError,
    UpstreamTimeoutError,
    UpstreamUnreachableError,
)

HTTP_STATUS: dict[type[TureenError], int] = {
    InvalidRequestError: 400,
    NotFoundError: 404,
    ConflictError: 409,
    NotReadyError: 503,
    BackendUnavailableError: 503,
    UpstreamUnreachableError: 502,
    UpstreamTimeoutError: 504,
    RegistryCorruptError: 500,
    TureenError: 500,
}


def http_status(exc: TureenError) -> int:
    for cls in type(exc).__mro__:
        code = HTTP_STATUS.get(cls)
        if code is not None:
            return code
    return 500


class PayloadTooLargeError(InvalidRequestError):
    """The request body is larger than the server's limit (HTTP 413)."""


HTTP_STATUS[PayloadTooLargeError] = 413
