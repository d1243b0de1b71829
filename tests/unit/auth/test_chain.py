"""The auth concerns in the guard chain: 401 before any handler for missing or bad
credentials, open health routes, 403 from the services' authorize, audit events."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tureen.auth import access as context
from tureen.auth import tokens as tokens_module
from tureen.auth.audit import AuditLog, read_events
from tureen.auth.authn import bearer
from tureen.auth.chain import build_security
from tureen.auth.settings import AuditSettings, AuthSettings
from tureen.auth.tokens import Tokens
from tureen.errors import ConfigError, UnauthenticatedError
from tureen.registry.file_store import FileRegistryStore
from tureen.registry.service import Registry
from tureen.serving.context import Action, authorize, bearer_token
from tureen.serving.guard import GuardChain, RequestFailedError


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(FileRegistryStore(tmp_path / "registry.json"), "proj")


@pytest.fixture(autouse=True)
def _not_enforcing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(context, "_enforcing", False)


def chain_for(registry: Registry, tmp_path: Path, **auth: object) -> tuple[GuardChain, AuditLog]:
    sec = build_security(
        auth=AuthSettings.model_validate({"type": ["token"], **auth}), tls=None,
        audit=AuditSettings(sink=str(tmp_path / "audit")), host="127.0.0.1",
        registry=registry, project="proj", repo_path=tmp_path)
    assert sec.audit is not None
    sec.audit.flush_seconds = 0.05
    return GuardChain(sec.guards, sec.authorizer), sec.audit


async def call(chain: GuardChain, operation: str, token: str | None, action: str | None = None,
               resource: str = "proj") -> int:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    ctx = chain.context("http", operation, headers)

    async def handler() -> None:
        if action is not None:
            authorize(action, resource)

    try:
        await chain.run(ctx, handler)
    except RequestFailedError as f:
        if f.http == 401:
            assert ("www-authenticate", 'Bearer realm="tureen"') in f.headers
        return f.http
    return 200


def test_bearer_parsing() -> None:
    assert bearer("Bearer abc") == "abc" and bearer("bearer  abc ") == "abc"
    for bad in ("Basic dXNlcjpwYXNz", "Bearer", "abc", "Bearer " + "x" * 20000):
        with pytest.raises(UnauthenticatedError):
            bearer(bad)


async def test_statuses_and_audit(registry: Registry, tmp_path: Path) -> None:
    writer, _ = Tokens(registry).create(["writer"], name="w")
    chain, audit = chain_for(registry, tmp_path, open_metrics=False)
    bad = "tureen_000000000000_" + "A" * 43
    assert await call(chain, "POST /push", None, Action.WRITE_FEATURES) == 401
    assert await call(chain, "GET /metrics", None) == 401
    assert await call(chain, "GET /v2/health/ready", None) == 200  # open for probes
    assert await call(chain, "GET /v2/health/ready", bad) == 401  # a bad token never passes
    assert await call(chain, "POST /push", writer, Action.WRITE_FEATURES) == 200
    assert await call(chain, "POST /d", writer, Action.DEPLOY, "proj/fraud") == 403
    assert await call(chain, "POST /push", "Basic eDp5") == 401
    audit.close()
    rows = read_events(str(tmp_path / "audit"))
    got = [(r["action"], r["outcome"], r["subject"], r["status"]) for r in rows]
    assert got == [
        ("authenticate", "unauthenticated", "-", 401),
        ("authenticate", "unauthenticated", "-", 401),
        ("authenticate", "unauthenticated", "-", 401),
        ("write_features", "ok", "w", 200),
        ("deploy", "denied", "w", 403),
        ("authenticate", "unauthenticated", "-", 401),
    ]
    assert rows[4]["resource"] == "proj/fraud" and rows[3]["token_id"]


async def test_reads_are_audited_only_when_asked(registry: Registry, tmp_path: Path) -> None:
    tok, _ = Tokens(registry).create(["writer"])
    chain, audit = chain_for(registry, tmp_path)
    assert await call(chain, "POST /get-online-features", tok, Action.READ_FEATURES) == 200
    audit.close()
    assert read_events(str(tmp_path / "audit")) == []


def test_config_errors_name_what_to_do(registry: Registry) -> None:
    with pytest.raises(ConfigError, match="--repo"):
        build_security(auth=AuthSettings(type=["token"]), tls=None, audit=None,
                       host="127.0.0.1")
    with pytest.raises(ConfigError, match=r"serving\.auth\.oidc"):
        build_security(auth=AuthSettings(type=["oidc"]), tls=None, audit=None,
                       host="127.0.0.1", registry=registry)
    with pytest.raises(ConfigError, match="--insecure"):
        build_security(auth=None, tls=None, audit=None, host="0.0.0.0")


SCHEMES = ["Bearer", "bearer", "BEARER", "Basic", "Bearerx", " Bearer", "Bear"]


@given(st.one_of(st.none(), st.text(max_size=30), st.builds(
    lambda s, sep, t: s + sep + t, st.sampled_from(SCHEMES),
    st.sampled_from([" ", "  ", "\t", ""]), st.text(max_size=20))))
def test_the_context_reads_the_token_bearer_reads(authorization: str | None) -> None:
    """The guard hands ``RequestContext.bearer`` to the authenticator instead of parsing the
    header again: wherever it is a token, ``bearer`` reads the same one."""
    token = bearer_token(authorization)
    if token is not None:
        assert authorization is not None and bearer(authorization) == token


async def test_a_revoked_token_is_refused_once_the_registry_is_reread(
        registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tok, rec = Tokens(registry).create(["writer"], name="soon-revoked")
    chain, audit = chain_for(registry, tmp_path)
    for _ in range(3):  # verified once, then from the authenticator's memo
        assert await call(chain, "POST /push", tok, Action.WRITE_FEATURES) == 200
    monkeypatch.setattr(context, "_enforcing", False)  # the admin, in process
    Tokens(registry).revoke(rec.id)
    registry.snapshot(fresh=True)  # the cache TTL has passed
    assert await call(chain, "POST /push", tok, Action.WRITE_FEATURES) == 401
    audit.close()


async def test_a_remembered_authorization_value_is_refused_once_its_token_expires(
        registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The authenticator remembers a verified ``Authorization`` value (exact match) so it is
    not parsed again; expiry is still checked on every request."""
    tok, _ = Tokens(registry).create(["writer"], name="short", expires_in=timedelta(hours=1))
    chain, audit = chain_for(registry, tmp_path)
    for _ in range(3):
        assert await call(chain, "POST /push", tok, Action.WRITE_FEATURES) == 200
    later = time.time() + 7200
    monkeypatch.setattr(tokens_module.time, "time", lambda: later)
    assert await call(chain, "POST /push", tok, Action.WRITE_FEATURES) == 401
    audit.close()


async def test_only_the_exact_remembered_value_skips_parsing(
        registry: Registry, tmp_path: Path) -> None:
    tok, _ = Tokens(registry).create(["writer"], name="exact")
    chain, audit = chain_for(registry, tmp_path)
    assert await call(chain, "POST /push", tok, Action.WRITE_FEATURES) == 200
    for value, status in ((f"bearer {tok}", 200), (f"Bearer  {tok} ", 200),
                          (f"Basic {tok}", 401), (f"Bearer {tok[:-1]}x", 401),
                          (f"Bearer {tok}x", 401), (f"Bearer {tok}", 200)):
        ctx = chain.context("http", "POST /push", {"authorization": value})

        async def handler() -> None:
            authorize(Action.WRITE_FEATURES, "proj")

        try:
            await chain.run(ctx, handler)
            got = 200
        except RequestFailedError as f:
            got = f.http
        assert got == status, value
    audit.close()
