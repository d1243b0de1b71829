"""API tokens on every registry backend: stored hashed, checked, revoked, expired, last used."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.services import require_postgres

from tureen.auth.policy import Action, Policy, Resource
from tureen.auth.tokens import TokenAuthenticator, Tokens, parse_duration
from tureen.backends import load_backend
from tureen.config import BackendConfig
from tureen.errors import InvalidRequestError, NotFoundError
from tureen.registry.service import Registry

BACKENDS = {
    "file": lambda tmp: {"type": "file", "path": str(tmp / "registry.json")},
    "sqlite": lambda tmp: {"type": "sql", "url": "sqlite:///registry.db",
                           "cache_ttl_seconds": 0.3},
    "postgresql": lambda tmp: {"type": "sql", "url": require_postgres(),
                               "cache_ttl_seconds": 0.3},
}


class Repo:
    def __init__(self, config: dict[str, Any], tmp: Path, project: str) -> None:
        self.config, self.tmp, self.project = config, tmp, project

    def registry(self, ttl: float = 0.3) -> Registry:
        store = load_backend("registry", BackendConfig(**self.config), self.tmp, self.project)
        return Registry(store, self.project, cache_ttl_seconds=ttl)


@pytest.fixture(params=list(BACKENDS))
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Repo]:
    if request.param == "postgresql":
        request.applymarker(pytest.mark.services)
    r = Repo(BACKENDS[request.param](tmp_path), tmp_path, f"tok_{uuid.uuid4().hex[:12]}")
    yield r
    reg = r.registry()
    reg.delete()
    close = getattr(reg.store, "close", None)
    if close is not None:
        close()


def test_token_is_stored_hashed_and_authenticates(repo: Repo, tmp_path: Path) -> None:
    tokens = Tokens(repo.registry())
    plain, rec = tokens.create(["predictor"], names=["fraud-*"], name="ci-bot",
                               expires_in=timedelta(days=30))
    secret = plain.rsplit("_", 1)[1]
    doc = repo.registry().store.load()
    assert doc is not None and secret not in str(doc) and plain not in str(doc)
    if (tmp_path / "registry.json").exists():
        assert secret not in (tmp_path / "registry.json").read_text()
    auth = TokenAuthenticator(repo.registry())  # another process: a running server
    ident = auth.authenticate(plain)
    assert ident is not None and ident.subject == "ci-bot" and ident.roles == ("predictor",)
    assert ident.token_id == rec.id and ident.names == ("fraud-*",)
    assert Policy().allows(ident, Action.PREDICT, Resource(repo.project, "fraud-v1"))
    # wrong secret, malformed, oversized: no identity
    assert auth.authenticate(plain[:-1] + ("A" if plain[-1] != "A" else "B")) is None
    assert auth.authenticate("tureen_zzzz") is None
    assert auth.authenticate(plain + "x" * 300) is None


def test_revocation_reaches_a_running_server_within_the_cache_ttl(repo: Repo) -> None:
    admin = Tokens(repo.registry())
    plain, rec = admin.create(["reader"], name="to-revoke")
    server = TokenAuthenticator(repo.registry(ttl=0.3))
    assert server.authenticate(plain) is not None
    admin.revoke("to-revoke")
    deadline = time.monotonic() + 3.0
    while server.authenticate(plain) is not None:
        assert time.monotonic() < deadline, "revocation not seen within the cache TTL"
        time.sleep(0.05)
    assert [r.state(datetime.now(UTC)) for r in admin.list()] == ["revoked"]
    admin.revoke(rec.id)  # revoking twice is fine
    with pytest.raises(NotFoundError, match=r"no token with id or name 'to-revok'.*to-revoke"):
        admin.revoke("to-revok")


def test_new_token_works_at_once_and_expired_is_refused(repo: Repo) -> None:
    server = TokenAuthenticator(repo.registry(ttl=60.0))
    server._entries()  # the server has read the registry before the token existed
    plain, _ = Tokens(repo.registry()).create(["writer"])
    assert server.authenticate(plain) is not None  # unknown id → one fresh read
    time.sleep(1.05)  # an unknown id re-reads the registry at most once a second
    short, _ = Tokens(repo.registry()).create(["writer"], expires_in=timedelta(seconds=1))
    assert server.authenticate(short) is not None
    time.sleep(1.1)
    assert server.authenticate(short) is None


def test_last_used_is_recorded_beside_the_registry(repo: Repo) -> None:
    tokens = Tokens(repo.registry())
    plain, rec = tokens.create(["reader"])
    server = TokenAuthenticator(repo.registry())
    assert tokens.last_used() == {}
    before = datetime.now(UTC)
    assert server.authenticate(plain) is not None
    server.flush()
    used = datetime.fromisoformat(tokens.last_used()[rec.id])
    assert used >= before
    # a second server with an older time never moves it back
    other = TokenAuthenticator(repo.registry())
    other._uses[rec.id] = (before - timedelta(days=1)).timestamp()
    other.flush()
    assert datetime.fromisoformat(tokens.last_used()[rec.id]) == used


def test_bad_input_is_refused_with_what_to_do(repo: Repo) -> None:
    tokens = Tokens(repo.registry())
    with pytest.raises(InvalidRequestError, match="unknown role 'reeder'"):
        tokens.create(["reeder"])
    with pytest.raises(InvalidRequestError, match="at least one role"):
        tokens.create([])
    with pytest.raises(InvalidRequestError, match="token name"):
        tokens.create(["reader"], name="bad name/")
    tokens.create(["reader"], name="dup")
    with pytest.raises(InvalidRequestError, match="active token named 'dup'"):
        tokens.create(["reader"], name="dup")
    with pytest.raises(InvalidRequestError, match="12h, 30d"):
        parse_duration("soon")
    assert parse_duration("30d") == timedelta(days=30)
    assert len(tokens.list()) == 1  # nothing half-written
