"""A materialized fraud repo with hostile strings in every free-text field, two model
versions and a deployment: what the console's in-process tests read."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tureen.console import console_app
from tureen.deployments import Deployments
from tureen.examples.fraud import create_repo
from tureen.models import ModelRegistry
from tureen.store import FeatureStore

XSS = "<script>alert(1)</script>"
SECRET = "s3cr3t-pa55"

EXTRA_VIEW = f'''

hostile = FeatureView(
    name="hostile_view",
    entities=[account],
    schema=[Field("credit_score", Int64, description={XSS!r})],
    source=FileSource(path="data/account_profile.parquet", timestamp_field="event_timestamp"),
    description={XSS!r},
    owner={XSS!r},
    tags={{"team": {XSS!r}}},
)
'''

MODEL_PY = """
import numpy as np
from tureen.serving import Model


class M(Model):
    def load(self):
        self.ready = True
        return True

    def predict(self, payload, headers=None):
        return np.zeros(len(self.decode(payload)))
"""


@pytest.fixture(scope="package")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("console")
    repo = create_repo(root / "repo", accounts=20)
    with (repo / "features.py").open("a") as f:
        f.write(EXTRA_VIEW)
    with FeatureStore(repo) as fs:
        fs.apply()
        now = datetime.now(UTC)
        fs.materialize(now - timedelta(days=40), now + timedelta(minutes=1))
    src = root / "model"
    src.mkdir()
    (src / "model.py").write_text(MODEL_PY)
    reg = ModelRegistry.for_repo(repo)
    for v in (1, 2, 3):
        reg.register("clf", src, "custom", metrics={"auc": 0.5 + v / 10, XSS: v},
                     feature_service="fraud_detection_v1", description=XSS)
    deps = Deployments.for_repo(repo)
    deps.create("fraud", "clf", 1, logging="ALL",
                log_sink=f"kafka://user:{SECRET}@127.0.0.1:1/?sasl.password={SECRET}")
    yield repo


@pytest.fixture
async def client(repo: Path) -> Iterator[httpx.AsyncClient]:
    app = console_app(repo)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as c:
        yield c  # type: ignore[misc]
