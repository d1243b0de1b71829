"""The auth concerns of the guard chain, and the one function every server command calls.

    security = build_security(auth=..., tls=..., audit=..., host=..., insecure=...,
                              registry=store.registry, project=store.project)
    ModelServer(..., security=security)

- ``AuthenticationGuard``: credentials (``Authorization`` header or gRPC metadata, the
  verified client certificate) → ``ctx.identity``. Health probes (``/v2/health/*``, Feast
  ``/health``, ``GET /``, gRPC ``ServerLive``/``ServerReady``) answer without credentials when
  ``open_health``, ``/metrics`` when ``open_metrics``; every other operation needs valid
  credentials before any handler runs. Credentials that are present but not valid are refused
  (401) on every operation, open ones included.
- ``PolicyAuthorizer``: decides the ``authorize(action, resource)`` calls the services make
  with ``tureen.auth.policy.Policy`` (403 when the identity's roles or scope do not allow).
- ``AuditGuard`` (first in the chain, so it sees refusals by the guards after it): records
  authenticated writes, deploys, model control and admin actions (and reads with
  ``audit.reads``), and refused credentials.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tureen.auth.access import enforce
from tureen.auth.audit import AuditLog, event, sink_from_url
from tureen.auth.authn import INVALID, Authenticator, Credentials, Pending
from tureen.auth.bind import check_bind
from tureen.auth.mtls import subject_of
from tureen.auth.policy import Action, Identity, Policy, Resource
from tureen.auth.settings import AuditSettings, AuthSettings, TLSSettings
from tureen.auth.tls import CertReloader, server_context
from tureen.auth.tokens import UNKNOWN
from tureen.error_codes import codes_of
from tureen.errors import PermissionDeniedError, UnauthenticatedError
from tureen.registry.service import Registry

if TYPE_CHECKING:
    from tureen.serving.context import RequestContext

log = logging.getLogger(__name__)

_G = "/inference.GRPCInferenceService/"
HEALTH = frozenset({
    "GET /", "HEAD /", "GET /v2/health/live", "GET /v2/health/ready", "HEAD /v2/health/live",
    "HEAD /v2/health/ready", "GET /health", "HEAD /health", _G + "ServerLive", _G + "ServerReady",
})
METRICS = frozenset({"GET /metrics", "HEAD /metrics"})
AUDITED = frozenset({Action.WRITE_FEATURES, Action.DEPLOY, Action.MODEL_CONTROL, Action.ADMIN})
CHALLENGE = ("www-authenticate", 'Bearer realm="tureen"')
UNAUTHENTICATED = ("authentication required: send `Authorization: Bearer <token>` (gRPC: "
                   "`authorization` metadata) with a valid, unexpired token.")
DENIED = ("the credentials presented do not allow {action} on this resource; ask an admin for "
          "a token with a role that grants it (`tureen auth check` explains a decision).")


def _unauthenticated(ctx: RequestContext, message: str = UNAUTHENTICATED) -> UnauthenticatedError:
    if CHALLENGE not in ctx.response_headers:
        ctx.response_headers.append(CHALLENGE)
    return UnauthenticatedError(message)


class AuthenticationGuard:
    """``self_authenticating``: path prefixes of apps that authenticate their own requests
    (the console mounted at ``/console/``: its sign-in page and session cookie); the chain
    lets them in without credentials — still refusing invalid ones — and they decide."""

    #: ``done`` does nothing (the chain skips it)
    done_is_noop = True

    def __init__(self, authenticator: Authenticator, *, open_health: bool = True,
                 open_metrics: bool = True, self_authenticating: tuple[str, ...] = ()) -> None:
        self.authenticator = authenticator
        self.tokens = authenticator.tokens
        self.open: frozenset[str] = (HEALTH if open_health else frozenset()) | (
            METRICS if open_metrics else frozenset())
        self.self_authenticating = tuple(f" {p}" for p in self_authenticating)

    @staticmethod
    def credentials(ctx: RequestContext) -> Credentials:
        peer = subject_of(dict(ctx.peer_cert)) if ctx.peer_cert else None
        return Credentials(ctx.headers.get("authorization"), peer)

    def check(self, ctx: RequestContext) -> Awaitable[None] | None:
        tokens = self.tokens
        if tokens is not None:  # a value verified before: no parsing (``identify`` does the same)
            authorization = ctx.headers.get("authorization")
            if authorization is not None:
                known = tokens.by_header(authorization)
                if known is not UNKNOWN:
                    if known is None:
                        raise _unauthenticated(ctx, INVALID)
                    ctx.identity = known  # type: ignore[assignment]
                    return None
        cert = ctx.peer_cert
        try:
            ident = self.authenticator.identify(
                ctx.headers.get("authorization"), subject_of(dict(cert)) if cert else None,
                ctx.bearer)
        except UnauthenticatedError as exc:
            raise _unauthenticated(ctx, str(exc)) from None
        if isinstance(ident, Identity):
            ctx.identity = ident
        elif isinstance(ident, Pending):
            return self._slow(ctx, self.credentials(ctx))
        else:
            self._set(ctx, ident)
        return None

    async def _slow(self, ctx: RequestContext, creds: Credentials) -> None:
        try:
            ident = await self.authenticator.authenticate(creds)
        except UnauthenticatedError as exc:
            raise _unauthenticated(ctx, str(exc)) from None
        self._set(ctx, ident)

    def _set(self, ctx: RequestContext, ident: Identity | None) -> None:
        if ident is None and ctx.operation not in self.open and not (
                self.self_authenticating
                and any(p in ctx.operation for p in self.self_authenticating)):
            raise _unauthenticated(ctx)
        ctx.identity = ident

    def done(self, ctx: RequestContext, error: BaseException | None) -> None:
        return None


class PolicyAuthorizer:
    """Decides ``authorize(action, resource)``; ``resource`` is ``PROJECT``, ``PROJECT/NAME``
    or ``/NAME`` (no project given: the server's own project).

    A decision depends only on the identity (immutable), the action, the resource and the
    policy (fixed at start), so it is remembered per identity object — the same object the
    authenticator returns for a token or JWT until the registry snapshot or the JWT cache
    changes (revocation and expiry are checked by authentication on every request)."""

    #: decisions kept; past it the memo starts afresh
    MEMO = 4096

    def __init__(self, policy: Policy, project: str | None) -> None:
        self.policy = policy
        self.project = project
        #: (id(identity), action, resource) -> (identity, allowed); the identity is kept so
        #: its id is not reused while the entry lives
        self._decided: dict[tuple[int, str, str], tuple[Identity, bool]] = {}

    def resource(self, resource: str) -> Resource:
        r = Resource.parse(resource)
        return r if r.project is not None else Resource(self.project, r.name)

    def check(self, ctx: RequestContext, action: str, resource: str) -> None:
        ident = ctx.identity
        if ident is None:
            raise _unauthenticated(ctx)
        key = (id(ident), action, resource)
        hit = self._decided.get(key)
        if hit is None or hit[0] is not ident:
            allowed = self.policy.allows(ident, Action(action), self.resource(resource))
            if len(self._decided) >= self.MEMO:
                self._decided.clear()
            self._decided[key] = hit = (ident, allowed)
        if not hit[1]:
            raise PermissionDeniedError(DENIED.format(action=action))


class AuditGuard:
    def __init__(self, audit: AuditLog, project: str | None) -> None:
        self.audit = audit
        self.project = project

    def check(self, ctx: RequestContext) -> None:
        return None

    def done(self, ctx: RequestContext, error: BaseException | None) -> None:
        action = ctx.action
        refused = isinstance(error, UnauthenticatedError)
        if action is None and not refused:
            return
        if (action is not None and not refused and Action(action) not in AUDITED
                and not self.audit.reads):
            return
        if refused:
            outcome = "unauthenticated"
        elif isinstance(error, PermissionDeniedError):
            outcome = "denied"
        else:
            outcome = "ok" if error is None else "error"
        ident = ctx.identity
        resource = ctx.operation
        if ctx.resource is not None:
            r = Resource.parse(ctx.resource)
            resource = str(r if r.project is not None else Resource(self.project, r.name))
        self.audit.record(event(
            request_id=ctx.request_id, subject=ident.subject if ident else "-",
            source=ident.source if ident else "-", token_id=ident.token_id if ident else None,
            action=action or "authenticate", resource=resource, outcome=outcome,
            status=codes_of(error)[0] if error is not None else 200,
            route=f"{ctx.transport} {ctx.operation}", peer=ctx.peer))


@dataclass
class Security:
    """What a server wires in: guards, the authorizer, TLS per transport, what to close."""

    guards: list[Any] = field(default_factory=list)
    authorizer: PolicyAuthorizer | None = None
    #: transport kind ("http", "grpc") → its server context (ALPN http/1.1 or h2)
    ssl: dict[str, ssl.SSLContext] = field(default_factory=dict)
    reloader: CertReloader | None = None
    authenticator: Authenticator | None = None
    audit: AuditLog | None = None
    tls: TLSSettings | None = None

    @property
    def enabled(self) -> bool:
        return self.authenticator is not None

    def close(self) -> None:
        if self.reloader is not None:
            self.reloader.stop()
        if self.authenticator is not None:
            self.authenticator.close()
        if self.audit is not None:
            self.audit.close()


def build_security(
    *,
    auth: AuthSettings | None,
    tls: TLSSettings | None,
    audit: AuditSettings | None,
    host: str,
    insecure: bool = False,
    registry: Registry | None = None,
    project: str | None = None,
    repo_path: Path | None = None,
    self_authenticating: tuple[str, ...] = (),
) -> Security:
    """Guards, authorizer and TLS for one server; refuses an unsafe bind (``check_bind``)."""
    warning = check_bind(host, auth=auth is not None, tls=tls is not None, insecure=insecure)
    if warning:
        log.warning("%s", warning)
    sec = Security(tls=tls)
    if tls is not None:
        # a client certificate is required unless bearer credentials are another way in
        require_cert = auth is None or auth.type == ["mtls"]
        sec.reloader = CertReloader(tls)
        sec.ssl["http"] = sec.reloader.add(server_context(tls, ["http/1.1"], require_cert))
        sec.ssl["grpc"] = sec.reloader.add(server_context(tls, ["h2"], require_cert))
    if auth is not None:
        authenticator = Authenticator(auth, registry)
        sec.authenticator = authenticator
        if audit is not None:
            sec.audit = AuditLog(sink_from_url(audit.sink, repo_path or Path(".")),
                                 audit.queue_size, reads=audit.reads)
            sec.guards.append(AuditGuard(sec.audit, project))
        sec.guards.append(AuthenticationGuard(authenticator, open_health=auth.open_health,
                                              open_metrics=auth.open_metrics,
                                              self_authenticating=self_authenticating))
        sec.authorizer = PolicyAuthorizer(authenticator.policy, project)
        enforce()
    return sec
