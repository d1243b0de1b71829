"""The split transformer forwards the caller's identity to its predictor over TLS (HTTPS for
v2, gRPC-TLS for grpc-v2): the predictor decides with the caller's own token, so a token
that may call the transformer but not the model behind it is refused (403) — unless the
transformer has a service token of its own (TUREEN_SERVICE_TOKEN)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from tests.e2e.auth.test_tls import https_start
from tests.e2e.feature_server.servers import SERVICE, Server, make_repo, start, train_model

from tureen.auth.devcert import make_dev_certs
from tureen.auth.tokens import Tokens
from tureen.store import FeatureStore

pytestmark = pytest.mark.slow


@dataclass
class Setup:
    predictor: Server
    repo: Path
    tls_config: Path
    tokens: dict[str, str]
    tmp: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("split")
    repo = make_repo(tmp / "fraud")
    train_model(repo)
    certs = make_dev_certs(tmp / "certs")
    store = Tokens(FeatureStore(repo).registry)
    tokens = {
        "predictor": store.create(["predictor"], name="caller")[0],
        "scoped": store.create(["predictor"], names=["fraud"], name="fraud-only")[0],
        "reader": store.create(["reader"], name="reader")[0],
        "service": store.create(["predictor"], name="transformer-service")[0],
    }
    predictor = https_start(
        ["serve-model", "--model_repository", str(repo / "models"), "--repo", str(repo),
         "--auth", "token", "--tls-cert", str(certs.cert), "--tls-key", str(certs.key)],
        tmp / "predictor.log", certs.ca)
    cfg = tmp / "tls.yaml"
    cfg.write_text(yaml.safe_dump({"predictor": {"tls": {"ca_file": str(certs.ca)}}}))
    yield Setup(predictor, repo, cfg, tokens, tmp)
    assert predictor.stop() == 0, (tmp / "predictor.log").read_text()


def transformer(s: Setup, protocol: str, env: dict[str, str] | None = None) -> Server:
    port = s.predictor.grpc_port if protocol == "grpc-v2" else s.predictor.http_port
    old = dict(os.environ)
    os.environ.update(env or {})
    try:
        return start(["serve-transformer", "--model_name", "fraud", "--predictor_host",
                      f"localhost:{port}", "--predictor_protocol", protocol,
                      "--predictor_model", "fraud_model", "--feature_service", SERVICE,
                      "--repo", str(s.repo), "--entity_key", "account_id=account_id",
                      "--config", str(s.tls_config), "--auth", "token"],
                     s.tmp / f"transformer-{protocol}-{len(env or {})}.log",
                     port_flags=("--http_port", "--grpc_port"))
    finally:
        os.environ.clear()
        os.environ.update(old)


def predict(server: Server, token: str) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/models/fraud:predict",
                      json={"instances": [{"account_id": 1001, "amount": 25.0}]},
                      headers={"authorization": f"Bearer {token}"}, timeout=30)


@pytest.mark.parametrize("protocol", ["v2", "grpc-v2"])
def test_caller_identity_reaches_the_predictor_over_tls(setup: Setup, protocol: str) -> None:
    t = transformer(setup, protocol)
    try:
        ok = predict(t, setup.tokens["predictor"])
        assert ok.status_code == 200, ok.text
        assert len(ok.json()["predictions"]) == 1
        # the transformer lets "fraud-only" in; the predictor refuses it for fraud_model
        scoped = predict(t, setup.tokens["scoped"])
        assert scoped.status_code == 403, scoped.text
        assert "predictor refused" in scoped.json()["error"]
        assert predict(t, setup.tokens["reader"]).status_code == 403  # refused at the door
        assert httpx.post(f"{t.url}/v1/models/fraud:predict", json={"instances": [
            {"account_id": 1001, "amount": 1.0}]}).status_code == 401
    finally:
        assert t.stop() == 0


def test_a_service_token_speaks_for_the_transformer(setup: Setup) -> None:
    t = transformer(setup, "v2", {"TUREEN_SERVICE_TOKEN": setup.tokens["service"]})
    try:
        r = predict(t, setup.tokens["scoped"])
        assert r.status_code == 200, r.text
    finally:
        assert t.stop() == 0
