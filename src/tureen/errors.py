"""Errors raised by tureen.

The tree, root first::

    TureenError                   anything tureen raises on purpose
    ├── NotFoundError             a named thing (feature, view, service, model, version) is absent
    ├── InvalidRequestError       the caller sent something malformed; fix the input and retry
    │   ├── ConfigError           tureen.yaml or a definition file is wrong (names file/line/field)
    │   ├── PayloadTooLargeError  a body, message or tensor is over a limit of this server
    │   └── RequestTimeoutError   the client sent its request too slowly (head or body deadline)
    ├── UnauthenticatedError      no credentials, or credentials that are not valid (401)
    ├── PermissionDeniedError     valid credentials without the right to do this (403)
    ├── NotReadyError             the thing exists but cannot answer yet (model loading)
    ├── ConflictError             a concurrent writer won (registry apply); re-read and retry
    ├── OverloadedError           this server is at a capacity limit now; retry later
    │   └── TooManyRequestsError  this caller sends faster than allowed; slow down
    ├── BackendUnavailableError   a store or remote server cannot be reached; retry later
    │   ├── UpstreamUnreachableError  a remote model/feature server kept failing (502)
    │   ├── UpstreamTimeoutError      a remote model/feature server did not answer in time (504)
    │   └── PortInUseError        a server cannot listen: another process holds the port
    └── RegistryCorruptError      the stored registry cannot be read; never reset silently

Core errors carry no HTTP or gRPC codes: ``tureen.error_codes`` maps them in one table that
every transport uses.
Every message says what was wrong and what to do about it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TureenError(Exception):
    """Root of every error tureen raises on purpose."""


class NotFoundError(TureenError):
    """A named object does not exist. ``kind`` says what was looked up ("feature view",
    "feature service", "entity", "push source", ...) when known, so a transport can answer
    in another protocol's terms (Feast's typed errors)."""

    def __init__(self, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind


class InvalidRequestError(TureenError):
    """The input is malformed or inconsistent with the schema."""


class ConfigError(InvalidRequestError):
    """A configuration or definition file is invalid."""


class PayloadTooLargeError(InvalidRequestError):
    """A request body, gRPC message or tensor is larger than this server accepts."""


class RequestTimeoutError(InvalidRequestError):
    """The client did not send its request head or body within the server's deadline."""


class UnauthenticatedError(TureenError):
    """The caller sent no credentials, or credentials that are invalid, expired or revoked.

    The message never says which of those it was to a network caller, nor which resources
    exist; the server log has the reason under the request id."""


class PermissionDeniedError(TureenError):
    """The caller is authenticated but none of its roles allows the action on the resource."""


class NotReadyError(TureenError):
    """The object exists but is not ready to serve."""


class ConflictError(TureenError):
    """A concurrent change won; re-read and retry."""


class OverloadedError(TureenError):
    """The server is at a capacity limit (requests in flight, connections); retry later."""


class TooManyRequestsError(OverloadedError):
    """This caller exceeded a rate limit; slow down."""


class BackendUnavailableError(TureenError):
    """A storage backend or remote server could not be reached."""


class UpstreamUnreachableError(BackendUnavailableError):
    """A server this one calls (predictor, feature server) refused or kept failing."""


class UpstreamTimeoutError(BackendUnavailableError):
    """A server this one calls (predictor, feature server) did not answer in time."""


class PortInUseError(BackendUnavailableError):
    """A server cannot bind its port because another process listens there. Servers raise it
    with the address and the flag that sets the port; the CLI prints it as one line."""

    @classmethod
    def from_os_error(cls, exc: OSError, address: str | None = None,
                      flag: str | None = None) -> PortInUseError:
        where = f" {address}" if address else ""
        how = f"pass {flag} with a free port" if flag else "pick another port"
        return cls(f"cannot listen on{where}: the address is already in use ({exc.strerror}). "
                   f"Stop the process that holds it (e.g. another tureen server) or {how}.")


class RegistryCorruptError(TureenError):
    """The stored registry cannot be decoded; it is left untouched."""


def suggest(name: str, choices: Iterable[str]) -> str:
    """Return ' Did you mean ...?' for close matches of ``name`` among ``choices``, or ''."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in close) + "?"
