"""Errors of a remote hop (predictor or feature server), mapped to 502 / 504 by transports."""

from __future__ import annotations

from tureen.errors import BackendUnavailableError


class UpstreamUnreachableError(BackendUnavailableError):
    """The predictor or feature server refused, reset or kept failing (HTTP 502)."""


class UpstreamTimeoutError(BackendUnavailableError):
    """The predictor or feature server did not answer in time (HTTP 504)."""


def classify(exc: BackendUnavailableError) -> BackendUnavailableError:
    """The 502 or 504 flavour of a client's 'failed after N attempts' error."""
    if isinstance(exc, UpstreamUnreachableError | UpstreamTimeoutError):
        return exc
    text = str(exc)
    timed_out = "Timeout" in text or "DEADLINE_EXCEEDED" in text
    cls = UpstreamTimeoutError if timed_out else UpstreamUnreachableError
    return cls(text)
