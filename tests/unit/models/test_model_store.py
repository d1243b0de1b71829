"""The model store: versions, atomic metadata, concurrency, lineage, CLI."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import joblib
import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.linear_model import LogisticRegression

from tureen.cli.main import cli
from tureen.errors import InvalidRequestError, NotFoundError
from tureen.models import METADATA_FILE, ModelRegistry, ModelStore
from tureen.repo_loader import load_definitions
from tureen.store import FeatureStore


@pytest.fixture()
def sk_model(tmp_path: Path) -> Path:
    x = np.random.default_rng(0).normal(size=(40, 3))
    y = (x[:, 0] > 0).astype(int)
    path = tmp_path / "src" / "model.joblib"
    path.parent.mkdir()
    joblib.dump(LogisticRegression().fit(x, y), path)
    return path


def test_versions_are_next_integers_and_servable(tmp_path: Path, sk_model: Path) -> None:
    store = ModelStore(tmp_path / "models")
    v1 = store.register("fraud", sk_model, "sklearn", metrics={"auc": 0.8})
    v2 = store.register("fraud", sk_model.parent, "scikit-learn", metrics={"auc": 0.9})
    assert (v1.version, v2.version) == (1, 2)
    assert v2.framework == "sklearn"
    for v in (1, 2):
        d = tmp_path / "models" / "fraud" / str(v)
        assert (d / "model.joblib").is_file() and (d / METADATA_FILE).is_file()
    # the layout is the model server's repository layout: hidden entries only besides versions
    visible = sorted(p.name for p in (tmp_path / "models" / "fraud").iterdir()
                     if not p.name.startswith("."))
    assert visible == ["1", "2"]
    assert [mv.version for mv in store.list("fraud")] == [1, 2]
    assert store.get("fraud").version == 2
    assert store.get("fraud", "1").metrics == {"auc": 0.8}


def test_model_server_runtime_loads_registered_version(tmp_path: Path, sk_model: Path) -> None:
    from tureen.serving.runtimes import model_from_dir

    mv = ModelStore(tmp_path / "m").register("fraud", sk_model, "sklearn")
    model = model_from_dir("fraud", "1", Path(mv.uri), {})
    model.load()
    out = model.predict(np.zeros((2, 3), dtype=np.float32))
    assert len(out) == 2


def test_best_max_min_and_missing_metric(tmp_path: Path, sk_model: Path) -> None:
    store = ModelStore(tmp_path / "models")
    store.register("m", sk_model, "sklearn", metrics={"auc": 0.7, "logloss": 0.5})
    store.register("m", sk_model, "sklearn", metrics={"auc": 0.9, "logloss": 0.6})
    store.register("m", sk_model, "sklearn", metrics={"logloss": 0.4})
    assert store.best("m", "auc").version == 2
    assert store.best("m", "logloss").version == 3  # lower is better for losses
    assert store.best("m", "logloss", "max").version == 2
    with pytest.raises(NotFoundError, match="Did you mean 'auc'"):
        store.best("m", "acu")


def test_delete_never_reuses_numbers(tmp_path: Path, sk_model: Path) -> None:
    store = ModelStore(tmp_path / "models")
    for _ in range(2):
        store.register("m", sk_model, "sklearn")
    assert store.delete("m", 2) == [2]
    assert [mv.version for mv in store.list("m")] == [1]
    assert store.register("m", sk_model, "sklearn").version == 3
    assert store.delete("m") == [1, 3]
    with pytest.raises(NotFoundError, match="no model named 'm'"):
        store.list("m")


def test_half_copied_version_is_never_listed(tmp_path: Path, sk_model: Path) -> None:
    store = ModelStore(tmp_path / "models")
    store.register("m", sk_model, "sklearn")
    # a version directory without metadata (a crash mid-copy on an object store)
    (tmp_path / "models" / "m" / "7").mkdir()
    (tmp_path / "models" / "m" / "7" / "model.joblib").write_bytes(b"partial")
    assert [mv.version for mv in store.list("m")] == [1]
    assert store.register("m", sk_model, "sklearn").version == 8


def test_failed_copy_leaves_nothing(tmp_path: Path, sk_model: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    store = ModelStore(tmp_path / "models")

    def boom(*_a: object, **_k: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(store, "_write_json", boom)
    with pytest.raises(OSError, match="disk full"):
        store.register("m", sk_model, "sklearn")
    leftovers = [p.name for p in (tmp_path / "models" / "m").iterdir() if p.name != ".versions"]
    assert leftovers == []


def test_wrong_framework_and_bad_names(tmp_path: Path, sk_model: Path) -> None:
    store = ModelStore(tmp_path / "models")
    with pytest.raises(InvalidRequestError, match="does not look like a onnx model"):
        store.register("m", sk_model, "onnx")
    with pytest.raises(InvalidRequestError, match="not supported"):
        store.register("m", sk_model, "caffe")
    with pytest.raises(InvalidRequestError, match="not valid"):
        store.register("../x", sk_model, "sklearn")
    with pytest.raises(InvalidRequestError, match="not a number"):
        store.register("m", sk_model, "sklearn", metrics={"auc": "high"})


def test_fsspec_memory_store(sk_model: Path, tmp_path: Path) -> None:
    store = ModelStore("memory://tureen-test-models")
    mv = store.register("m", sk_model, "sklearn", metrics={"auc": 1})
    assert mv.uri.startswith("memory://")
    assert store.get("m").metrics == {"auc": 1.0}
    local = store.fetch("m", 1, tmp_path / "cache")
    assert (local / "model.joblib").read_bytes() == sk_model.read_bytes()
    store.delete("m")


def _register_many(root: str, src: str, n: int, q: multiprocessing.Queue[int]) -> None:
    store = ModelStore(root)
    for _ in range(n):
        q.put(store.register("race", src, "sklearn").version)


def test_concurrent_registers_get_distinct_versions(tmp_path: Path, sk_model: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    q: multiprocessing.Queue[int] = ctx.Queue()
    procs = [ctx.Process(target=_register_many, args=(str(tmp_path / "m"), str(sk_model), 5, q))
             for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    got = sorted(q.get(timeout=5) for _ in range(15))
    assert got == list(range(1, 16))
    assert [mv.version for mv in ModelStore(tmp_path / "m").list("race")] == got


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    from tureen.examples.fraud import create_repo

    d = create_repo(tmp_path / "repo", accounts=20)
    FeatureStore(d).registry.apply(load_definitions(d))
    return d


def test_registry_derives_signature_and_lineage(repo: Path, sk_model: Path) -> None:
    reg = ModelRegistry.for_repo(repo)
    mv = reg.register("fraud", sk_model, "sklearn", feature_service="fraud_detection_v1",
                      training_set=repo / "data" / "labels.parquet", metrics={"auc": 0.5})
    snap = FeatureStore(repo).snapshot()
    from tureen.feature_refs import resolve

    fields = resolve(snap, "fraud_detection_v1").output_fields
    assert [(t.name, t.datatype) for t in mv.inputs] == [(f.name, f.dtype.oip) for f in fields]
    assert mv.registry_version == snap.version and mv.project == "fraud_detection"
    assert mv.training_set == str((repo / "data" / "labels.parquet").resolve())
    assert Path(mv.uri) == repo / "models" / "fraud" / "1"  # default: models/ in the repo
    with pytest.raises(NotFoundError, match="feature service"):
        reg.register("fraud", sk_model, "sklearn", feature_service="nope")


def test_cli_register_list_describe_best_delete(repo: Path, sk_model: Path) -> None:
    run = CliRunner().invoke
    r = run(cli, ["models", "register", "fraud", str(sk_model), "--framework", "sklearn",
                  "--metrics", '{"auc": 0.7}', "--feature-service", "fraud_detection_v1",
                  "--repo", str(repo), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["version"] == 1
    r = run(cli, ["models", "register", "fraud", str(sk_model), "-f", "sklearn",
                  "--metrics", '{"auc": 0.8}', "--repo", str(repo)])
    assert r.exit_code == 0 and "version 2" in r.output, r.output
    r = run(cli, ["models", "list", "--repo", str(repo)])
    assert r.exit_code == 0 and "fraud" in r.output and "auc=0.8" in r.output
    r = run(cli, ["models", "describe", "fraud:1", "--repo", str(repo)])
    assert r.exit_code == 0 and "fraud_detection_v1" in r.output and "credit_score" in r.output
    r = run(cli, ["models", "best", "fraud", "--metric", "auc", "--repo", str(repo), "--json"])
    assert json.loads(r.output)["version"] == 2
    r = run(cli, ["models", "register", "fraud", str(sk_model), "-f", "sklearn",
                  "--metrics", "{bad", "--repo", str(repo)])
    assert r.exit_code == 1 and "not valid JSON" in r.output
    r = run(cli, ["models", "delete", "fraud:1", "-y", "--repo", str(repo)])
    assert r.exit_code == 0
    r = run(cli, ["models", "list", "fraud", "--repo", str(repo), "--json"])
    assert [m["version"] for m in json.loads(r.output)] == [2]
    r = run(cli, ["models", "describe", "frad", "--repo", str(repo)])
    assert r.exit_code == 1 and "Did you mean 'fraud'" in r.output


def test_cli_refuses_to_delete_a_deployed_version(repo: Path, sk_model: Path) -> None:
    from tureen.deployments import Deployments

    reg = ModelRegistry.for_repo(repo)
    reg.register("served", sk_model, "sklearn")
    reg.register("served", sk_model, "sklearn")
    Deployments.for_repo(repo).create("svc", "served", 1)
    run = CliRunner().invoke
    r = run(cli, ["models", "delete", "served:1", "-y", "--repo", str(repo)])
    assert r.exit_code == 1 and "svc (served:1)" in r.output
    r = run(cli, ["models", "delete", "served:2", "-y", "--repo", str(repo)])
    assert r.exit_code == 0, r.output
    r = run(cli, ["models", "delete", "served:1", "-y", "--force", "--repo", str(repo)])
    assert r.exit_code == 0, r.output


# ---- labels or probabilities: a documented option, the served signature is the registered one

@pytest.mark.parametrize(("method", "datatype", "shape"), [
    (None, "INT64", (-1,)),  # labels, in the classes' dtype
    ("predict_proba", "FP64", (-1, 2)),  # one probability per class
])
def test_sklearn_method_is_an_option_and_the_signature_is_what_is_served(
    tmp_path: Path, sk_model: Path, method: str | None, datatype: str, shape: tuple[int, ...]
) -> None:
    from tureen.models.registry import ModelRegistry as Registry
    from tureen.serving.runtimes import model_from_dir, read_settings

    reg = Registry(ModelStore(tmp_path / "models"))
    mv = reg.register("clf", sk_model, "sklearn", method=method)
    assert [(o.name, o.datatype, o.shape) for o in mv.outputs] == [("output-0", datatype, shape)]
    d = Path(mv.uri)
    served = model_from_dir("clf", "1", d, read_settings(d.parent, d))
    served.load()
    assert [(o.name, o.datatype, tuple(o.shape)) for o in served.outputs] == [
        (o.name, o.datatype, o.shape) for o in mv.outputs]
    out = np.asarray(served.predict(np.zeros((3, 3), dtype=np.float32)))
    assert out.shape == ((3,) if method is None else (3, 2))


def test_sklearn_method_must_exist_and_belongs_to_sklearn(tmp_path: Path, sk_model: Path) -> None:
    from tureen.models.registry import ModelRegistry as Registry

    reg = Registry(ModelStore(tmp_path / "models"))
    with pytest.raises(InvalidRequestError, match="predict_log"):
        reg.register("clf", sk_model, "sklearn", method="predict_log")
    with pytest.raises(InvalidRequestError, match="sklearn"):
        reg.register("clf", sk_model.parent, "custom", method="predict_proba")
    with pytest.raises(NotFoundError):  # nothing was registered
        reg.list("clf")


def test_cli_register_method(repo: Path, sk_model: Path) -> None:
    r = CliRunner().invoke(cli, ["models", "register", "p", str(sk_model), "-f", "sklearn",
                                 "--method", "predict_proba", "--repo", str(repo), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["signature"]["outputs"] == [
        {"name": "output-0", "datatype": "FP64", "shape": [-1, 2]}]
