"""The auth concern of the guard chain: 401 before any service for missing or bad credentials,
open health routes, bound identities for ``require``, and audit events with outcomes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tureen.auth import context
from tureen.auth.audit import AuditLog, ParquetAuditSink, read_events
from tureen.auth.authn import Authenticator, Credentials, bearer
from tureen.auth.guard import HEALTH, METRICS, PROTECTED, AuthGuard
from tureen.auth.policy import Action
from tureen.auth.settings import AuthSettings
from tureen.auth.tokens import Tokens
from tureen.errors import ConfigError, PermissionDeniedError, UnauthenticatedError
from tureen.registry.file_store import FileRegistryStore
from tureen.registry.service import Registry


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(FileRegistryStore(tmp_path / "registry.json"), "proj")


@pytest.fixture(autouse=True)
def _not_enforcing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(context, "_enforcing", False)


def guard(registry: Registry, tmp_path: Path, **kw: bool) -> AuthGuard:
    a = Authenticator(AuthSettings(type=["token"]), registry)
    audit = AuditLog(ParquetAuditSink(tmp_path / "audit"), flush_seconds=0.05)
    return AuthGuard(a, project="proj", audit=audit, **kw)


def test_bearer_parsing() -> None:
    assert bearer("Bearer abc") == "abc" and bearer("bearer  abc ") == "abc"
    for bad in ("Basic dXNlcjpwYXNz", "Bearer", "abc", "Bearer " + "x" * 20000):
        with pytest.raises(UnauthenticatedError):
            bearer(bad)


def test_credentials_decide_before_any_service(registry: Registry, tmp_path: Path) -> None:
    tok, _ = Tokens(registry).create(["writer"], name="w")
    g = guard(registry, tmp_path, open_metrics=False)
    with pytest.raises(UnauthenticatedError):
        g.begin(PROTECTED, Credentials())
    with pytest.raises(UnauthenticatedError):
        g.begin(METRICS, Credentials())
    open_health = g.begin(HEALTH, Credentials())
    assert open_health is not None and open_health.ctx.identity is None
    g.finish(open_health, request_id="h", route="GET /v2/health/live", status=200)
    # a bad token is refused even on an open route
    with pytest.raises(UnauthenticatedError):
        g.begin(HEALTH, Credentials("Bearer tureen_000000000000_" + "A" * 43))
    b = g.begin(PROTECTED, Credentials(f"Bearer {tok}"))
    assert b is not None and context.current_identity() is not None
    context.require(Action.WRITE_FEATURES)
    with pytest.raises(PermissionDeniedError) as denied:
        context.require(Action.DEPLOY, name="fraud")
    g.finish(b, request_id="r1", route="POST /push", status=403, error=denied.value)
    assert context.current() is None
    try:
        g.begin(PROTECTED, Credentials("Bearer nope"))
    except UnauthenticatedError as exc:
        g.finish(None, request_id="r2", route="POST /push", status=401, error=exc)
    g.close()
    rows = read_events(str(tmp_path / "audit"))
    assert [(r["request_id"], r["action"], r["outcome"], r["subject"]) for r in rows] == [
        ("r1", "write_features", "denied", "w"),
        ("r1", "deploy", "denied", "w"),
        ("r2", "authenticate", "unauthenticated", "-"),
    ]
    assert rows[1]["resource"] == "proj/fraud" and rows[0]["token_id"]


def test_reads_are_audited_only_when_asked(registry: Registry, tmp_path: Path) -> None:
    tok, _ = Tokens(registry).create(["writer"])
    g = guard(registry, tmp_path)
    b = g.begin(PROTECTED, Credentials(f"Bearer {tok}"))
    context.require(Action.READ_FEATURES)
    context.require(Action.WRITE_FEATURES)
    g.finish(b, request_id="r", route="POST /push", status=200)
    g.close()
    assert [(r["action"], r["outcome"]) for r in read_events(str(tmp_path / "audit"))] == [
        ("write_features", "ok")]


def test_auth_off_binds_no_policy_and_config_errors(registry: Registry) -> None:
    off = AuthGuard(None)
    b = off.begin(PROTECTED, Credentials())
    context.require(Action.ADMIN)
    off.finish(b, request_id="r", route="/", status=200)
    assert not context.enforcing()
    with pytest.raises(ConfigError, match="--repo"):
        Authenticator(AuthSettings(type=["token"]), None)
    with pytest.raises(ConfigError, match=r"serving\.auth\.oidc"):
        Authenticator(AuthSettings(type=["oidc"]), registry)
