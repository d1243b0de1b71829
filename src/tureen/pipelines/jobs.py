"""A task as work for a worker process, and what it left behind.

- An importer task runs no process: its one output artifact points at the URI it names.
- A container task becomes a ``Job``: its executor input, its environment (``TUREEN_REPO``,
  ``TUREEN_PIPELINE_RUN_ID``), and either the Python function to call or the resolved
  command line. Its files live under ``tasks/`` and ``artifacts/`` of the run's folder,
  its log under ``logs/``, named by the task's sequence number and id.
- A job that exits non-zero is reported with the error the worker wrote (``error.json``)
  or the last lines of its log.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from pathlib import Path
from typing import Any

from tureen.pipelines.executors import Executor
from tureen.pipelines.graph import Node
from tureen.pipelines.placeholders import Context, resolve_command, resolve_parameters
from tureen.pipelines.records import ArtifactRecord, TaskIO
from tureen.pipelines.runs import tail_text
from tureen.pipelines.spec import runtime_value
from tureen.pipelines.worker import Job

_SAFE_RE = re.compile(r"[^A-Za-z0-9_.-]+")
LOG_TAIL_LINES = 20


def file_stem(node: Node) -> str:
    """The name of ``node``'s files in the run's folder: sequence number and id."""
    return f"{node.seq:03d}-{_SAFE_RE.sub('_', node.rec.id)[:80]}"


def task_dirs(run_dir: Path, node: Node) -> tuple[Path, Path]:
    """(task folder, artifact folder) of ``node`` in the run's folder."""
    stem = file_stem(node)
    return run_dir / "tasks" / stem, run_dir / "artifacts" / stem


def task_env(repo: Path, run_id: str, ex: Executor) -> dict[str, str]:
    """The environment a container task runs with, on top of the runner's."""
    return {"TUREEN_REPO": str(repo), "TUREEN_PIPELINE_RUN_ID": run_id, **ex.env}


def importer_outputs(node: Node, ex: Executor, inputs: TaskIO, ctx: Context) -> TaskIO:
    """The outputs of importer task ``node``: one artifact at the URI it names."""
    spec = ex.raw["importer"]
    uri_spec = spec.get("artifactUri") or {}
    if "runtimeParameter" in uri_spec:
        uri = str(inputs.parameters.get(uri_spec["runtimeParameter"], ""))
    else:
        uri = str(runtime_value(uri_spec, f"{node.rec.id}.importer.artifactUri"))
    name, aspec = next(iter(node.comp.interface.artifacts_out.items()))
    digest = None
    with contextlib.suppress(OSError):
        st = Path(uri).stat()
        digest = f"stat:{st.st_size}:{st.st_mtime_ns}"
    meta = resolve_parameters(dict(spec.get("metadata") or {}), ctx)
    art = ArtifactRecord(
        name=name,
        type=str((spec.get("typeSchema") or {}).get("schemaTitle") or aspec.schema_title),
        uri=uri,
        metadata=meta,
        digest=digest,
    )
    return TaskIO(artifacts={name: [art]})


def container_job(
    node: Node,
    ex: Executor,
    ex_input: dict[str, Any],
    task_dir: Path,
    repo: Path,
    env: dict[str, str],
    ctx: Context,
) -> Job:
    """The job of container task ``node`` (``TureenError`` if its command does not resolve);
    ``log_path`` is set when it starts."""
    job = Job(
        task_id=node.rec.id,
        kind=ex.kind,
        executor_input=ex_input,
        log_path="",
        digests_path=str(task_dir / "digests.json"),
        workdir=str(repo),
        env=env,
    )
    if ex.kind == "python":
        job.source, job.function = ex.source, ex.function
    else:
        argv = resolve_command(list(ex.command), ctx)
        if argv and argv[0] in ("python", "python3"):
            argv[0] = sys.executable
        job.argv = argv
    return job


def failure(node: Node, job: Job, code: int) -> str:
    """The error of ``node`` whose job exited with ``code`` (not 0)."""
    where = f"task {node.rec.name!r}"
    tail = tail_text(Path(job.log_path), LOG_TAIL_LINES, max_bytes=64 << 10)
    try:
        err = json.loads(Path(job.digests_path).with_name("error.json").read_text())
    except (OSError, ValueError):
        err = None
    head = f"{where} failed (exit code {code}, attempt {node.rec.attempts})"
    if isinstance(err, dict) and err.get("tureen"):
        return f"{where} failed: {err.get('message')}"
    if isinstance(err, dict):
        return f"{head}: {err.get('type')}: {err.get('message')}\nLast lines of its log:\n{tail}"
    return f"{head}. Last lines of its log:\n{tail}"
