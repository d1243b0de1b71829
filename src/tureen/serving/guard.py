"""The one guard chain every request passes through, on every transport and route.

REST (KServe v1, OIP, the Feast routes, anything mounted with ``extra_routes``) on either
HTTP/1.1 server and gRPC on both HTTP/2 servers do the same three things per request::

    ctx = chain.context("http", "POST /v2/models/m/infer", headers, peer=..., peer_cert=...)
    try:
        result = await chain.run(ctx, handler, *args)
    except RequestFailedError as f:          # f.http, f.grpc, f.message, f.headers: render it
        ...

``context`` validates the request id (``tureen.serving.context``) and lifts the
credentials (bearer token, TLS client certificate) off the request. ``run`` makes the
context current (services see it with ``context.current()``), runs each guard's ``check`` in
order, calls the handler, and maps any error through the one table
(``tureen.error_codes``) into a ``RequestFailedError``: client mistakes keep their message; anything
unexpected is logged once with the request id and answered with a generic 500 / INTERNAL.

A concern is one ``Guard`` (one file), added to the chain's list::

    class Guard(Protocol):
        def check(self, ctx) -> Awaitable[None] | None   # raise a TureenError to refuse;
                                                         # may set ctx.identity
        def done(self, ctx, error) -> None               # after the handler (error or None)

A guard whose ``done`` does nothing says so with a class attribute ``done_is_noop = True``
(the chain then does not call it). ``check`` may be a plain function (the cheap, usual
case) or return an awaitable (e.g. a JWKS fetch on a cache miss). ``done`` runs, in
reverse order, for each guard whose ``check`` passed — so an audit guard placed first sees
every outcome, including refusals by the guards after it. The order the server builds
is: audit, limits, authentication.

Authorization is not a guard: services decide it where they know the resource, by calling
``tureen.serving.context.authorize(action, resource)``, which asks the chain's
``Authorizer`` (``GuardChain(authorizer=...)``; the default allows everything).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from tureen.error_codes import GrpcStatus, codes_of
from tureen.errors import OverloadedError, TureenError
from tureen.serving.context import (
    ALLOW_ALL,
    Authorizer,
    RequestContext,
    current_context,
    new_request_id,
    request_id,
    resolve_request_id,
    valid_traceparent,
)
from tureen.serving.ratelog import RateLimitedLog

log = logging.getLogger(__name__)
#: one throttled log line per kind of known 5xx refusal
_REFUSALS: dict[type[BaseException], RateLimitedLog] = {}

T = TypeVar("T")


class Guard(Protocol):
    def check(self, ctx: RequestContext) -> Awaitable[None] | None: ...

    def done(self, ctx: RequestContext, error: BaseException | None) -> None: ...


class RequestFailedError(Exception):
    """A request that ends in an error, ready to render on any transport."""

    def __init__(
        self,
        http: int,
        grpc: GrpcStatus,
        message: str,
        headers: Sequence[tuple[str, str]] = (),
        cause: TureenError | None = None,
    ) -> None:
        super().__init__(message)
        self.http = http
        self.grpc = grpc
        self.message = message
        self.headers = list(headers)
        #: the TureenError it came from (None for internal errors), for renderers that answer
        #: in another protocol's terms (the Feast routes' typed error bodies)
        self.cause = cause


def internal_message(rid: str) -> str:
    return f"internal server error; the server log has the details under request id {rid}."


def failure_of(ctx: RequestContext, exc: BaseException, where: str = "") -> RequestFailedError:
    """``exc`` as a ``RequestFailedError``; unexpected errors are logged here (once) with
    the request id and answered without their internals."""
    if isinstance(exc, RequestFailedError):
        return exc
    http, grpc = codes_of(exc)
    if isinstance(exc, TureenError):
        if http >= 500:  # overload, a backend down: as many as requests come, so throttled
            refusals = _REFUSALS.get(type(exc))
            if refusals is None:
                refusals = _REFUSALS[type(exc)] = RateLimitedLog(log)
            refusals.warning(
                "%s failed (request id %s): %s", where or ctx.operation, ctx.request_id, exc
            )
        return RequestFailedError(http, grpc, str(exc), ctx.response_headers, exc)
    log.error(
        "internal error serving %s (request id %s)",
        where or ctx.operation,
        ctx.request_id,
        exc_info=exc,
    )
    return RequestFailedError(http, grpc, internal_message(ctx.request_id), ctx.response_headers)


class GuardChain:
    def __init__(
        self,
        guards: Sequence[Guard] = (),
        authorizer: Authorizer | None = None,
    ) -> None:
        self.guards = list(guards)
        self.authorizer = authorizer or ALLOW_ALL
        #: per number of guards whose check passed: those with a ``done`` to run, in reverse
        #: order (a guard with ``done_is_noop = True`` has nothing to do after the handler)
        self._finish = [
            tuple(g for g in reversed(self.guards[:n]) if not getattr(g, "done_is_noop", False))
            for n in range(len(self.guards) + 1)
        ]

    def context(
        self,
        transport: str,
        operation: str,
        headers: Mapping[str, str],
        peer: str | None = None,
        peer_cert: Mapping[str, Any] | None = None,
        query: str = "",
    ) -> RequestContext:
        """A validated context for one request (``headers``: lowercase names)."""
        get = headers.get
        tp = get("traceparent")
        if tp is not None:
            tp = valid_traceparent(tp)
        rid = get("x-request-id")
        return RequestContext(
            resolve_request_id(rid, tp) if rid is not None or tp else new_request_id(),
            transport,
            operation,
            headers,
            peer,
            query,
            peer_cert,
            traceparent=tp,
            authorizer=self.authorizer,
        )

    async def run(self, ctx: RequestContext, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await fn(*args)`` under ``ctx`` and the guards; every error becomes a
        ``RequestFailedError``."""
        ctx_token = current_context.set(ctx)
        rid_token = request_id.set(ctx.request_id)
        passed = 0
        error: BaseException | None = None
        try:
            for guard in self.guards:
                pending = guard.check(ctx)
                if pending is not None:
                    await pending
                passed += 1
            return await fn(*args)
        except Exception as exc:
            error = exc
            raise failure_of(ctx, exc) from None
        except BaseException as exc:  # cancellation: the transport knows what happened
            error = exc
            raise
        finally:
            for guard in self._finish[passed]:
                try:
                    guard.done(ctx, error)
                except Exception:
                    log.exception(
                        "guard %s failed after request %s", type(guard).__name__, ctx.request_id
                    )
            request_id.reset(rid_token)
            current_context.reset(ctx_token)


class InflightLimit:
    """At most ``limit`` requests in flight per worker; more get 503 / UNAVAILABLE."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.inflight = 0

    def check(self, ctx: RequestContext) -> None:
        if self.inflight >= self.limit:
            raise OverloadedError(
                f"this server is handling its limit of {self.limit} requests; retry shortly "
                "(or raise serving.limits.max_inflight_requests / add workers)."
            )
        self.inflight += 1

    def done(self, ctx: RequestContext, error: BaseException | None) -> None:
        self.inflight -= 1
