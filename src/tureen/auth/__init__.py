"""Authentication, authorization, TLS and the audit log for every tureen server.

Modules: ``policy`` (actions, roles, identities, decisions), ``tokens`` (API tokens in the
registry), ``oidc`` (JWT verification with a JWKS cache), ``mtls`` (certificate subject →
identity), ``authn`` (credentials → identity), ``chain`` (the guards and authorizer every
server wires into its guard chain, and TLS), ``audit`` (the audit log), ``tls`` (server and
client contexts, reload), ``bind`` (safe bind defaults), ``devcert`` (local certificates),
``settings`` (``serving.auth``, ``serving.tls``, ``serving.audit``).

Services authorize with ``tureen.serving.context.authorize(action, resource)``.
"""

from tureen.auth.policy import Action, Decision, Identity, Policy, Resource

__all__ = ["Action", "Decision", "Identity", "Policy", "Resource"]
