"""Local pipeline runs: per-task overhead next to kfp's own local runner, and the fraud pipeline.

Needs the pipelines extra (``pip install 'tureen[pipelines]'``). Every measurement runs in a
fresh Python process, as a user's command would, ``--rounds`` times; the JSON reports medians.

- ``noop``: a chain of 10 no-op Python components (so none can run in parallel), caching
  off. tureen's runner (``run_pipeline``, the file imported and compiled by kfp in the same
  process) next to kfp's ``local.SubprocessRunner(use_venv=False)`` on the same pipeline.
  Overhead per task = wall time of the run / 10 (it also carries the import and compile, so
  it is an upper bound). Target: ≤ 0.3 s per task.
- ``fraud``: ``tureen init``'s fraud pipeline on the quickstart data (training set, train,
  evaluate, register, gate, canary). Before each round the deployment is reset to a weak
  first model, so every round ends with the new version as a 10% canary; caching off.
  Target: ≤ 30 s. Then a fully cached rerun (every task CACHED), timed as the run itself
  (``run.duration_s``: load, cache keys with the data and deployment snapshots, records) and
  as the whole ``tureen pipeline run`` command (interpreter start and imports included).
  Target: ≤ 1 s.

Usage: ``python bench/bench_pipelines.py [--rounds 3] [--root DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

NOOP = textwrap.dedent("""\
    from kfp import dsl

    @dsl.component(base_image="python:3.11")
    def noop(i: int) -> int:
        return i

    @dsl.pipeline
    def noops():
        prev = noop(i=0)
        for _ in range(9):
            prev = noop(i=prev.output)
    """)

TUREEN_NOOP = textwrap.dedent("""\
    import json, sys, time
    t0 = time.perf_counter()
    from tureen.pipelines.local import run_pipeline
    run = run_pipeline(sys.argv[1], repo=sys.argv[2], use_cache=False)
    assert run.state.value == "SUCCEEDED", run.error
    print(json.dumps({"wall_s": time.perf_counter() - t0, "run_s": run.duration_s,
                      "tasks": [t.duration_s for t in run.tasks]}))
    """)

KFP_NOOP = textwrap.dedent("""\
    import importlib.util, json, sys, time
    t0 = time.perf_counter()
    from kfp import local
    spec = importlib.util.spec_from_file_location("noop_pipeline", sys.argv[1])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=sys.argv[2])
    t1 = time.perf_counter()
    mod.noops()
    print(json.dumps({"wall_s": time.perf_counter() - t0, "run_s": time.perf_counter() - t1}))
    """)

TUREEN_FRAUD = textwrap.dedent("""\
    import json, sys, time
    t0 = time.perf_counter()
    from tureen.pipelines.local import run_pipeline
    t1 = time.perf_counter()
    run = run_pipeline("pipelines/train_fraud.py", repo=".", use_cache=sys.argv[1] == "cache")
    assert run.state.value == "SUCCEEDED", run.error
    gate = run.task("deploy-gate").outputs.parameters
    print(json.dumps({"wall_s": time.perf_counter() - t0, "import_s": t1 - t0,
                      "run_s": run.duration_s, "states": sorted({t.state.value for t in run.tasks}),
                      "gate": gate, "tasks": {t.id: t.duration_s for t in run.tasks}}))
    """)


def _py(code: str, *args: str, cwd: Path | None = None, timeout: float = 600) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONWARNINGS":
                                                           "ignore::FutureWarning"})
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-4000:])
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def _med(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def bench_noop(root: Path, rounds: int) -> dict[str, Any]:
    f = root / "noop.py"
    f.write_text(NOOP)
    tureen, kfp = [], []
    for i in range(rounds):  # alternate, so both see the same machine load
        tureen.append(_py(TUREEN_NOOP, str(f), str(root / "repo")))
        try:
            kfp.append(_py(KFP_NOOP, str(f), str(root / f"kfp-root-{i}")))
        except RuntimeError as exc:
            kfp.append({"error": str(exc)[-500:]})
    ok = [k for k in kfp if "wall_s" in k]
    t_wall = _med([r["wall_s"] for r in tureen])
    out: dict[str, Any] = {
        "tasks": 10,
        "tureen": {"wall_s": t_wall, "per_task_s": round(t_wall / 10, 3),
                   "task_process_s": _med([d for r in tureen for d in r["tasks"]]),
                   "rounds": [round(r["wall_s"], 3) for r in tureen]},
        "kfp_subprocess_runner": {"wall_s": _med([k["wall_s"] for k in ok]) if ok else None,
                                  "per_task_s": _med([k["run_s"] / 10 for k in ok]) if ok
                                  else None,
                                  "rounds": [round(k["wall_s"], 3) if "wall_s" in k else k
                                             for k in kfp]},
    }
    if ok:
        out["kfp_over_tureen_wall"] = round(_med([k["wall_s"] for k in ok]) / t_wall, 2)
    return out


def bench_fraud(root: Path, rounds: int) -> dict[str, Any]:
    from tureen.deployments import Deployments
    from tureen.examples.fraud import create_repo
    from tureen.store import FeatureStore

    repo = create_repo(root / "fraud")
    FeatureStore(repo).apply()
    cli = [str(Path(sys.executable).parent / "tureen"), "pipeline", "run",
           "pipelines/train_fraud.py", "--json"]
    proc = subprocess.run([*cli, "-p", "max_iter=5", "-p", "max_depth=1", "-p",
                           "learning_rate=0.01"], cwd=repo, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    full = []
    for _ in range(rounds):
        deps = Deployments.for_repo(repo)
        deps.update("fraud", clear_canary=True)
        deps.update("fraud", version=1)
        r = _py(TUREEN_FRAUD, "nocache", cwd=repo, timeout=900)
        assert r["gate"]["action"] == "canary", r["gate"]
        full.append(r)
    _py(TUREEN_FRAUD, "cache", cwd=repo)  # the cache now matches the deployment's state
    cached, cli_s = [], []
    for _ in range(rounds):
        r = _py(TUREEN_FRAUD, "cache", cwd=repo)
        assert r["states"] == ["CACHED"], r
        cached.append(r)
        t = time.perf_counter()
        subprocess.run(cli, cwd=repo, capture_output=True, check=True, timeout=300)
        cli_s.append(time.perf_counter() - t)
    steps = {k: _med([r["tasks"][k] for r in full]) for k in full[0]["tasks"]}
    return {
        "full_run_s": _med([r["run_s"] for r in full]),
        "full_run_rounds": [r["run_s"] for r in full],
        "full_steps_s": steps,
        "gate": full[-1]["gate"]["reason"],
        "cached_rerun_s": _med([r["run_s"] for r in cached]),
        "cached_rerun_rounds": [r["run_s"] for r in cached],
        "cached_rerun_import_s": _med([r["import_s"] for r in cached]),
        "cached_rerun_cli_wall_s": _med(cli_s),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--root", type=Path, default=None, help="work folder (default: a temp dir)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tureen-bench-pipelines-") as tmp:
        root = args.root or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        load_before = os.getloadavg()
        result = {"benchmark": "pipelines", "rounds": args.rounds,
                  "cpus": os.cpu_count(), "loadavg_before": [round(x, 2) for x in load_before],
                  "noop": bench_noop(root, args.rounds),
                  "fraud": bench_fraud(root, args.rounds),
                  "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
