"""A materialized fraud repo with hostile strings in every free-text field, two model
versions and a deployment: what the console's in-process tests read."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
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
        # an earlier materialization into a Redis whose URL holds a password
        fs.registry.record_materialization("account_profile", now - timedelta(days=2),
                                           now - timedelta(days=1),
                                           store=f"redis://:{SECRET}@10.0.0.9:6379/0")
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
    write_run(repo, "clf", 3)
    yield repo


RUN_ID = "20261206-101500-3f2a1c"
CONFUSION = [[41.0, 9.0], [6.0, 44.0]]


def write_run(repo: Path, model: str, version: int) -> str:
    """A finished pipeline run record as the pipelines runner writes it (KFP metadata)."""
    from tureen.pipelines import (
        ArtifactRecord,
        CacheInfo,
        RunRecord,
        RunState,
        RunStore,
        TaskRecord,
        TaskState,
    )
    from tureen.pipelines.records import TaskIO

    now = datetime.now(UTC)
    cls = ArtifactRecord(name="metrics", type="system.ClassificationMetrics", metadata={
        "confusionMatrix": {"annotationSpecs": [{"displayName": "legit"},
                                                {"displayName": XSS}],
                            "rows": [{"row": r} for r in CONFUSION]},
        "confidenceMetrics": [{"confidenceThreshold": t, "falsePositiveRate": f,
                               "recall": r} for t, f, r in
                              [(1.0, 0.0, 0.0), (0.5, 0.1, 0.8), (0.0, 1.0, 1.0)]]})
    scalars = ArtifactRecord(name="scalars", type="system.Metrics",
                             metadata={"auc": 0.91, "accuracy": 0.85})
    registered = ArtifactRecord(name="model", type="system.Model",
                                metadata={"tureen.model": model, "tureen.version": version})
    tasks = [
        TaskRecord(id="training-set", name="training-set", state=TaskState.CACHED, duration_s=0.01,
                   cache=CacheInfo(hit=True, reason="same code, inputs and data snapshot")),
        TaskRecord(id="train", name="train", state=TaskState.SUCCEEDED, duration_s=1.5,
                   depends_on=["training-set"],
                   cache=CacheInfo(hit=False, reason="parameter learning_rate changed")),
        TaskRecord(id="evaluate", name="evaluate", state=TaskState.SUCCEEDED, duration_s=0.4,
                   depends_on=["train"],
                   outputs=TaskIO(artifacts={"metrics": [cls], "scalars": [scalars]})),
        TaskRecord(id="register", name="register", state=TaskState.SUCCEEDED, duration_s=0.2,
                   depends_on=["evaluate"], outputs=TaskIO(artifacts={"model": [registered]})),
        TaskRecord(id="deploy-gate", name="deploy-gate", state=TaskState.SKIPPED,
                   depends_on=["register"], reason="auc below the champion's"),
    ]
    RunStore.for_repo(repo).create(RunRecord(
        id=RUN_ID, pipeline="train_fraud", source="pipelines/train_fraud.py",
        state=RunState.SUCCEEDED, created_at=now, finished_at=now, duration_s=2.1,
        parameters={"learning_rate": 0.1, "note": XSS}, tasks=tasks))
    return RUN_ID


@pytest.fixture
async def client(repo: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = console_app(repo)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as c:
        yield c
