"""Feast's own SDK (remote online store, ``auth: {type: oidc, token: ...}``) reads from
tureen's feature server with a tureen API token; without one, or with a revoked one, it is
refused. Needs a Feast install in a separate interpreter (``TUREEN_FEAST_PYTHON`` or
``/work/peers/feast/bin/python``); skipped when absent."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from tests.e2e.feature_server.servers import make_repo, start
from tests.e2e.feature_server.test_feast_sdk_client import CLIENT, FEAST_DEFS
from tests.services import FEAST_PYTHON, require_feast

from tureen.auth.tokens import Tokens
from tureen.store import FeatureStore

pytestmark = pytest.mark.slow


def _client(tmp: Path, repo: Path, url: str, token: str | None) -> Path:
    client = tmp / f"feast_{abs(hash(token))}"
    (client / "data").mkdir(parents=True)
    (client / "data" / "account_profile.parquet").write_bytes(
        (repo / "data" / "account_profile.parquet").read_bytes())
    (client / "features.py").write_text(FEAST_DEFS)
    auth = f"auth:\n  type: oidc\n  token: {token}\n" if token else ""
    (client / "feature_store.yaml").write_text(
        f"project: fraud_detection\nregistry: data/registry.db\nprovider: local\n"
        f"online_store:\n  type: remote\n  path: {url}\n{auth}"
        "entity_key_serialization_version: 3\n")
    return client


def _read(client: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FEAST_USAGE": "False"}
    subprocess.run([str(FEAST_PYTHON.parent / "feast"), "apply"], cwd=client, env=env,
                   check=True, capture_output=True, timeout=300)
    return subprocess.run([str(FEAST_PYTHON), "-c", CLIENT], cwd=client, env=env,
                          capture_output=True, text=True, timeout=300)


def test_feast_sdk_with_a_tureen_token(tmp_path: Path) -> None:
    require_feast()
    repo = make_repo(tmp_path / "fraud")
    with (repo / "tureen.yaml").open("a") as f:
        f.write("serving:\n  auth: {type: token}\n")
    tokens = Tokens(FeatureStore(repo).registry)
    reader, _ = tokens.create(["reader"], name="feast-client")
    revoked, _ = tokens.create(["reader"], name="old")
    tokens.revoke("old")
    server = start(["serve-features", "--repo", str(repo), "--no-grpc"], tmp_path / "s.log",
                   ready="/health", port_flags=("--port", "--grpc-port"))
    try:
        ok = _read(_client(tmp_path, repo, server.url, reader))
        assert ok.returncode == 0, ok.stderr[-3000:]
        got = json.loads(ok.stdout.strip().splitlines()[-1])
        assert got["account_id"] == [1001, 1002, 424242]
        assert got["credit_score"][0] is not None and got["credit_score"][2] is None
        for token in (None, revoked):
            refused = _read(_client(tmp_path, repo, server.url, token))
            assert refused.returncode != 0
            assert "401" in refused.stderr or "Unauthorized" in refused.stderr, \
                refused.stderr[-2000:]
    finally:
        assert server.stop() == 0, (tmp_path / "s.log").read_text()
