"""Who is asking, and for which request: the ``RequestContext`` of the request being served.

Every transport (REST on either HTTP/1.1 server, gRPC on both HTTP/2 servers) builds one
``RequestContext`` per request through ``GuardChain.context`` (``tureen.serving.guard``); the
chain makes it current for the request's task, so services read it with ``current()``
without it being threaded through every call.

- ``request_id``: the caller's ``x-request-id`` when it is a valid id (1–128 characters of
  ``A-Z a-z 0-9 . _ ~ : / + = @ -``), else the trace id of a valid W3C ``traceparent``,
  else a new id. An invalid id is replaced, never echoed or logged raw.
- ``query``: the raw query string of an HTTP request (routes that take parameters in the
  URL parse it, e.g. ``POST /ingest/{source}?wait=online``).
- ``bearer``: the token of an ``Authorization: Bearer ...`` header (gRPC: ``authorization``
  metadata); ``peer_cert``: the verified TLS client certificate (``SSLSocket.getpeercert()``
  form) when the connection has one. Authentication turns these into ``identity`` (None:
  anonymous).
- ``authorize(action, resource)``: what services call before doing something on a caller's
  behalf. ``action`` is a ``tureen.auth.Action`` (``read_features``, ``write_features``,
  ``predict``, ``deploy``, ``model_control``, ``admin``); ``resource`` is ``PROJECT``,
  ``PROJECT/NAME`` or ``/NAME`` (a model or deployment with no project: a bare model
  server), as ``tureen.auth.Resource.parse`` reads it. It asks the chain's ``Authorizer``;
  without a current request (the SDK or CLI in process) the process itself is the caller
  and ``Authorizer`` decides nothing.

``Identity`` is ``tureen.auth.policy.Identity``. The raw ``authorization`` header stays in
``headers`` (a scheme other than Bearer is for authentication to refuse, not to ignore).
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tureen.auth.access import (
    ALLOW_ALL,
    AllowAll,
    Authorizer,
    authorize,
    current_context,
    enforce,
    permitted,
)
from tureen.auth.policy import Action, Identity

__all__ = ["ALLOW_ALL", "Action", "AllowAll", "Authorizer", "Identity", "RequestContext",
           "authorize", "current", "current_context", "enforce", "permitted"]

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("tureen_request_id", default="-")
#: "name:version" of the model serving the current request, for log lines
model_label: contextvars.ContextVar[str] = contextvars.ContextVar("tureen_model", default="-")

_counter = itertools.count(1)
_prefix = os.urandom(4).hex()
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._~:/+=@-]{1,128}")
MAX_REQUEST_ID = 128


def new_request_id() -> str:
    return f"{_prefix}-{next(_counter)}"


def valid_request_id(value: str) -> bool:
    return _REQUEST_ID.fullmatch(value) is not None


def valid_traceparent(value: str | None) -> str | None:
    """``value`` when it is a well-formed W3C traceparent, else None."""
    if value and _TRACEPARENT.fullmatch(value):
        return value
    return None


def resolve_request_id(x_request_id: str | None, traceparent: str | None) -> str:
    """The caller's ``x-request-id`` if valid, else the trace id of a valid ``traceparent``,
    else a new id. Invalid values are dropped (they could forge log lines or headers)."""
    if x_request_id and _REQUEST_ID.fullmatch(x_request_id):
        return x_request_id
    if traceparent:
        m = _TRACEPARENT.fullmatch(traceparent)
        if m:
            return m.group(1)
    return new_request_id()




@dataclass(slots=True, eq=False)
class RequestContext:
    request_id: str
    #: "http" or "grpc"
    transport: str
    #: what was called: "POST /v2/models/m/infer", "/inference.GRPCInferenceService/ModelInfer"
    operation: str
    #: inbound headers / gRPC text metadata, lowercase names, validated by the transport
    headers: Mapping[str, str]
    #: "host:port" of the client, when known
    peer: str | None = None
    #: the raw query string of an HTTP request ("wait=online&x=1"; "" for none and gRPC)
    query: str = ""
    peer_cert: Mapping[str, Any] | None = None
    #: set by authentication; None is anonymous
    identity: Identity | None = None
    traceparent: str | None = None
    authorizer: Authorizer = ALLOW_ALL
    started: float = field(default_factory=time.monotonic)
    #: the last (action, resource) authorized, for audit
    action: str | None = None
    resource: str | None = None
    #: headers a guard wants on the response (e.g. ``www-authenticate``)
    response_headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def bearer(self) -> str | None:
        """The token of the ``Authorization: Bearer ...`` header, or None; parsed when asked
        (a token already verified is recognised by the whole header value, unparsed)."""
        authorization = self.headers.get("authorization")
        if authorization is None:
            return None
        try:
            return _BEARERS[authorization]
        except KeyError:
            token = bearer_token(authorization)
            if len(authorization) <= MAX_MEMO_AUTHORIZATION:
                if len(_BEARERS) >= MAX_BEARERS:
                    _BEARERS.clear()
                _BEARERS[authorization] = token
            return token


#: ``Authorization`` value -> its bearer token (exact match on the full value); past
#: ``MAX_BEARERS`` values it starts afresh, and values longer than ``MAX_MEMO_AUTHORIZATION``
#: are not kept
_BEARERS: dict[str, str | None] = {}
MAX_BEARERS = 1024
MAX_MEMO_AUTHORIZATION = 4096


def current() -> RequestContext | None:
    """The context of the request being served, or None outside a served request."""
    ctx: RequestContext | None = current_context.get()
    return ctx


#: the verified TLS client certificate of the connection a request arrived on, for servers
#: whose handlers do not see the connection (tureen's HTTP/1.1 server sets it per request)
peer_certificate: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "tureen_peer_certificate", default=None)

def bearer_token(authorization: str | None) -> str | None:
    """The token of ``Bearer <token>`` (scheme case-insensitive), else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` and ``record.model`` (``%(request_id)s``, ``%(model)s``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        record.model = model_label.get()
        return True
