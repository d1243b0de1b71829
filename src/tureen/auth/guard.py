"""Authentication and audit for a server that does not run the guard chain (the standalone
console): the same authenticator, authorizer and audit as ``tureen.auth.chain``, driven by
hand around each request.

    bound = await guard.begin_async(PROTECTED, Credentials(authorization=...))
    try:
        ...                       # services call authorize(...) as everywhere
    finally:
        guard.finish(bound, request_id=rid, route="GET /x", status=200)
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from tureen.auth.access import CallerContext, current_context, enforce
from tureen.auth.audit import AuditLog
from tureen.auth.authn import Authenticator, Credentials, Pending
from tureen.auth.chain import UNAUTHENTICATED, AuditGuard, PolicyAuthorizer
from tureen.auth.policy import Identity
from tureen.errors import UnauthenticatedError

#: route kinds: whether credentials are needed before a view runs
HEALTH, METRICS, PROTECTED = "health", "metrics", "protected"


@dataclass
class Bound:
    ctx: CallerContext
    token: contextvars.Token[object]


class AuthGuard:
    def __init__(self, authenticator: Authenticator, *, project: str | None = None,
                 audit: AuditLog | None = None, open_health: bool = True,
                 open_metrics: bool = True) -> None:
        self.authenticator = authenticator
        self.authorizer = PolicyAuthorizer(authenticator.policy, project)
        self.audit = AuditGuard(audit, project) if audit is not None else None
        self.open = {HEALTH: open_health, METRICS: open_metrics, PROTECTED: False}
        enforce()

    def _bind(self, ident: Identity | None, kind: str) -> Bound:
        if ident is None and not self.open.get(kind, False):
            raise UnauthenticatedError(UNAUTHENTICATED)
        ctx = CallerContext("-", "http", kind, ident, self.authorizer)
        return Bound(ctx, current_context.set(ctx))

    def begin(self, kind: str, creds: Credentials) -> Bound | None:
        """Bind the caller; None when an OIDC key must be awaited (use ``begin_async``).
        Raises UnauthenticatedError for invalid credentials, or none on a protected kind."""
        ident = self.authenticator.quick(creds)
        if isinstance(ident, Pending):
            return None
        return self._bind(ident, kind)

    async def begin_async(self, kind: str, creds: Credentials) -> Bound:
        return self._bind(await self.authenticator.authenticate(creds), kind)

    def finish(self, bound: Bound | None, *, request_id: str, route: str, status: int,
               error: BaseException | None = None, peer: str | None = None) -> None:
        """Unbind the caller and write the audit event of the request."""
        if bound is not None:
            current_context.reset(bound.token)
        if self.audit is None:
            return
        ctx = bound.ctx if bound is not None else CallerContext(
            request_id, "http", route, None, self.authorizer)
        ctx.request_id, ctx.operation, ctx.peer = request_id, route, peer
        if error is None and status >= 400:
            error = UnauthenticatedError("refused") if status == 401 else None
        self.audit.done(ctx, error)  # type: ignore[arg-type]

    def close(self) -> None:
        self.authenticator.close()
