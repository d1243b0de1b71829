"""Pipelines written with the KFP v2 SDK (``kfp_pipelines.py``), compiled by kfp and run by
tureen's local runner — each control-flow construct with the inputs that take each branch
(kfp#13313 shipped a local runner where every condition took the false branch) — and
compiled by ``tureen pipeline compile`` into IR that kfp loads back and the schema accepts.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.services import require_kfp

from tureen.pipelines import RunState, RunStore, TaskState
from tureen.pipelines.local import PipelineRunError, run_pipeline
from tureen.pipelines.records import RunRecord

HERE = Path(__file__).parent
PIPELINES = HERE / "kfp_pipelines.py"


@pytest.fixture(autouse=True)
def _kfp() -> None:
    require_kfp()


def run(repo: Path, name: str, params: dict[str, Any] | None = None, **kw: Any) -> RunRecord:
    return run_pipeline(f"{PIPELINES}:{name}", params or {}, repo=repo, **kw)


def out(r: RunRecord, task: str, name: str = "Output") -> Any:
    t = r.task(task)
    assert t is not None, [(x.id, x.name) for x in r.tasks]
    return t.outputs.parameters[name]


def state(r: RunRecord, task: str) -> TaskState:
    t = r.task(task)
    assert t is not None, [(x.id, x.name) for x in r.tasks]
    return t.state


@pytest.mark.parametrize(("p", "n", "picked"), [(0.7, 5, "H"), (0.3, 2, "T"), (0.05, 4, "E")])
def test_conditions_take_the_branch_their_inputs_choose(tmp_path: Path, p: float, n: int,
                                                        picked: str) -> None:
    r = run(tmp_path, "conditions", {"p": str(p), "n": str(n)})
    assert r.state is RunState.SUCCEEDED, r.error
    assert out(r, "picked") == picked
    said = {t.outputs.parameters["Output"] for t in r.tasks
            if t.name.startswith("say") and t.state is not TaskState.SKIPPED}
    assert said == {picked}  # exactly one branch of If/Elif/Else ran
    assert state(r, "big") is (TaskState.SUCCEEDED if n > 3 else TaskState.SKIPPED)
    assert state(r, "small") is (TaskState.SUCCEEDED if n <= 3 else TaskState.SKIPPED)


def test_collected_keeps_types_and_order(tmp_path: Path) -> None:
    r = run(tmp_path, "collected")
    assert r.state is RunState.SUCCEEDED, r.error
    got = json.loads(out(r, "describe"))
    assert got["xs"] == [1, 4, 9] and got["kinds"]["xs"] == ["int"]  # kfp.local: floats
    assert got["ys"] == [0.5, 1.0, 1.5] and got["kinds"]["ys"] == ["float"]
    assert got["nested"] == [[100, 400], [100, 400]] and got["kinds"]["nested"] == ["int"]
    assert out(r, "join") == "a+b"  # a list of artifacts, in item order


def test_exit_handler_sees_the_final_status(tmp_path: Path) -> None:
    failed = run(tmp_path, "exit_status", {"fail": "true"})
    assert failed.state is RunState.FAILED
    boom = failed.task("boom")
    assert boom is not None and boom.error is not None
    assert "ValueError: this step broke: on purpose" in boom.error
    assert 'raise ValueError(f"this step broke: {message}")' in boom.error  # the source line
    assert "tureen/pipelines" not in boom.error  # no runner frames in the user's traceback
    report = failed.task("report")
    assert report is not None and report.state is TaskState.SUCCEEDED
    status = json.loads(Path(report.outputs.artifacts["out"][0].uri).read_text())
    assert status["state"] == "FAILED" and "this step broke" in status["error"]
    ok = run(tmp_path, "exit_status", {"fail": "false"})
    assert ok.state is RunState.SUCCEEDED
    report = ok.task("report")
    assert report is not None
    assert json.loads(Path(report.outputs.artifacts["out"][0].uri).read_text())["state"] == \
        "SUCCEEDED"


def test_retries_env_named_outputs_metrics_importer_and_ignored_options(tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    r = run(tmp_path, "options", {"counter": str(counter)})
    assert r.state is RunState.SUCCEEDED, r.error
    flaky = r.task("flaky")
    assert flaky is not None and flaky.attempts == 3 and out(r, "flaky") == 3
    assert out(r, "read-env") == "hi"
    assert out(r, "fstring") == "two=2"
    assert out(r, "pair", "count") == 2 and out(r, "pair", "label") == "two"
    assert r.metrics() == {"score.auc": 0.91, "score.rows": 100.0}
    (cm,) = r.classification_metrics()
    assert cm.confusion_matrix is not None and cm.confusion_matrix.labels == ["no", "yes"]
    assert cm.confusion_matrix.rows == [[50, 3], [4, 43]]
    assert [p.tpr for p in cm.roc] == [0.0, 0.8, 1.0]
    imp = r.task("importer")
    assert imp is not None
    (art,) = imp.outputs.artifacts["artifact"]
    assert art.uri == str(counter) and art.metadata == {"source": "test"}
    (warning,) = r.warnings
    assert "accelerator nvidia.com/gpu x1 (read-env)" in warning and "image python:3.11" in \
        warning


def test_sub_pipelines_pass_outputs_up(tmp_path: Path) -> None:
    r = run(tmp_path, "outer", {"x": "3"})
    assert r.state is RunState.SUCCEEDED, r.error
    assert out(r, "inner") == 9 and out(r, "again") == 81


def _write(tmp_path: Path, name: str, body: str) -> Path:
    f = tmp_path / name
    f.write_text(textwrap.dedent(body))
    return f


def test_a_file_that_does_not_import_names_the_line(tmp_path: Path) -> None:
    f = _write(tmp_path, "broken.py", """\
        from kfp import dsl

        x = undefined_name
        """)
    with pytest.raises(PipelineRunError, match=r"broken\.py:3: the pipeline file does not "
                                               r"import: NameError: name 'undefined_name'"):
        run_pipeline(str(f), repo=tmp_path)
    _assert_failed_record(tmp_path, "broken.py:3: the pipeline file does not import")


def _assert_failed_record(repo: Path, message: str) -> None:
    """The run record says what happened: FAILED, the error, no task started."""
    rec = RunStore.for_repo(repo).latest()
    assert rec is not None and rec.state is RunState.FAILED
    assert message in (rec.error or "")
    assert rec.tasks == []


def test_a_component_output_of_the_wrong_type_is_refused(tmp_path: Path) -> None:
    f = _write(tmp_path, "types.py", """\
        from kfp import dsl

        @dsl.component(base_image="python:3.11")
        def text() -> str:
            return "x"

        @dsl.component(base_image="python:3.11")
        def number(n: int) -> int:
            return n

        @dsl.pipeline
        def p():
            number(n=text().output)
        """)
    with pytest.raises(PipelineRunError, match=r"types\.py:13.*Incompatible argument passed "
                                               r"to the input 'n'"):
        run_pipeline(str(f), repo=tmp_path)
    _assert_failed_record(tmp_path, "Incompatible argument passed to the input 'n'")


def test_a_component_returning_the_wrong_type_fails_its_task(tmp_path: Path) -> None:
    r = run(tmp_path, "wrong_return")
    assert r.state is RunState.FAILED
    assert (state(r, "produce"), state(r, "square")) == (TaskState.FAILED, TaskState.CANCELED)
    want = ("task 'produce' failed (exit code 1, attempt 1): ValueError: Function `produce` "
            "returned value of type <class 'str'>; want type <class 'int'>")
    assert r.error is not None and r.error.startswith(want)
    assert "kfp/dsl/executor.py" not in r.error  # the log tail is the message, not kfp's frames
    assert RunStore.for_repo(tmp_path).get(r.id).error == r.error


def test_missing_packages_are_listed_and_nothing_is_installed(tmp_path: Path) -> None:
    f = _write(tmp_path, "deps.py", """\
        from kfp import dsl

        @dsl.component(base_image="python:3.11",
                       packages_to_install=["pandas>=1", "surely-not-installed-pkg==1.0"])
        def uses() -> int:
            return 1

        @dsl.pipeline
        def p():
            uses()
        """)
    with pytest.raises(PipelineRunError) as err:
        run_pipeline(str(f), repo=tmp_path)
    msg = str(err.value)
    assert "surely-not-installed-pkg==1.0  (needed by uses)" in msg
    assert "pip install 'surely-not-installed-pkg==1.0'" in msg
    assert "pandas" not in msg  # installed here, and new enough


def test_several_pipelines_need_a_name(tmp_path: Path) -> None:
    with pytest.raises(PipelineRunError, match=r"defines \d+ pipelines .*pick one"):
        run_pipeline(str(PIPELINES), repo=tmp_path)
    with pytest.raises(PipelineRunError, match=r"no pipeline named 'conditons'.*conditions"):
        run_pipeline(f"{PIPELINES}:conditons", repo=tmp_path)


def test_compiled_yaml_matches_the_schema_loads_in_kfp_and_runs_here(tmp_path: Path) -> None:
    from kfp import compiler, components, dsl

    from tureen.pipelines.compile import check_schema, compile_pipeline

    dest = tmp_path / "conditions.yaml"
    result = compile_pipeline(f"{PIPELINES}:conditions", dest, repo=tmp_path)
    assert result.name == "conditions"
    docs = list(yaml.safe_load_all(dest.read_text()))
    check_schema(docs[0])  # strict protobuf parse: unknown fields and wrong types fail
    loaded = components.load_component_from_file(str(dest))  # kfp reads it back

    @dsl.pipeline
    def wrapper():  # type: ignore[no-untyped-def]  # kfp reads annotations, here strings
        loaded(p=0.3, n=1)

    compiler.Compiler().compile(wrapper, str(tmp_path / "wrapper.yaml"))
    r = run_pipeline(str(dest), {"p": "0.3", "n": "1"}, repo=tmp_path)
    assert r.state is RunState.SUCCEEDED and out(r, "picked") == "T"
    w = run_pipeline(str(tmp_path / "wrapper.yaml"), repo=tmp_path)
    assert w.state is RunState.SUCCEEDED
    assert {t.outputs.parameters.get("Output") for t in w.tasks if t.name == "picked"} == {"T"}


def test_compile_refuses_local_paths_and_sets_the_tureen_image(tmp_path: Path) -> None:
    from tureen.errors import InvalidRequestError
    from tureen.pipelines.compile import compile_pipeline

    data = tmp_path / "data.csv"
    data.write_text("x\n1\n")
    f = _write(tmp_path, "paths.py", f"""\
        from kfp import dsl
        from tureen.pipelines.components import training_set

        @dsl.pipeline
        def p(entities: str = {str(data)!r}):
            training_set(entities=entities, feature_service="fs")
        """)
    with pytest.raises(InvalidRequestError, match=re.escape(
            f"pipeline parameter 'entities' is the local path {data}")):
        compile_pipeline(str(f), tmp_path / "out.yaml", repo=tmp_path)
    f.write_text(f.read_text().replace(repr(str(data)), "'data/labels.parquet'"))
    compile_pipeline(str(f), tmp_path / "out.yaml", image="reg.example/tureen:7",
                     repo=tmp_path)
    doc = yaml.safe_load(next(iter([(tmp_path / "out.yaml").read_text()])))
    images = {e["container"]["image"] for e in doc["deploymentSpec"]["executors"].values()}
    assert images == {"reg.example/tureen:7"}
    assert str(tmp_path) not in (tmp_path / "out.yaml").read_text()


def test_tasks_run_when_the_caller_already_has_native_threads(tmp_path: Path) -> None:
    """A process that used OpenMP (scikit-learn, LightGBM, ...) keeps its thread pool, and a
    child forked from it that uses OpenMP again hangs in libgomp. A notebook that trained a
    model and then runs a pipeline is such a process: the runner must not fork it."""
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier

    x = np.random.default_rng(1).normal(size=(2000, 5))
    HistGradientBoostingClassifier(max_iter=5).fit(x, x[:, 0] > 0)  # OpenMP threads now
    f = _write(tmp_path, "omp.py", """\
        from kfp import dsl

        @dsl.component(base_image="python:3.11")
        def fit() -> int:
            import numpy as np
            from sklearn.ensemble import HistGradientBoostingClassifier
            x = np.random.default_rng(0).normal(size=(2000, 5))
            return int(HistGradientBoostingClassifier(max_iter=20).fit(x, x[:, 0] > 0).n_iter_)

        @dsl.pipeline
        def omp():
            fit()
        """)
    r = run_pipeline(str(f), repo=tmp_path, use_cache=False)
    assert r.state is RunState.SUCCEEDED, r.error
    assert out(r, "fit") == 20
