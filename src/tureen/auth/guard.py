"""The authentication and audit concerns of the guard chain, for any transport.

Per request a transport (through the guard chain) calls ``begin`` with the route's kind and
the request's credentials; it binds a ``RequestAuth`` the services check with ``require``.
After the handler, ``finish`` records the audited checks with their outcome. A route kind is
``public`` (health probes when ``open_health``, ``/metrics`` when ``open_metrics``) or
``protected`` (everything else: credentials required before any service is reached).
"""

from __future__ import annotations

import contextvars
import logging
from dataclasses import dataclass

from tureen.auth import context
from tureen.auth.audit import AuditLog, event
from tureen.auth.authn import Authenticator, Credentials, Pending
from tureen.auth.context import UNAUTHENTICATED, RequestAuth
from tureen.auth.policy import Action, Policy
from tureen.errors import PermissionDeniedError, UnauthenticatedError

log = logging.getLogger(__name__)

#: a route kind: decides whether credentials are needed before a service is reached
HEALTH, METRICS, PROTECTED = "health", "metrics", "protected"
WRITES = frozenset({Action.WRITE_FEATURES, Action.DEPLOY, Action.MODEL_CONTROL, Action.ADMIN})


@dataclass
class Bound:
    ctx: RequestAuth
    token: contextvars.Token[RequestAuth | None]


class AuthGuard:
    """``authenticator`` None: auth is off (every request is bound with no policy)."""

    def __init__(
        self,
        authenticator: Authenticator | None,
        *,
        project: str | None = None,
        audit: AuditLog | None = None,
        open_health: bool = True,
        open_metrics: bool = True,
    ) -> None:
        self.authenticator = authenticator
        self.policy: Policy | None = authenticator.policy if authenticator else None
        self.project = project
        self.audit = audit
        self.open = {HEALTH: open_health, METRICS: open_metrics, PROTECTED: False}
        if authenticator is not None:
            context.enforce()

    @property
    def enabled(self) -> bool:
        return self.authenticator is not None

    def public(self, kind: str) -> bool:
        return self.open.get(kind, False)

    def _bind(self, ctx: RequestAuth) -> Bound:
        return Bound(ctx, context.bind(ctx))

    def begin(self, kind: str, creds: Credentials) -> Bound | None:
        """Bind the request's caller; None when an OIDC key must be awaited (``begin_async``).
        Raises UnauthenticatedError for invalid credentials, or none on a protected route."""
        a = self.authenticator
        if a is None:
            return self._bind(RequestAuth(None, None, self.project))
        ident = a.quick(creds)
        if isinstance(ident, Pending):
            return None
        if ident is None and not self.open.get(kind, False):
            raise UnauthenticatedError(UNAUTHENTICATED)
        return self._bind(RequestAuth(self.policy, ident, self.project))

    async def begin_async(self, kind: str, creds: Credentials) -> Bound:
        bound = self.begin(kind, creds)
        if bound is not None:
            return bound
        assert self.authenticator is not None
        ident = await self.authenticator.authenticate(creds)
        if ident is None and not self.open.get(kind, False):
            raise UnauthenticatedError(UNAUTHENTICATED)
        return self._bind(RequestAuth(self.policy, ident, self.project))

    def finish(self, bound: Bound | None, *, request_id: str, route: str, status: int,
               error: BaseException | None = None, peer: str | None = None) -> None:
        """Unbind and write the audited checks of the request (or its refusal)."""
        if bound is not None:
            context.unbind(bound.token)
        audit = self.audit
        if audit is None:
            return
        ctx = bound.ctx if bound is not None else None
        ident = ctx.identity if ctx is not None else None
        subject = ident.subject if ident else "-"
        source = ident.source if ident else "-"
        token_id = ident.token_id if ident else None
        if ctx is None or (isinstance(error, UnauthenticatedError) and not ctx.checks):
            if isinstance(error, UnauthenticatedError):
                audit.record(event(request_id=request_id, subject=subject, source=source,
                                   token_id=token_id, action="authenticate", resource=route,
                                   outcome="unauthenticated", status=status, route=route,
                                   peer=peer))
            return
        for chk in ctx.checks:
            if chk.action not in WRITES and not audit.reads:
                continue
            if not chk.allowed:
                outcome = ("unauthenticated" if isinstance(error, UnauthenticatedError)
                           else "denied")
            elif isinstance(error, PermissionDeniedError | UnauthenticatedError):
                outcome = "denied"
            else:
                outcome = "ok" if status < 400 and error is None else "error"
            audit.record(event(request_id=request_id, subject=subject, source=source,
                               token_id=token_id, action=chk.action.value,
                               resource=str(chk.resource), outcome=outcome, status=status,
                               route=route, peer=peer))

    def close(self) -> None:
        if self.authenticator is not None:
            self.authenticator.close()
        if self.audit is not None:
            self.audit.close()
