"""Classify a remote hop's failure (predictor or feature server) as 502 or 504."""

from __future__ import annotations

from tureen.errors import BackendUnavailableError, UpstreamTimeoutError, UpstreamUnreachableError

__all__ = ["UpstreamTimeoutError", "UpstreamUnreachableError", "classify"]


def classify(exc: BackendUnavailableError) -> BackendUnavailableError:
    """The 502 or 504 flavour of a client's 'failed after N attempts' error."""
    if isinstance(exc, UpstreamUnreachableError | UpstreamTimeoutError):
        return exc
    text = str(exc)
    timed_out = "Timeout" in text or "DEADLINE_EXCEEDED" in text
    cls = UpstreamTimeoutError if timed_out else UpstreamUnreachableError
    return cls(text)
