"""The local runner on compiled pipelines (container components; no kfp needed).

The YAML files in ``ir/`` are kfp's compiler output for ``ir/make_ir.py``. Each control-flow
construct is run with the inputs that take each of its branches: kfp's own local runner once
shipped a release where every condition silently took the false branch (kfp#13313).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from tureen.errors import InvalidRequestError, NotFoundError
from tureen.pipelines import RunState, RunStore, TaskState
from tureen.pipelines.local import PipelineRunError, run_pipeline
from tureen.pipelines.records import RunRecord

IR = Path(__file__).parent / "ir"


def run(repo: Path, name: str, params: dict[str, Any] | None = None, **kw: Any) -> RunRecord:
    return run_pipeline(str(IR / f"{name}.yaml"), params or {}, repo=repo, **kw)


def states(r: RunRecord) -> dict[str, str]:
    return {t.id: t.state.value for t in r.tasks}


def out(r: RunRecord, task_id: str, name: str = "out") -> Any:
    t = r.task(task_id)
    assert t is not None, f"no task {task_id}: {[(t.id, t.name) for t in r.tasks]}"
    return t.outputs.parameters[name]


@pytest.mark.parametrize(("coin", "n", "taken", "picked"), [
    ("heads", 5, "condition-2", "H"),
    ("tails", 5, "condition-3", "T"),
    ("edge", 2, "condition-4", "E"),
])
def test_if_elif_else_take_exactly_the_matching_branch(
        tmp_path: Path, coin: str, n: int, taken: str, picked: str) -> None:
    r = run(tmp_path, "branches", {"coin": coin, "n": str(n)})
    assert r.state is RunState.SUCCEEDED, r.error
    s = states(r)
    for branch in ("condition-2", "condition-3", "condition-4"):
        expected = "SUCCEEDED" if branch == taken else "SKIPPED"
        assert s[f"condition-branches-1/{branch}"] == expected, (branch, s)
        inner = [k for k in s if k.startswith(f"condition-branches-1/{branch}/")]
        assert inner and all(s[k] in (expected, "CACHED") for k in inner), (branch, s)
    assert out(r, "picked") == picked  # dsl.OneOf takes the branch that ran
    big, small = s["condition-5"], s["condition-6"]
    assert (big, small) == (("SUCCEEDED", "SKIPPED") if n > 3 else ("SKIPPED", "SUCCEEDED"))
    skipped = r.task("condition-6" if n > 3 else "condition-5")
    assert skipped is not None and skipped.reason is not None
    assert skipped.reason.startswith("condition is false: int(inputs.parameter_values[")


def test_parallel_for_collects_typed_outputs_in_item_order(tmp_path: Path) -> None:
    r = run(tmp_path, "loops")
    assert r.state is RunState.SUCCEEDED, r.error
    squares = out(r, "for-loop-1", "pipelinechannel--square-out")
    assert squares == [1, 4, 9] and all(type(x) is int for x in squares)
    assert out(r, "total") == 14  # the component asserts every element is an int
    assert out(r, "total-raw") == 16 + 25  # display name of the second "total"
    it = {i: r.task(f"for-loop-1[{i}]") for i in range(3)}
    assert all(t is not None and t.state is TaskState.SUCCEEDED for t in it.values())
    first_two_done = min(t.finished_at for t in list(it.values())[:2] if t and t.finished_at)
    third = it[2]
    assert third is not None and third.started_at is not None
    assert third.started_at >= first_two_done  # parallelism=2: the third waited for a slot
    r2 = run(tmp_path, "loops", {"items": "[2, 3]"})
    assert out(r2, "total") == 13


def test_a_failing_step_stops_the_run_keeps_earlier_outputs_and_runs_the_exit_handler(
        tmp_path: Path) -> None:
    r = run(tmp_path, "failing", {"message": "boom"})
    assert r.state is RunState.FAILED
    s = states(r)
    assert s["exit-handler-1/fail"] == "FAILED"
    assert s["exit-handler-1/emit-3"] == "CANCELED"  # downstream of the failure
    assert s["exit-handler-1"] == "FAILED"
    assert s["emit"] == "SUCCEEDED"  # the exit handler's task runs after a failure
    assert out(r, "emit") == "exit handler ran"
    assert s["exit-handler-1/emit-2"] in ("SUCCEEDED", "CACHED")
    assert out(r, "exit-handler-1/emit-2") == "before"
    failed = r.task("exit-handler-1/fail")
    assert failed is not None and failed.error is not None
    assert "task 'fail' failed (exit code 3" in failed.error
    assert "about to fail: boom" in failed.error  # the tail of the task's log
    assert r.error == failed.error
    stored = RunStore.for_repo(tmp_path).get(r.id)
    assert stored.state is RunState.FAILED and stored.error == r.error
    assert "about to fail: boom" in RunStore.for_repo(tmp_path).log(r.id,
                                                                    "exit-handler-1/fail")


def test_retries_env_artifacts_placeholders_and_the_ignored_options_warning(
        tmp_path: Path) -> None:
    marker = tmp_path / "attempts"
    r = run(tmp_path, "options", {"marker": str(marker)})
    assert r.state is RunState.SUCCEEDED, r.error
    flaky = r.task("flaky")
    assert flaky is not None and flaky.attempts == 3 and marker.read_text().strip() == "3"
    assert out(r, "show-env") == "hello"  # set_env_variable
    assert out(r, "read-file") == "payload"  # an artifact passed between tasks
    assert out(r, "fstring") == "id-7"  # an f-string argument with a task output inside
    (warning,) = r.warnings
    for part in ("cpu limit 2 (show-env)", "memory limit 1G (show-env)", "image alpine"):
        assert part in warning


def test_cache_hits_and_misses_say_why(tmp_path: Path) -> None:
    first = run(tmp_path, "loops")
    sq = "for-loop-1[0]/square"
    t = first.task(sq)
    assert t is not None and t.cache is not None and not t.cache.hit
    assert t.cache.reason == "no cached result yet for this task"
    second = run(tmp_path, "loops")
    t = second.task(sq)
    assert t is not None and t.state is TaskState.CACHED and t.cache is not None
    assert t.cache.reason == f"same code, inputs and data as run {first.id}"
    assert t.outputs.parameters == {"out": 1}
    third = run(tmp_path, "loops", {"items": "[7, 2, 3]"})
    t = third.task(sq)
    assert t is not None and t.state is TaskState.SUCCEEDED and t.cache is not None
    assert t.cache.reason == "inputs changed: x 1 → 7"
    assert states(third)["for-loop-1[1]/square"] == "CACHED"
    nocache = run(tmp_path, "loops", use_cache=False)
    assert {t.cache.reason for t in nocache.tasks if t.cache} == {"--no-cache"}


def test_cached_artifacts_that_are_gone_are_a_miss(tmp_path: Path) -> None:
    first = run(tmp_path, "options", {"marker": str(tmp_path / "m1")})
    w = first.task("write-file")
    assert w is not None
    Path(w.outputs.artifacts["data"][0].uri).unlink()
    second = run(tmp_path, "options", {"marker": str(tmp_path / "m1")})
    w2 = second.task("write-file")
    assert w2 is not None and w2.cache is not None and not w2.cache.hit
    assert "are gone" in w2.cache.reason and w2.state is TaskState.SUCCEEDED
    assert out(second, "read-file") == "payload"


def test_resume_from_a_step_reuses_upstream_outputs(tmp_path: Path) -> None:
    first = run(tmp_path, "loops")
    again = run(tmp_path, "loops", resume_from="total")
    assert again.resumed_from == f"{first.id}:total"
    total = again.task("total")
    assert total is not None and total.state is TaskState.SUCCEEDED
    assert total.cache is not None and total.cache.reason == "--resume-from total: runs again"
    sq = again.task("for-loop-1[0]/square")
    assert sq is not None and sq.state is TaskState.CACHED and sq.cache is not None
    assert sq.cache.reason == f"--resume-from total: outputs of run {first.id}"
    with pytest.raises(PipelineRunError, match=r"no task 'totl'.*total") as err:
        run(tmp_path, "loops", resume_from="totl")
    assert isinstance(err.value.__cause__, NotFoundError)


@pytest.mark.parametrize("isolation", ["fork", "forkserver", "subprocess"])
def test_every_isolation_gives_the_same_results(tmp_path: Path, isolation: str) -> None:
    r = run(tmp_path, "branches", {"coin": "tails"}, isolation=isolation, use_cache=False)
    assert r.state is RunState.SUCCEEDED and out(r, "picked") == "T"


SCRIPT = """\
import sys, threading, time
from pathlib import Path
from tureen.pipelines.local import run_pipeline
from tureen.pipelines.pool import Pool

