"""RunStore: the read API the CLI and the console use for pipeline run records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tureen.errors import InvalidRequestError, NotFoundError
from tureen.pipelines import ArtifactRecord, RunRecord, RunState, RunStore, TaskRecord, TaskState
from tureen.pipelines.records import TaskIO
from tureen.pipelines.runs import new_run_id


def _record(run_id: str, pipeline: str = "fraud") -> RunRecord:
    metrics = ArtifactRecord(name="metrics", type="system.Metrics",
                             metadata={"auc": 0.91, "rows": 100, "note": "x", "flag": True})
    cm = ArtifactRecord(name="cm", type="system.ClassificationMetrics", metadata={
        "confusionMatrix": {"annotationSpecs": [{"displayName": "0"}, {"displayName": "1"}],
                            "rows": [{"row": [50, 3]}, {"row": [4, 43]}]},
        "confidenceMetrics": [{"confidenceThreshold": 0.5, "falsePositiveRate": 0.1,
                               "recall": 0.9}]})
    model = ArtifactRecord(name="model", type="system.Model",
                           metadata={"tureen.model": "fraud-model", "tureen.version": 3})
    return RunRecord(
        id=run_id, pipeline=pipeline, source="pipelines/train_fraud.py",
        created_at=datetime.now(UTC), state=RunState.SUCCEEDED,
        tasks=[
            TaskRecord(id="evaluate", name="evaluate", state=TaskState.SUCCEEDED,
                       outputs=TaskIO(artifacts={"metrics": [metrics], "cm": [cm]}),
                       log="logs/0-evaluate.log"),
            TaskRecord(id="register", name="register", state=TaskState.CACHED,
                       outputs=TaskIO(artifacts={"model": [model]})),
        ])


def test_round_trip_list_get_and_derived_views(tmp_path: Path) -> None:
    store = RunStore.for_repo(tmp_path)
    assert store.list() == []
    t0 = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
    ids = [new_run_id(t0 + timedelta(seconds=i)) for i in range(3)]
    for i, run_id in enumerate(ids):
        store.create(_record(run_id, "fraud" if i < 2 else "other"))
    assert [r.id for r in store.list()] == ids[::-1]  # newest first
    assert [r.id for r in store.list(pipeline="fraud")] == ids[1::-1]
    assert [r.id for r in store.list(limit=1)] == [ids[2]]
    run = store.get(ids[0])
    assert run.metrics() == {"evaluate.auc": 0.91, "evaluate.rows": 100.0}
    (cmv,) = run.classification_metrics()
    assert cmv.confusion_matrix is not None
    assert cmv.confusion_matrix.labels == ["0", "1"]
    assert cmv.confusion_matrix.rows == [[50, 3], [4, 43]]
    assert cmv.roc[0].tpr == 0.9
    (m,) = run.registered_models()
    assert (m.name, m.version, m.task) == ("fraud-model", 3, "register")
    assert run.counts() == {"SUCCEEDED": 1, "CACHED": 1}


def test_log_tail(tmp_path: Path) -> None:
    store = RunStore.for_repo(tmp_path)
    run_id = new_run_id()
    path = store.create(_record(run_id))
    (path / "logs").mkdir()
    (path / "logs" / "0-evaluate.log").write_text("\n".join(f"line {i}" for i in range(100)))
    assert store.log(run_id, "evaluate", tail=2) == "line 98\nline 99"
    assert store.log(run_id, "register") == ""
    with pytest.raises(NotFoundError, match=r"no task 'evaluat'.*evaluate"):
        store.log(run_id, "evaluat")


def test_hostile_and_unknown_ids(tmp_path: Path) -> None:
    store = RunStore.for_repo(tmp_path)
    for bad in ("../../etc", "20261206-101500-3f2a1c/../x", "", "x" * 500):
        with pytest.raises(InvalidRequestError, match="not a run id"):
            store.get(bad)
    with pytest.raises(NotFoundError, match="no pipeline run"):
        store.get("20261206-101500-3f2a1c")


def test_unreadable_record_is_reported_and_skipped_in_lists(tmp_path: Path) -> None:
    store = RunStore.for_repo(tmp_path)
    good, bad = new_run_id(datetime(2026, 1, 1, tzinfo=UTC)), new_run_id()
    store.create(_record(good))
    (store.root / bad).mkdir()
    (store.root / bad / "run.json").write_text('{"id": 3}')
    assert [r.id for r in store.list()] == [good]
    with pytest.raises(InvalidRequestError, match="not readable"):
        store.get(bad)


def test_a_log_path_outside_the_run_folder_is_refused(tmp_path: Path) -> None:
    store = RunStore.for_repo(tmp_path)
    run_id = new_run_id()
    rec = _record(run_id)
    rec.tasks[0].log = "../../../etc/passwd"
    store.create(rec)
    with pytest.raises(InvalidRequestError, match="invalid log path"):
        store.log(run_id, "evaluate")


def test_latest_is_the_newest_of_runs_started_in_the_same_second(tmp_path: Path) -> None:
    """Ids name their second; the random part must not decide which run is the latest."""
    store = RunStore(tmp_path / "runs")
    second = datetime(2026, 12, 6, 20, 29, 27, tzinfo=UTC)
    older, newer = _record("20261206-202927-ffffff"), _record("20261206-202927-000000")
    older.created_at = second + timedelta(microseconds=100)
    newer.created_at = second + timedelta(microseconds=900)
    other = _record("20261206-202926-abcdef")
    other.created_at = second - timedelta(seconds=1)
    for rec in (older, newer, other):
        store.create(rec)
    assert store.ids() == [newer.id, older.id, other.id]
    latest = store.latest()
    assert latest is not None and latest.id == newer.id
