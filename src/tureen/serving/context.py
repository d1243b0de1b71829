"""The request id and trace context of the request being served, for logs and responses."""

from __future__ import annotations

import contextvars
import itertools
import logging
import os
import re

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("tureen_request_id", default="-")
#: "name:version" of the model serving the current request, for log lines
model_label: contextvars.ContextVar[str] = contextvars.ContextVar("tureen_model", default="-")

_counter = itertools.count(1)
_prefix = os.urandom(4).hex()
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


def new_request_id() -> str:
    return f"{_prefix}-{next(_counter)}"


def resolve_request_id(x_request_id: str | None, traceparent: str | None) -> str:
    """The caller's ``x-request-id``, else the W3C trace id of ``traceparent``, else a new id."""
    if x_request_id:
        return x_request_id[:128]
    if traceparent:
        m = _TRACEPARENT.match(traceparent.strip())
        if m:
            return m.group(1)
    return new_request_id()


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` and ``record.model`` (``%(request_id)s``, ``%(model)s``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        record.model = model_label.get()
        return True
