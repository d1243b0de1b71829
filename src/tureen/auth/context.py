"""The caller of the request being served, and ``require``: the check every service makes.

The guard chain authenticates a request and binds a ``RequestAuth`` (the policy in force and
the caller's identity) for the duration of the request. Services call
``require(action, name=..., project=...)`` before they touch anything: without a bound request
(the CLI or the SDK in process: the local user owns the files) it allows; under a server with
auth on it raises ``UnauthenticatedError`` (no identity) or ``PermissionDeniedError`` (an
identity that may not). Every check is recorded on the request for the audit log.

Fail closed: once a server with auth on starts in a process (``enforce()``), a service reached
without a bound request — a route that bypassed the guard chain — is refused, not allowed.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tureen.auth.policy import Action, Identity, Policy, Resource
from tureen.errors import PermissionDeniedError, UnauthenticatedError

DENIED = ("the credentials presented do not allow {action} on this resource; ask an admin "
          "for a token with a role that grants it (`tureen auth check` explains a decision).")
UNAUTHENTICATED = ("authentication required: send `Authorization: Bearer <token>` (gRPC: "
                   "`authorization` metadata) with a valid, unexpired token.")


@dataclass
class Check:
    action: Action
    resource: Resource
    allowed: bool


@dataclass
class RequestAuth:
    """What the guard chain knows about the current request's caller."""

    policy: Policy | None  # None: auth is off on this server
    identity: Identity | None
    project: str | None = None  # the served repo's project, the default resource project
    checks: list[Check] = field(default_factory=list)


_current: contextvars.ContextVar[RequestAuth | None] = contextvars.ContextVar(
    "tureen_request_auth", default=None)
_enforcing = False


def enforce() -> None:
    """Called when a server with auth on starts: unbound service calls are refused from now."""
    global _enforcing
    _enforcing = True


def enforcing() -> bool:
    return _enforcing


def current() -> RequestAuth | None:
    return _current.get()


def current_identity() -> Identity | None:
    ctx = _current.get()
    return ctx.identity if ctx is not None else None


def bind(ctx: RequestAuth) -> contextvars.Token[RequestAuth | None]:
    return _current.set(ctx)


def unbind(token: contextvars.Token[RequestAuth | None]) -> None:
    _current.reset(token)


@contextmanager
def bound(ctx: RequestAuth) -> Iterator[RequestAuth]:
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


def require(action: Action, name: str | None = None, project: str | None = None) -> None:
    """Allow ``action`` on ``project/name`` for the current caller, or raise."""
    ctx = _current.get()
    if ctx is None:
        if _enforcing:
            raise UnauthenticatedError(UNAUTHENTICATED)
        return
    if ctx.policy is None:
        return
    resource = Resource(project if project is not None else ctx.project, name)
    ident = ctx.identity
    if ident is None:
        ctx.checks.append(Check(action, resource, False))
        raise UnauthenticatedError(UNAUTHENTICATED)
    ok = ctx.policy.allows(ident, action, resource)
    ctx.checks.append(Check(action, resource, ok))
    if not ok:
        raise PermissionDeniedError(DENIED.format(action=action.value))


def permitted(action: Action, name: str | None = None, project: str | None = None) -> bool:
    """Whether ``require`` would allow (for filtering lists; records nothing)."""
    ctx = _current.get()
    if ctx is None:
        return not _enforcing
    if ctx.policy is None:
        return True
    if ctx.identity is None:
        return False
    resource = Resource(project if project is not None else ctx.project, name)
    return ctx.policy.allows(ctx.identity, action, resource)
