"""``tureen init``'s fraud pipeline end to end: point-in-time training set → train → evaluate
→ register → deploy gate, on the quickstart data, through the CLI a user types.

One repo for the whole module (each step builds on the last, as a user's would): the first
run creates the deployment, a better model becomes a canary, a rerun is served from cache, a
change of data is noticed, ``--resume-from`` reruns from a step, and the compiled YAML runs
the same way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from tests.services import require_kfp

from tureen.deployments import Deployments
from tureen.models import ModelRegistry
from tureen.pipelines import RunState, RunStore, TaskState
from tureen.pipelines.local import run_pipeline
from tureen.pipelines.records import RunRecord

CLI = [sys.executable, "-c", "from tureen.cli.main import main; main()"]
PIPELINE = "pipelines/train_fraud.py"
WEAK = {"max_iter": "5", "max_depth": "1", "learning_rate": "0.01"}

pytestmark = pytest.mark.slow


def tureen(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*CLI, *args], cwd=repo, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "COLUMNS": "250"})
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_kfp()
    root = tmp_path_factory.mktemp("fraud")
    tureen(root, "init", "repo")
    path = root / "repo"
    assert (path / PIPELINE).is_file()
    tureen(path, "apply")
    return path


@pytest.fixture(scope="module")
def first(repo: Path) -> dict[str, Any]:
    args = [a for k, v in WEAK.items() for a in ("-p", f"{k}={v}")]
    proc = tureen(repo, "pipeline", "run", PIPELINE, *args, "--json")
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def params(run: RunRecord | dict[str, Any], task: str) -> dict[str, Any]:
    rec = run if isinstance(run, RunRecord) else RunRecord.model_validate(run)
    t = rec.task(task)
    assert t is not None
    return t.outputs.parameters


def test_first_run_trains_registers_with_lineage_and_creates_the_deployment(
        repo: Path, first: dict[str, Any]) -> None:
    run = RunRecord.model_validate(first)
    assert run.state is RunState.SUCCEEDED, run.error
    assert [t.state for t in run.tasks] == [TaskState.SUCCEEDED] * 5
    assert params(run, "register") == {"name": "fraud_model", "version": 1}
    gate = params(run, "deploy-gate")
    assert gate["deployed"] and gate["action"] == "created"
    spec = Deployments.for_repo(repo).get("fraud")
    assert (spec.model, spec.version, spec.feature_service) == \
        ("fraud_model", 1, "fraud_detection_v2")
    mv = ModelRegistry.for_repo(repo).get("fraud_model", 1)
    assert mv.pipeline_run == run.id  # lineage: the run, the service, the data snapshot
    assert mv.feature_service == "fraud_detection_v2"
    assert mv.training_snapshot is not None
    assert set(mv.training_snapshot) >= {"registry_version", "definitions_sha256",
                                         "entity_rows_sha256", "entities_sha256", "sources"}
    assert mv.training_set is not None and Path(mv.training_set).is_file()
    assert {"auc", "accuracy", "f1", "test_rows"} <= set(mv.metrics)
    metrics = run.metrics()
    assert metrics["evaluate.auc"] == mv.metrics["auc"]
    (cm,) = run.classification_metrics()
    assert cm.confusion_matrix is not None and cm.confusion_matrix.labels == ["False", "True"]
    assert sum(map(sum, cm.confusion_matrix.rows)) == mv.metrics["test_rows"]
    assert 2 <= len(cm.roc) <= 200
    data = run.task("training-set")
    assert data is not None
    meta = data.outputs.artifacts["dataset"][0].metadata
    assert meta["rows"] == len(pd.read_parquet(repo / "data" / "labels.parquet"))
    assert meta["tureen.feature_service"] == "fraud_detection_v2"
    assert run.registered_models()[0].version == 1


def test_a_better_model_becomes_a_canary_and_a_rerun_is_all_cached(
        repo: Path, first: dict[str, Any]) -> None:
    better = run_pipeline(PIPELINE, repo=repo)
    assert better.state is RunState.SUCCEEDED, better.error
    gate = params(better, "deploy-gate")
    assert gate["deployed"] and gate["action"] == "canary", gate
    assert "takes 10% of 'fraud' as a canary" in gate["reason"]
    spec = Deployments.for_repo(repo).get("fraud")
    assert spec.version == 1 and spec.canary is not None
    assert (spec.canary.version, spec.canary.percent) == (2, 10.0)
    assert params(better, "training-set") == params(first, "training-set")
    ts = better.task("training-set")
    assert ts is not None and ts.state is TaskState.CACHED  # same data snapshot
    again = run_pipeline(PIPELINE, repo=repo)
    assert {t.state for t in again.tasks} == {TaskState.CACHED}, \
        [(t.id, t.state, t.cache) for t in again.tasks]
    assert Deployments.for_repo(repo).get("fraud").canary == spec.canary


def test_rollback_of_the_deployment_makes_the_gate_decide_again(repo: Path) -> None:
    Deployments.for_repo(repo).update("fraud", clear_canary=True)
    run = run_pipeline(PIPELINE, repo=repo)
    gate = run.task("deploy-gate")
    assert gate is not None and gate.state is TaskState.SUCCEEDED
    assert gate.cache is not None and "data snapshot changed: canary" in gate.cache.reason
    assert gate.outputs.parameters["action"] == "canary"


def test_changed_entity_rows_are_a_new_snapshot(repo: Path) -> None:
    labels = repo / "data" / "labels.parquet"
    frame = pd.read_parquet(labels)
    frame.iloc[:-10].to_parquet(labels, index=False)
    run = run_pipeline(PIPELINE, repo=repo)
    ts = run.task("training-set")
    assert ts is not None and ts.state is TaskState.SUCCEEDED
    assert ts.cache is not None and "data snapshot changed: entities_sha256" in ts.cache.reason
    assert ts.outputs.parameters["rows"] == len(frame) - 10


def test_resume_from_a_step(repo: Path) -> None:
    run = run_pipeline(PIPELINE, repo=repo, resume_from="evaluate")
    states = {t.id: t.state for t in run.tasks}
    assert states["training-set"] is TaskState.CACHED and states["train"] is TaskState.CACHED
    assert states["evaluate"] is TaskState.SUCCEEDED
    ev = run.task("evaluate")
    assert ev is not None and ev.cache is not None
    assert ev.cache.reason == "--resume-from evaluate: runs again"


def test_the_compiled_yaml_runs_the_same_way(repo: Path) -> None:
    out = repo / "train_fraud.yaml"
    proc = tureen(repo, "pipeline", "compile", PIPELINE, "--out", str(out), "--image",
                  "registry.example.com/tureen-fraud:1", "--image-context", "image")
    assert "5 tasks" in proc.stdout
    text = out.read_text()
    assert "registry.example.com/tureen-fraud:1" in text and str(repo) not in text
    assert "ENV TUREEN_REPO=/app/repo" in (repo / "image" / "Dockerfile").read_text()
    assert (repo / "image" / "repo" / PIPELINE).is_file()
    run = run_pipeline(str(out), repo=repo)
    assert run.state is RunState.SUCCEEDED
    assert {t.state for t in run.tasks if t.id != "deploy-gate"} == {TaskState.CACHED}


def test_runs_list_and_show(repo: Path) -> None:
    listing = json.loads(tureen(repo, "pipeline", "runs", "list", "--json").stdout)
    assert len(listing) >= 6 and all(r["pipeline"] == "train-fraud" for r in listing)
    shown = tureen(repo, "pipeline", "runs", "show", "latest").stdout
    assert "train-fraud" in shown and "deploy-gate" in shown
    log = tureen(repo, "pipeline", "runs", "show", listing[-1]["id"], "--log",
                 "deploy-gate").stdout
    assert "deploy gate: DEPLOYED (created)" in log


def test_a_gate_metric_the_evaluation_did_not_produce(repo: Path) -> None:
    text = (repo / PIPELINE).read_text().replace('metric="auc"', 'metric="f1x"')
    bad = repo / "pipelines" / "bad_metric.py"
    bad.write_text(text)
    proc = tureen(repo, "pipeline", "run", str(bad.relative_to(repo)), check=False)
    assert proc.returncode == 1
    assert "the gate metric 'f1x' is not among the evaluation's metrics" in proc.stdout
    run = RunStore.for_repo(repo).latest()
    assert run is not None and run.state is RunState.FAILED
    gate = run.task("deploy-gate")
    assert gate is not None and gate.state is TaskState.FAILED
    assert "accuracy, auc, f1" in (gate.error or "")


def test_a_step_that_raises_keeps_earlier_outputs(repo: Path) -> None:
    bad = repo / "pipelines" / "bad_label.py"
    bad.write_text(textwrap.dedent("""\
        from kfp import dsl
        from tureen.pipelines.components import train, training_set

        @dsl.pipeline
        def bad_label():
            data = training_set(entities="data/labels.parquet",
                                feature_service="fraud_detection_v2")
            train(training_set=data.outputs["dataset"], label="is_frad")
        """))
    run = run_pipeline(str(bad), repo=repo)
    assert run.state is RunState.FAILED
    train = run.task("train")
    assert train is not None and train.state is TaskState.FAILED
    assert "task 'train' failed: label column 'is_frad' is not in the training set. Did you " \
        "mean 'is_fraud'" in \
        (train.error or "")
    ts = run.task("training-set")
    assert ts is not None and ts.state in (TaskState.SUCCEEDED, TaskState.CACHED)
    assert Path(ts.outputs.artifacts["dataset"][0].uri).is_file()
