"""Authentication: credentials of a request → an ``Identity``, or ``UnauthenticatedError``.

Sources, as configured in ``serving.auth.type``: API tokens (``tureen_…``, checked against the
registry), OIDC JWTs (anything else that looks like a JWT) and mTLS client certificates (the
verified subject, when no bearer token is sent). No credentials at all is not an error here —
the route decides (health probes are open by default); credentials that are present but not
valid always are, on every route: a bad token never yields an answer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final

from tureen.auth.mtls import SubjectMapper
from tureen.auth.oidc import OIDCVerifier
from tureen.auth.policy import Identity, Policy
from tureen.auth.settings import AuthSettings
from tureen.auth.tokens import PREFIX as TOKEN_PREFIX
from tureen.auth.tokens import TokenAuthenticator, Unknown
from tureen.errors import ConfigError, UnauthenticatedError
from tureen.registry.service import Registry

INVALID = ("the credentials presented are not valid (unknown, expired or revoked token, or a "
           "token for another audience); get a new token and retry.")
MAX_AUTHORIZATION_CHARS = 16 * 1024


class Pending:
    pass


#: ``Authenticator.quick`` could not decide without awaiting (an OIDC key to fetch)
PENDING: Final = Pending()


@dataclass(frozen=True)
class Credentials:
    authorization: str | None = None  # the Authorization header / metadata value
    peer_subject: str | None = None   # verified client-certificate subject (mTLS)


def bearer(authorization: str) -> str:
    """The token of ``Bearer <token>``; any other scheme is invalid credentials."""
    if len(authorization) > MAX_AUTHORIZATION_CHARS:
        raise UnauthenticatedError(INVALID)
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise UnauthenticatedError(
            "the Authorization header must be `Bearer <token>`; other schemes are not accepted.")
    return token


class Authenticator:
    def __init__(
        self, settings: AuthSettings, registry: Registry | None = None,
        policy: Policy | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy or Policy(settings.roles)
        kinds = set(settings.type)
        if not kinds:
            raise ConfigError("serving.auth.type is empty: name token, oidc and/or mtls.")
        self.tokens: TokenAuthenticator | None = None
        if "token" in kinds:
            if registry is None:
                raise ConfigError(
                    "token auth checks tokens stored in a feature repo's registry: pass --repo "
                    "DIR (a folder with tureen.yaml), or use --auth oidc / mtls.")
            self.tokens = TokenAuthenticator(registry)
        self.oidc: OIDCVerifier | None = None
        if "oidc" in kinds:
            if settings.oidc is None:
                raise ConfigError("serving.auth.type includes oidc but serving.auth.oidc "
                                  "(issuer, audience) is not set.")
            self.oidc = OIDCVerifier(settings.oidc)
        self.mtls = SubjectMapper(settings.mtls.subjects) if "mtls" in kinds else None

    @property
    def accepts_bearer(self) -> bool:
        return self.tokens is not None or self.oidc is not None

    def quick(self, creds: Credentials) -> Identity | Pending | None:
        """Decide without awaiting when possible (tokens, cached JWTs, certificates)."""
        return self.identify(creds.authorization, creds.peer_subject)

    def identify(self, authorization: str | None, peer_subject: str | None,
                 token: str | None = None) -> Identity | Pending | None:
        """``quick`` on the parts of ``Credentials`` (the guard chain's per-request path).
        ``token``: ``authorization``'s bearer token when the caller has parsed it already
        (``RequestContext.bearer``, ``tureen.serving.context.bearer_token``); it is the token
        ``bearer`` reads whenever it is not None."""
        if authorization is not None:
            tokens = self.tokens
            if tokens is not None:  # a value whose token was verified: no parsing again
                known = tokens.by_header(authorization)
                if not isinstance(known, Unknown):
                    if known is None:
                        raise UnauthenticatedError(INVALID)
                    return known
            if token is None or len(authorization) > MAX_AUTHORIZATION_CHARS:
                token = bearer(authorization)
            if tokens is not None and token.startswith(TOKEN_PREFIX):
                ident = tokens.authenticate(token, authorization)
                if ident is None:
                    raise UnauthenticatedError(INVALID)
                return ident
            if self.oidc is not None:
                hit = self.oidc.cached(token)
                return hit if hit is not None else PENDING
            raise UnauthenticatedError(INVALID)
        if peer_subject is not None and self.mtls is not None:
            return self.mtls.identity(peer_subject)
        return None

    async def authenticate(self, creds: Credentials) -> Identity | None:
        got = self.quick(creds)
        if not isinstance(got, Pending):
            return got
        assert self.oidc is not None and creds.authorization is not None
        ident = await self.oidc.authenticate(bearer(creds.authorization))
        if ident is None:
            raise UnauthenticatedError(INVALID)
        return ident

    def close(self) -> None:
        if self.tokens is not None:
            self.tokens.flush()


def service_token(settings: AuthSettings | None) -> str | None:
    """The token internal calls send when they do not forward the caller's credentials."""
    if settings is None:
        return os.environ.get("TUREEN_SERVICE_TOKEN") or None
    return os.environ.get(settings.service_token_env) or None
