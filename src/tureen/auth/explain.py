"""``tureen auth check``: why a token may or may not do an action on a resource.

Unlike a server answering a network caller, this runs for the repo's owner, so it says
exactly why a token is refused (unknown id, wrong secret, revoked, expired, bad JWT).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from datetime import UTC, datetime

from tureen.auth.oidc import OIDCVerifier
from tureen.auth.policy import Action, Decision, Identity, Policy, Resource
from tureen.auth.settings import AuthSettings
from tureen.auth.tokens import _TOKEN, SECTION, TokenRecord
from tureen.registry.service import Registry


def _token_identity(token: str, registry: Registry | None) -> tuple[Identity | None, str]:
    m = _TOKEN.match(token)
    if m is None:
        return None, "not a tureen token (tureen_<id>_<secret>)"
    if registry is None:
        return None, "no registry to check tureen tokens against (pass --repo)"
    raw = (registry.snapshot(fresh=True).extra.get(SECTION) or {}).get(m.group(1))
    if raw is None:
        return None, f"token id {m.group(1)} is not in the registry"
    rec = TokenRecord.from_dict(raw)
    digest = hashlib.sha256(m.group(2).encode()).hexdigest()
    if not hmac.compare_digest(digest, rec.secret_sha256):
        return None, f"token id {rec.id} ({rec.name}) exists but the secret does not match"
    state = rec.state(datetime.now(UTC))
    if state != "active":
        when = rec.revoked_at if state == "revoked" else rec.expires_at
        return None, f"token {rec.id} ({rec.name}) is {state} since {when}"
    ident = Identity(subject=rec.name, source="token", roles=rec.roles, projects=rec.projects,
                     names=rec.names, expires_at=rec.expires_at, token_id=rec.id)
    return ident, f"token {rec.id} ({rec.name}) is valid" + (
        f" until {rec.expires_at.isoformat()}" if rec.expires_at else " (no expiry)")


def explain(
    token: str, action: Action, resource: Resource, *, registry: Registry | None,
    settings: AuthSettings | None, project: str | None = None,
) -> Decision:
    policy = Policy(settings.roles if settings else None)
    if resource.project is None and project is not None:
        resource = Resource(project, resource.name)
    ident: Identity | None
    if token.startswith("tureen_"):
        ident, why = _token_identity(token, registry)
    elif settings is not None and settings.oidc is not None:
        ident = asyncio.run(OIDCVerifier(settings.oidc).authenticate(token))
        why = ("a valid JWT from " + settings.oidc.issuer) if ident else (
            "not a valid JWT for issuer " + settings.oidc.issuer + " and audience "
            + str(settings.oidc.audience) + " (signature, expiry, issuer or audience)")
    else:
        ident, why = None, "not a tureen token, and OIDC is not configured"
    if ident is None:
        return Decision(False, (f"authentication fails: {why} (a server answers 401)",))
    d = policy.decide(ident, action, resource)
    status = "the server answers" + (" as usual" if d.allowed else " 403")
    return Decision(d.allowed, (why, *d.reasons, status))