with Path(sys.argv[1]).open("a") as f:  # no __main__ guard, as in a plain script
    f.write("ran\\n")
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
modes = []
start = Pool.start
Pool.start = lambda self, job: modes.append(self._mode()) or start(self, job)
r = run_pipeline(sys.argv[2], {"coin": "tails"}, repo=sys.argv[3], use_cache=False)
me = str(__import__("os").getpid())
kids = [p.name for p in Path("/proc").iterdir() if p.name.isdigit()
        and (p / "stat").read_text().split(") ")[1].split()[1] == me]
print(r.state.value, sorted(set(modes)), kids)
"""


def test_a_caller_with_threads_gets_a_fork_server_that_never_reruns_its_script(
        tmp_path: Path) -> None:
    """Forking a process that has other threads can hang the child (see the OpenMP test in
    test_kfp_constructs), so such a caller's tasks fork from a clean server process, which
    must neither re-run the caller's script (multiprocessing's fork server does) nor outlive
    the run."""
    import subprocess
    import sys

    script, marker = tmp_path / "script.py", tmp_path / "ran.txt"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(marker), str(IR / "branches.yaml"),
                           str(tmp_path)], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[-2] == "SUCCEEDED ['forkserver'] []"
    assert marker.read_text() == "ran\n"


def test_a_fork_server_that_died_is_a_clear_error(tmp_path: Path) -> None:
    from tureen.pipelines.pool import Pool
    from tureen.pipelines.worker import Job

    job = Job("t", "command", {"outputs": {"outputFile": str(tmp_path / "out.json")}},
              str(tmp_path / "t.log"), str(tmp_path / "digests.json"), str(tmp_path),
              argv=["true"])
    pool = Pool("forkserver")
    try:
        pool.start(job)
        done = []
        while not done:
            done = pool.wait(1.0)
        assert done[0][1] == 0 and done[0][0].mode == "forkserver"
        assert pool.server is not None
        pool.server.proc.kill()
        pool.server.proc.wait()
        with pytest.raises(RuntimeError, match=r"the task fork server exited \(code -9\)"):
            pool.start(job)
    finally:
        pool.close()


@pytest.mark.parametrize(("params", "message"), [
    ({}, "needs parameter 'marker' (STRING); pass --param marker=VALUE"),
    ({"marker": "x", "makrer": "y"}, "has no parameter 'makrer'. Did you mean 'marker'?"),
])
def test_bad_parameters_fail_with_a_run_record(tmp_path: Path, params: dict[str, str],
                                               message: str) -> None:
    with pytest.raises(PipelineRunError, match=re.escape(message)) as err:
        run(tmp_path, "options", params)
    rec = RunStore.for_repo(tmp_path).get(err.value.run_id)
    assert rec.state is RunState.FAILED and message in (rec.error or "")
    assert rec.tasks == []


def test_a_parameter_of_the_wrong_type_is_named(tmp_path: Path) -> None:
    with pytest.raises(PipelineRunError, match="parameter 'n' expects an integer"):
        run(tmp_path, "branches", {"n": "five"})


def test_files_that_are_not_pipelines(tmp_path: Path) -> None:
    comp = tmp_path / "component.yaml"
    comp.write_text("name: x\nimplementation:\n  container:\n    image: alpine\n")
    with pytest.raises(PipelineRunError, match=r"not a pipeline|no `root`"):
        run_pipeline(str(comp), repo=tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("root: [unclosed\n")
    with pytest.raises(PipelineRunError, match="not valid YAML"):
        run_pipeline(str(bad), repo=tmp_path)
    with pytest.raises(PipelineRunError, match="does not exist"):
        run_pipeline(str(tmp_path / "missing.yaml"), repo=tmp_path)
    text = (IR / "branches.yaml").read_text().replace("producerTask: condition-branches-1",
                                                      "producerTask: nowhere")
    broken = tmp_path / "broken.yaml"
    broken.write_text(text)
    with pytest.raises(PipelineRunError, match=r"emit-4 \(picked\).*no task 'nowhere'"):
        run_pipeline(str(broken), repo=tmp_path)


@pytest.mark.parametrize("isolation", ["fork", "forkserver"])
def test_ctrl_c_stops_running_tasks_and_records_a_canceled_run(tmp_path: Path,
                                                               isolation: str) -> None:
    text = (IR / "options.yaml").read_text().replace('- n=$(cat "$0"',
                                                     '- sleep 60; n=$(cat "$0"')
    assert "sleep 60" in text
    slow = tmp_path / "slow.yaml"
    slow.write_text(text)
    pids: list[int] = []

    def interrupt(rec: RunRecord) -> None:
        flaky = rec.task("flaky")
        if flaky is not None and flaky.state is TaskState.RUNNING:
            deadline = time.monotonic() + 20
            while not pids and time.monotonic() < deadline:  # the task's `sh` and `sleep`
                pids.extend(_processes_of_run(rec.id))
                time.sleep(0.05)
            raise KeyboardInterrupt

    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(str(slow), {"marker": str(tmp_path / "m")}, repo=tmp_path,
                     on_update=interrupt, isolation=isolation)
    assert time.monotonic() - t0 < 60
    rec = RunStore.latest(RunStore.for_repo(tmp_path))
    assert rec is not None and rec.state is RunState.CANCELED
    assert states(rec)["flaky"] == "CANCELED"
    assert pids
    time.sleep(0.5)
    assert _processes_of_run(rec.id) == []  # the task's processes are gone


def _processes_of_run(run_id: str) -> list[int]:
    """Processes started (exec'd) with this run's environment."""
    needle = f"TUREEN_PIPELINE_RUN_ID={run_id}".encode()
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if needle in (p / "environ").read_bytes().split(b"\0") and \
                        (p / "stat").read_text().split(") ")[1].split()[0] != "Z":
                    out.append(int(p.name))
            except (OSError, IndexError):
                continue
    return out


def test_invalid_conditions_fail_the_task_not_the_runner(tmp_path: Path) -> None:
    text = (IR / "branches.yaml").read_text().replace(
        "int(inputs.parameter_values['pipelinechannel--n']) > 3",
        "int(inputs.parameter_values['pipelinechannel--n']) > 'x'")
    f = tmp_path / "badcond.yaml"
    f.write_text(text)
    r = run_pipeline(str(f), repo=tmp_path)
    assert r.state is RunState.FAILED
    t = r.task("condition-5")
    assert t is not None and t.state is TaskState.FAILED
    assert "cannot compare int > string" in (t.error or "")


def test_input_errors_keep_their_kind(tmp_path: Path) -> None:
    with pytest.raises(PipelineRunError, match="expects JSON a list") as err:
        run(tmp_path, "loops", {"items": "not json ["})
    assert isinstance(err.value.__cause__, InvalidRequestError)


def _mutate(name: str, tmp_path: Path, fn: Any) -> Path:
    import yaml

    doc = yaml.safe_load((IR / f"{name}.yaml").read_text())
    fn(doc)
    out = tmp_path / f"{name}-changed.yaml"
    out.write_text(yaml.safe_dump(doc))
    return out


def test_hostile_specs_are_refused_before_anything_runs(tmp_path: Path) -> None:
    def traversal(doc: dict[str, Any]) -> None:
        outs = doc["components"]["comp-emit"]["outputDefinitions"]["parameters"]
        outs["../../escape"] = outs.pop("out")

    def self_containing(doc: dict[str, Any]) -> None:
        doc["components"]["comp-for-loop-1"]["dag"]["tasks"]["square"]["componentRef"][
            "name"] = "comp-for-loop-1"

    def circular(doc: dict[str, Any]) -> None:
        tasks = doc["root"]["dag"]["tasks"]
        tasks["total"]["dependentTasks"] = ["for-loop-1", "total-2"]
        tasks["total-2"]["dependentTasks"] = ["for-loop-3", "total"]

    for name, fn, msg in (("branches", traversal, "'../../escape' is not a valid"),
                          ("loops", self_containing, "contains itself: comp-for-loop-1 → "
                                                     "comp-for-loop-1"),
                          ("loops", circular, "depend on each other in a cycle: "
                                              "['total', 'total-2']")):
        with pytest.raises(PipelineRunError, match=re.escape(msg)):
            run_pipeline(str(_mutate(name, tmp_path, fn)), repo=tmp_path)
    assert not (tmp_path / "escape").exists()


def test_huge_logs_are_read_from_their_end(tmp_path: Path) -> None:
    from tureen.pipelines.runs import tail_text

    log = tmp_path / "big.log"
    with log.open("w") as f:
        for i in range(200_000):
            f.write(f"line {i}\n")
    assert tail_text(log, 2) == "line 199998\nline 199999"
    text = tail_text(log, None, max_bytes=1000)
    assert text.startswith("[... ") and text.endswith("line 199999\n") and len(text) < 1100
