"""The deploy gate's Kubeflow path: a KServe InferenceService applied through the Kubernetes
API (the official ``kubernetes`` client) with ``status.url`` as the success condition.

No cluster runs here; ``kube_api.KubeAPI`` answers as the API server and the KServe
controller would (see its docstring).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from tests.e2e.pipelines.kube_api import KubeAPI
from tests.services import require_kfp

from tureen.deployments import Deployments
from tureen.errors import BackendUnavailableError
from tureen.examples.fraud import create_repo
from tureen.models import ModelRegistry
from tureen.pipelines import RunState
from tureen.pipelines.local import run_pipeline
from tureen.store import FeatureStore

STORAGE = "s3://models-bucket/models"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    require_kfp()
    path = create_repo(tmp_path / "repo", accounts=50, days=3)
    FeatureStore(path).apply()
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    clf = LogisticRegression().fit(np.array([[0.0], [1.0]]), [0, 1])
    joblib.dump(clf, model_dir / "model.joblib")
    reg = ModelRegistry.for_repo(path)
    for auc in (0.70, 0.80, 0.75):
        reg.register("fraud_model", model_dir, "sklearn", metrics={"auc": auc},
                     feature_service="fraud_detection_v2")
    return path


@pytest.fixture
def kube(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeAPI]:
    with KubeAPI(ready_after=2) as api:
        cfg = tmp_path / "kubeconfig"
        cfg.write_text(api.kubeconfig())
        monkeypatch.setenv("KUBECONFIG", str(cfg))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        yield api


def test_create_then_canary_then_compare_with_what_the_cluster_serves(
        repo: Path, kube: KubeAPI) -> None:
    from tureen.pipelines.steps.gate import gate

    first = gate(deployment="fraud", model_name="fraud_model", version=1,
                 metrics={"auc": 0.70}, target="kserve", namespace="ml",
                 storage_uri=STORAGE, image="reg.example/tureen:1", timeout_s=20,
                 repo=str(repo))
    assert first.deployed and first.action == "created"
    assert first.url == "http://fraud.ml.example.com"
    _, path, body = next(r for r in kube.requests if r[0] == "POST")
    assert path.endswith("/namespaces/ml/inferenceservices")
    assert body is not None
    assert body["spec"]["predictor"]["model"]["storageUri"] == f"{STORAGE}/fraud_model/1"
    assert body["metadata"]["labels"]["tureen.dev/model-version"] == "1"
    assert body["spec"]["transformer"]["containers"][0]["image"] == "reg.example/tureen:1"

    second = gate(deployment="fraud", model_name="fraud_model", version=2,
                  metrics={"auc": 0.80}, canary_percent=20, target="kserve", namespace="ml",
                  storage_uri=STORAGE, timeout_s=20, repo=str(repo))
    assert second.action == "canary" and second.champion == "fraud_model:1"
    _, _, put = next(r for r in kube.requests if r[0] == "PUT")
    assert put is not None and put["metadata"]["resourceVersion"] == "1"
    predictor = put["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 20
    assert predictor["model"]["storageUri"] == f"{STORAGE}/fraud_model/2"
    assert put["metadata"]["labels"]["tureen.dev/canary-version"] == "2"
    spec = Deployments.for_repo(repo).get("fraud")
    assert spec.canary is not None and spec.canary.version == 2

    # the cluster is the truth: it serves version 2 now, whatever the registry says
    kube.objects[("ml", "fraud")]["metadata"]["labels"]["tureen.dev/model-version"] = "2"
    third = gate(deployment="fraud", model_name="fraud_model", version=3,
                 metrics={"auc": 0.75}, target="kserve", namespace="ml",
                 storage_uri=STORAGE, timeout_s=20, repo=str(repo))
    assert not third.deployed
    assert third.reason == "auc 0.75 does not beat the champion fraud_model:2 (0.8)"
    assert sum(1 for r in kube.requests if r[0] in ("POST", "PUT")) == 2


def test_an_inference_service_that_never_gets_ready_fails_with_its_conditions(
        repo: Path, kube: KubeAPI) -> None:
    from tureen.pipelines.steps.gate import gate

    kube.never_ready = True
    with pytest.raises(BackendUnavailableError,
                       match=r"ml/fraud was not ready within 2 s: Ready=False \(waiting for "
                             r"the predictor\)"):
        gate(deployment="fraud", model_name="fraud_model", version=1, metrics={"auc": 0.7},
             target="kserve", namespace="ml", storage_uri=STORAGE, timeout_s=2,
             repo=str(repo))


def test_a_local_models_store_cannot_go_to_a_cluster(repo: Path, kube: KubeAPI) -> None:
    from tureen.errors import InvalidRequestError
    from tureen.pipelines.steps.gate import gate

    with pytest.raises(InvalidRequestError, match="local path a cluster cannot read"):
        gate(deployment="fraud", model_name="fraud_model", version=1, metrics={"auc": 0.7},
             target="kserve", namespace="ml", timeout_s=5, repo=str(repo))
    assert not [r for r in kube.requests if r[0] in ("POST", "PUT")]


def test_the_component_in_a_pipeline(repo: Path, kube: KubeAPI, tmp_path: Path) -> None:
    cfg = tmp_path / "kubeconfig"
    f = tmp_path / "deploy.py"
    f.write_text(textwrap.dedent(f"""\
        from kfp import dsl
        from kfp.dsl import Metrics, Output
        from tureen.pipelines.components import deploy_gate

        @dsl.component(base_image="python:3.11")
        def scores(metrics: Output[Metrics]):
            metrics.log_metric("auc", 0.8)

        @dsl.pipeline
        def deploy():
            s = scores()
            deploy_gate(metrics=s.outputs["metrics"], deployment="fraud",
                        model_name="fraud_model", version=2, target="kserve", namespace="ml",
                        storage_uri={STORAGE!r}, timeout_s=20).set_env_variable(
                            "KUBECONFIG", {str(cfg)!r})
        """))
    run = run_pipeline(str(f), repo=repo)
    assert run.state is RunState.SUCCEEDED, run.error
    gate_task = run.task("deploy-gate")
    assert gate_task is not None
    assert gate_task.outputs.parameters["action"] == "created"
    (decision,) = gate_task.outputs.artifacts["decision"]
    assert decision.metadata["url"] == "http://fraud.ml.example.com"
    assert "| decision | created |" in Path(decision.uri).read_text()
