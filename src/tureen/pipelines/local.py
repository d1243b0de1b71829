"""``run_pipeline``: run a KFP v2 pipeline on this machine, offline, in this environment.

    from tureen.pipelines.local import run_pipeline
    run = run_pipeline("pipelines/train_fraud.py", {"learning_rate": "0.1"}, repo="fraud_repo")
    run.state, run.metrics()

Every attempt gets a run record, also one that fails before a task starts (a file that does
not import, a missing parameter, a package that is not installed): ``PipelineRunError``
carries its id. A run whose task fails returns its record with state FAILED; the failed
task's record holds the error and the tail of its log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tureen.errors import InvalidRequestError, NotFoundError, TureenError, suggest
from tureen.pipelines.cache import TaskCache
from tureen.pipelines.engine import Engine, RunOptions, SnapshotProbe, task_paths
from tureen.pipelines.executors import classify, ignored_options, missing_packages
from tureen.pipelines.loader import KFP_MISSING, LoadedPipeline, kfp_available, load, split_target
from tureen.pipelines.records import RunRecord, RunState
from tureen.pipelines.runs import RunStore, new_run_id
from tureen.pipelines.snapshot import probe
from tureen.pipelines.spec import PipelineSpec
from tureen.pipelines.values import coerce, from_text

log = logging.getLogger(__name__)


class PipelineRunError(TureenError):
    """A run could not start; ``run_id`` names its record."""

    def __init__(self, message: str, run_id: str) -> None:
        super().__init__(message)
        self.run_id = run_id


def typed_parameters(spec: PipelineSpec, given: Mapping[str, Any],
                     python_defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The root inputs: given values (text from a CLI, or Python values) typed as declared,
    then defaults (the pipeline function's own, which keep ints ints), then a check that
    every required one has a value."""
    declared = spec.root.interface.params_in
    unknown = [k for k in given if k not in declared]
    if unknown:
        k = unknown[0]
        raise InvalidRequestError(
            f"pipeline {spec.name!r} has no parameter {k!r}.{suggest(k, declared)} "
            f"Its parameters: {', '.join(sorted(declared)) or 'none'}.")
    out: dict[str, Any] = {}
    for name, p in declared.items():
        where = f"parameter {name!r}"
        if name in given:
            v = given[name]
            out[name] = from_text(v, p.type, where) if isinstance(v, str) \
                else coerce(v, p.type, where)
        elif name in python_defaults:
            out[name] = coerce(python_defaults[name], p.type, where)
        elif p.has_default:
            out[name] = coerce(p.default, p.type, where)
        elif not p.optional:
            raise InvalidRequestError(
                f"pipeline {spec.name!r} needs parameter {name!r} ({p.type}); pass "
                f"--param {name}=VALUE.")
    return out


def _resume(store: RunStore, spec: PipelineSpec, step: str, current: str
            ) -> tuple[RunRecord, str]:
    run_id, sep, task = step.rpartition(":") if ":" in step else ("", "", step)
    prev = store.get(run_id) if sep else next(
        (r for r in store.iter(spec.name) if r.id != current and r.tasks), None)
    if prev is None:
        raise NotFoundError(f"--resume-from {step}: no earlier run of {spec.name!r} to resume "
                            "from; run the pipeline once first.")
    paths = task_paths(spec)
    names = {p.rsplit("/", 1)[-1] for p in paths}
    if task not in paths and task not in names:
        raise NotFoundError(f"--resume-from: pipeline {spec.name!r} has no task {task!r}."
                            f"{suggest(task, paths | names)}")
    return prev, task


def run_pipeline(
    target: str,
    params: Mapping[str, Any] | None = None,
    *,
    repo: str | Path = ".",
    use_cache: bool = True,
    resume_from: str | None = None,
    isolation: str | None = None,
    max_parallel: int | None = None,
    on_update: Callable[[RunRecord], None] | None = None,
    on_start: Callable[[RunRecord], None] | None = None,
    snapshot_probe: SnapshotProbe | None = None,
) -> RunRecord:
    repo_path = Path(repo).resolve()
    store, cache = RunStore.for_repo(repo_path), TaskCache.for_repo(repo_path)
    path, name = split_target(target)
    if not path.is_absolute() and not path.exists() and (repo_path / path).exists():
        path = repo_path / path  # relative to the repo rather than the working directory
        target = f"{path}:{name}" if name else str(path)
    record = RunRecord(id=new_run_id(), pipeline=name or path.stem, source=target,
                       created_at=datetime.now(UTC), cache_enabled=use_cache)
    store.create(record)
    try:
        loaded: LoadedPipeline = load(target, cache.root / "compiled")
        spec = PipelineSpec.parse(loaded.doc, loaded.platform)
        record.pipeline = spec.name
        (store.run_dir(record.id) / "pipeline.yaml").write_text(_dump(loaded))
        record.parameters = typed_parameters(spec, params or {}, loaded.python_defaults)
        if any(classify(k, v).kind == "python" for k, v in spec.executors.items()) \
                and not kfp_available():
            raise InvalidRequestError(f"{target} has Python components; running them "
                                      f"{KFP_MISSING}")
        missing = missing_packages(spec)
        if missing:
            lines = [f"  {req}  (needed by {', '.join(tasks)})" for req, tasks in missing.items()]
            pip = " ".join(f"'{r}'" for r in missing)
            raise InvalidRequestError(
                "packages the pipeline's components install on Kubeflow are not installed "
                "here, and a local run never installs anything:\n" + "\n".join(lines)
                + f"\ninstall them into this environment: pip install {pip}")
        resume = _resume(store, spec, resume_from, record.id) if resume_from else None
        if resume is not None:
            record.resumed_from = f"{resume[0].id}:{resume[1]}"
        ignored = ignored_options(spec)
        if ignored:
            msg = "a local run ignores these task settings: " + "; ".join(ignored)
            record.warnings.append(msg)
            log.info(msg)
    except TureenError as exc:
        record.state, record.error = RunState.FAILED, str(exc)
        record.finished_at = datetime.now(UTC)
        record.duration_s = round((record.finished_at - record.created_at).total_seconds(), 3)
        store.save(record)
        raise PipelineRunError(str(exc), record.id) from exc
    store.save(record)
    if on_start is not None:
        on_start(record)
    options = RunOptions(use_cache=use_cache, isolation=isolation, resume=resume,
                         on_update=on_update, snapshot_probe=snapshot_probe or probe)
    if max_parallel is not None:
        options.max_parallel = max(1, max_parallel)
    engine = Engine(spec, record, store, cache, repo_path, options)
    return engine.execute(record.parameters)


def _dump(loaded: LoadedPipeline) -> str:
    import yaml

    docs = [loaded.doc] + ([loaded.platform] if loaded.platform else [])
    return yaml.safe_dump_all(docs, sort_keys=False)
