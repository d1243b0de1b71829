"""Issue 12: ``/metrics`` is open by default (for scrapers) and protected when
``serving.auth.open_metrics: false`` — on a running server, on both HTTP/1.1 servers; the
health probes stay open either way."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from tests.e2e.feature_server.servers import start

from tureen.auth.tokens import Tokens
from tureen.store import FeatureStore

MODEL = '''
from tureen.serving import Model


class Echo(Model):
    def load(self):
        self.ready = True
        return True

    def predict(self, payload, headers=None):
        return payload
'''


@pytest.mark.parametrize("http_server", ["tureen", "uvicorn"])
def test_metrics_can_be_protected(tmp_path: Path, http_server: str) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "tureen.yaml").write_text(
        "project: p\nserving:\n  auth:\n    type: token\n    open_metrics: false\n")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.py").write_text(MODEL)
    with FeatureStore(repo) as store:
        reader, _ = Tokens(store.registry).create(["reader"], name="scraper")
    server = start(["serve-model", "--model_dir", str(tmp_path / "m"), "--repo", str(repo),
                    "--http_server", http_server], tmp_path / "server.log")
    try:
        assert httpx.get(server.url + "/metrics").status_code == 401
        r = httpx.get(server.url + "/metrics", headers={"authorization": "Bearer nope"})
        assert r.status_code == 401
        r = httpx.get(server.url + "/metrics", headers={"authorization": f"Bearer {reader}"})
        assert r.status_code == 200 and "tureen_" in r.text
        assert httpx.get(server.url + "/v2/health/live").status_code == 200
    finally:
        assert server.stop() == 0, (tmp_path / "server.log").read_text()[-3000:]
