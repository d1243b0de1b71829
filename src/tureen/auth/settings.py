"""``serving.auth``, ``serving.tls`` and ``serving.audit`` in ``tureen.yaml``.

Example::

    serving:
      auth:
        type: [token, oidc]              # token | oidc | mtls, or a list to combine
        roles: {analyst: [read_features, predict]}
        open_health: true                # /v2/health/*, /health, GET / without credentials
        open_metrics: false              # /metrics needs a token with any role
        oidc:
          issuer: https://idp.example.com/realms/ml
          audience: tureen
          role_claim: resource_access.tureen.roles
        mtls:
          subjects:
            - {match: "CN=transformer-*,O=acme", roles: [predictor]}
        service_token_env: TUREEN_SERVICE_TOKEN   # internal calls use this token if set
      tls: {cert: certs/server.pem, key: certs/server-key.pem, client_ca: certs/ca.pem}
      audit: {sink: data/audit_log, reads: false}

Every model rejects unknown keys.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

AuthType = Literal["token", "oidc", "mtls"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OIDCSettings(_Strict):
    issuer: str = Field(description="The issuer URL; must equal the tokens' `iss` claim.")
    jwks_url: str | None = Field(
        default=None, description="JWKS URL; default: discovered from "
        "<issuer>/.well-known/openid-configuration.")
    audience: str | list[str] = Field(
        description="Accepted `aud` value(s); a token for another audience is refused (401).")
    role_claim: str = Field(
        default="roles", description="Dot path of the roles claim, e.g. `roles` (Azure AD) "
        "or `resource_access.<client>.roles` (Keycloak).")
    role_map: dict[str, str] = Field(
        default_factory=dict, description="Identity-provider role → tureen role; roles not "
        "listed are used as they are.")
    subject_claim: str = Field(default="sub", description="Claim naming the caller in logs.")
    project_claim: str | None = Field(
        default=None, description="Dot path of a claim listing project patterns (scope).")
    names_claim: str | None = Field(
        default=None, description="Dot path of a claim listing deployment/model name patterns.")
    algorithms: list[str] = Field(
        default_factory=lambda: ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"],
        description="Accepted signature algorithms (never `none` or HMAC).")
    leeway_seconds: float = Field(default=30.0, ge=0, le=600,
                                  description="Clock skew allowed on exp/nbf/iat.")
    jwks_max_age_seconds: float = Field(
        default=3600.0, ge=10, description="Refresh the cached JWKS in the background after.")
    jwks_min_refresh_seconds: float = Field(
        default=10.0, ge=0, description="An unknown `kid` refetches the JWKS at most this "
        "often (bounds what forged tokens can make the server fetch).")
    ca_file: str | None = Field(default=None,
                                description="CA bundle to verify the JWKS server's certificate.")
    timeout_seconds: float = Field(default=5.0, gt=0)

    @field_validator("algorithms")
    @classmethod
    def _no_symmetric(cls, v: list[str]) -> list[str]:
        bad = [a for a in v if a.lower() == "none" or a.upper().startswith("HS")]
        if bad:
            raise ValueError(f"{bad} cannot verify tokens from an issuer's public keys")
        return v


class MTLSRule(_Strict):
    match: str = Field(description="Pattern over the certificate subject, RFC 4514 order "
                       "`CN=...,O=...` (shell-style `*`), or `CN=name` alone.")
    roles: list[str] = Field(min_length=1)
    projects: list[str] = Field(default_factory=list)
    names: list[str] = Field(default_factory=list)


class MTLSSettings(_Strict):
    subjects: list[MTLSRule] = Field(
        default_factory=list, description="First matching rule wins; a certificate that "
        "matches none is authenticated but has no role (403).")


class AuthSettings(_Strict):
    type: list[AuthType] = Field(description="token | oidc | mtls, or a list to combine.")
    roles: dict[str, list[str]] = Field(default_factory=dict,
                                        description="Custom roles: name → actions.")
    open_health: bool = Field(default=True,
                              description="Health routes answer without credentials.")
    open_metrics: bool = Field(default=True, description="/metrics answers without credentials.")
    oidc: OIDCSettings | None = None
    mtls: MTLSSettings = Field(default_factory=MTLSSettings)
    service_token_env: str = Field(
        default="TUREEN_SERVICE_TOKEN", description="Environment variable holding the token "
        "internal calls send when they do not forward the caller's own credentials.")

    @field_validator("type", mode="before")
    @classmethod
    def _one_or_many(cls, v: object) -> object:
        return [v] if isinstance(v, str) else v


class TLSSettings(_Strict):
    cert: str = Field(description="PEM certificate chain of the server.")
    key: str = Field(description="PEM private key of the server.")
    client_ca: str | None = Field(
        default=None, description="CA bundle; when set, clients must present a certificate "
        "it signed (mutual TLS).")
    reload: bool = Field(default=True, description="Reload the pair on SIGHUP and when the "
                         "files change; open connections keep their session.")


class AuditSettings(_Strict):
    sink: str = Field(default="data/audit_log", description="A folder (Parquet dataset, "
                      "relative to the repo) or kafka://HOST:PORT[?topic=NAME].")
    reads: bool = Field(default=False, description="Also record reads and predictions.")
    queue_size: int = Field(default=10_000, ge=100,
                            description="Events waiting to be written; beyond, oldest drop.")

