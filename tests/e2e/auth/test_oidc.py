"""OIDC against a JWKS served by the test: claims, audience, leeway, key rotation, one fetch
for many waiters, and no network call when the key (or the token) is cached."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import Iterator

import pytest
from tests.e2e.auth.jwks_server import Issuer

from tureen.auth.oidc import OIDCVerifier
from tureen.auth.settings import OIDCSettings


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    i = Issuer()
    yield i
    i.close()


def verifier(issuer: Issuer, **kw: object) -> OIDCVerifier:
    opts: dict[str, object] = {"issuer": issuer.url, "audience": "tureen",
                               "jwks_min_refresh_seconds": 0.0, **kw}
    return OIDCVerifier(OIDCSettings.model_validate(opts))


async def test_valid_token_gives_roles_from_the_claim_path(issuer: Issuer) -> None:
    v = verifier(issuer, role_claim="resource_access.tureen.roles",
                 role_map={"ml-predict": "predictor"}, project_claim="projects")
    tok = issuer.token(roles=(), resource_access={"tureen": {"roles": ["ml-predict", "reader"]}},
                       projects=["fraud_*"])
    ident = await v.authenticate(tok)
    assert ident is not None and ident.subject == "alice" and ident.source == "oidc"
    assert ident.roles == ("predictor", "reader") and ident.projects == ("fraud_*",)
    azure = verifier(issuer)  # default claim `roles`
    got = await azure.authenticate(issuer.token(roles=["writer"]))
    assert got is not None and got.roles == ("writer",)


async def test_bad_tokens_are_refused(issuer: Issuer) -> None:
    v = verifier(issuer, leeway_seconds=30)
    assert await v.authenticate(issuer.token(aud="other")) is None
    assert await v.authenticate(issuer.token(iss="http://evil")) is None
    assert await v.authenticate(issuer.token(exp_in=-120)) is None
    assert await v.authenticate(issuer.token(exp_in=-5)) is not None  # within the leeway
    # signed by a key the issuer does not publish
    issuer.add_key("rogue", publish=False)
    assert await v.authenticate(issuer.token("rogue")) is None
    # alg confusion: HS256 keyed with the public JWK, and alg none
    claims = {"iss": issuer.url, "aud": "tureen", "exp": 2**31, "roles": ["admin"]}
    body = b64(json.dumps(claims).encode())
    head = b64(b'{"alg":"HS256","kid":"k1","typ":"JWT"}')
    pub = json.dumps(issuer.jwk("k1")).encode()
    sig = b64(hmac.new(pub, f"{head}.{body}".encode(), hashlib.sha256).digest())
    assert await v.authenticate(f"{head}.{body}.{sig}") is None
    none = b64(b'{"alg":"none","kid":"k1"}')
    assert await v.authenticate(f"{none}.{body}.") is None
    assert await v.authenticate("not.a.jwt") is None
    assert await v.authenticate("x" * 20000) is None


async def test_cached_key_and_token_make_no_network_call(issuer: Issuer) -> None:
    v = verifier(issuer)
    assert await v.authenticate(issuer.token()) is not None
    assert issuer.fetches == 1
    for _ in range(5):
        assert await v.authenticate(issuer.token(sub=f"u{_}")) is not None  # new tokens
    tok = issuer.token()
    assert await v.authenticate(tok) is not None
    assert v.cached(tok) is not None  # the request path's fast lane
    assert issuer.fetches == 1


async def test_rotation_refetches_once_for_many_waiters(issuer: Issuer) -> None:
    v = verifier(issuer)
    assert await v.authenticate(issuer.token()) is not None
    issuer.add_key("k2")
    issuer.delay = 0.3
    tokens = [issuer.token("k2", sub=f"u{i}") for i in range(20)]
    got = await asyncio.gather(*(v.authenticate(t) for t in tokens))
    assert all(g is not None for g in got)
    assert issuer.fetches == 2  # one shared fetch for 20 requests with the new kid


async def test_unknown_kids_cannot_hammer_the_issuer(issuer: Issuer) -> None:
    v = verifier(issuer, jwks_min_refresh_seconds=60)
    assert await v.authenticate(issuer.token()) is not None
    for i in range(10):
        issuer.add_key(f"forged{i}", publish=False)
        assert await v.authenticate(issuer.token(f"forged{i}")) is None
    assert issuer.fetches == 1


async def test_explicit_jwks_url_and_unreachable_issuer(issuer: Issuer) -> None:
    v = verifier(issuer, jwks_url=issuer.url + "/jwks")
    assert await v.authenticate(issuer.token()) is not None
    dead = OIDCVerifier(OIDCSettings(issuer="http://127.0.0.1:9", audience="tureen",
                                     timeout_seconds=1))
    assert await dead.authenticate(issuer.token(iss="http://127.0.0.1:9")) is None
