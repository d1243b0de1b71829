"""May the current caller do this? The check every service makes, and where the caller is.

``current_context`` holds the request being served (``tureen.serving.context.RequestContext``,
set by the guard chain); services call ``authorize(action, resource)`` before they act on a
caller's behalf, and it asks that request's ``Authorizer``. Without a current request (the
SDK or CLI in process: the local user owns the files) it allows — unless a server with auth on
was set up in this process (``enforce``): then a service reached outside the guard chain is
refused, never silently allowed.

This module is the seam between the services and the request context; it imports neither
``tureen.serving`` nor a transport.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from tureen.auth.policy import Identity
from tureen.errors import PermissionDeniedError, UnauthenticatedError

if TYPE_CHECKING:
    from tureen.serving.context import RequestContext

#: the request being served (a ``RequestContext``), None outside one
current_context: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "tureen_request", default=None)


class Authorizer(Protocol):
    """Decides whether the caller of ``ctx`` may do ``action`` on ``resource``; raises
    ``UnauthenticatedError`` (no identity but one is needed) or ``PermissionDeniedError``."""

    def check(self, ctx: RequestContext, action: str, resource: str) -> None: ...


class AllowAll:
    """The default: everything is allowed (no authentication configured)."""

    def check(self, ctx: RequestContext, action: str, resource: str) -> None:
        return None


ALLOW_ALL = AllowAll()


@dataclass(eq=False)
class CallerContext:
    """What ``authorize`` and the audit need of a request, for a server that does not run the
    guard chain (``tureen.auth.guard.AuthGuard``: the standalone console). The guard chain's
    ``RequestContext`` has the same fields."""

    request_id: str
    transport: str
    operation: str
    identity: Identity | None
    authorizer: Authorizer
    peer: str | None = None
    action: str | None = None
    resource: str | None = None
    response_headers: list[tuple[str, str]] = field(default_factory=list)
_enforcing = False


def enforce() -> None:
    """Called when a server with auth on is set up: from then on, in this process, a service
    reached without a current request (a route that bypassed the guard chain) is refused."""
    global _enforcing
    _enforcing = True


def enforcing() -> bool:
    return _enforcing


def authorize(action: str, resource: str) -> None:
    """Raise unless the current caller may do ``action`` on ``resource``. ``resource`` is
    ``PROJECT``, ``PROJECT/NAME`` or ``/NAME`` (``tureen.auth.Resource.parse``)."""
    ctx = current_context.get()
    if ctx is None:
        if _enforcing:
            raise UnauthenticatedError(
                "this operation was reached outside a served request while authentication is "
                "on; it is refused.")
        return
    ctx.action, ctx.resource = action, resource
    ctx.authorizer.check(ctx, action, resource)


def permitted(action: str, resource: str) -> bool:
    """Whether ``authorize`` would allow (to filter what a list shows; records nothing)."""
    ctx = current_context.get()
    if ctx is None:
        return not _enforcing
    try:
        ctx.authorizer.check(ctx, action, resource)
    except (UnauthenticatedError, PermissionDeniedError):
        return False
    return True
