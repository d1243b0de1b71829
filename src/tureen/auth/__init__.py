"""Authentication, authorization, TLS and the audit log for every tureen server.

Modules: ``policy`` (actions, roles, identities, decisions), ``context`` (the caller of the
current request; ``require`` — what services check), ``tokens`` (API tokens in the registry),
``oidc`` (JWT verification with a JWKS cache), ``mtls`` (certificate subject → identity),
``authn`` (credentials → identity), ``guard`` (the guard-chain concern), ``audit`` (the audit
log), ``tls`` (server/client contexts and reload), ``devcert`` (local certificates),
``settings`` (``serving.auth``, ``serving.tls``, ``serving.audit``).
"""

from tureen.auth.context import current_identity, permitted, require
from tureen.auth.policy import Action, Decision, Identity, Policy, Resource

__all__ = ["Action", "Decision", "Identity", "Policy", "Resource", "current_identity",
           "permitted", "require"]
