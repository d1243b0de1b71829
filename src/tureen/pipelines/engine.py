"""The local runner: walks a compiled pipeline's DAGs the way Kubeflow does.

- A task starts when the tasks it depends on are done: all succeeded (or were skipped or
  cached) by default; for an exit handler's task (``ALL_UPSTREAM_TASKS_COMPLETED``) whatever
  their outcome. After a task fails for good, no new task starts except exit tasks; tasks that
  cannot run any more end CANCELED with the reason.
- ``triggerPolicy.condition`` is evaluated on the task's inputs (``dsl.If/Elif/Else``); a false
  condition makes the group and every task in it SKIPPED.
- A group with an iterator is a ``ParallelFor``: one iteration DAG per item, at most
  ``parallelism`` at a time; its outputs are collected into lists (``dsl.Collected``), typed.
- Sub-DAGs (conditions, loops, exit handlers, pipelines used as components) pass their
  outputs up through ``dag.outputs``, with ``dsl.OneOf`` taking the branch that ran.
- Container tasks run in a process each (``pool``), at most ``max_parallel`` at a time, with
  retries and backoff from ``retryPolicy``; their outputs are cached (``cache``).

Everything is recorded in the run's ``RunRecord`` as it happens.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tureen.errors import InvalidRequestError, TureenError
from tureen.pipelines import cel
from tureen.pipelines.cache import KeyParts, TaskCache, artifact_identity, component_digest
from tureen.pipelines.executors import Executor, classify
from tureen.pipelines.placeholders import Context, resolve_command, resolve_parameters
from tureen.pipelines.pool import Pool, Running
from tureen.pipelines.records import (
    ArtifactRecord,
    CacheInfo,
    RunRecord,
    RunState,
    TaskIO,
    TaskRecord,
    TaskState,
)
from tureen.pipelines.runs import RunStore, tail_text
from tureen.pipelines.spec import ComponentSpec, ParamBinding, PipelineSpec, TaskSpec, runtime_value
from tureen.pipelines.taskio import executor_input, read_outputs
from tureen.pipelines.values import coerce
from tureen.pipelines.worker import Job

log = logging.getLogger(__name__)
SnapshotProbe = Callable[[Executor, dict[str, Any], dict[str, str]], dict[str, Any] | None]
_SAFE_RE = re.compile(r"[^A-Za-z0-9_.-]+")
_INDEX_RE = re.compile(r"\[\d+\]")
LOG_TAIL_LINES = 20
RUN_PLACEHOLDERS = ("{{$.pipeline_job_uuid}}", "{{$.pipeline_job_name}}",
                    "{{$.pipeline_job_resource_name}}", "{{$.pipeline_task_uuid}}",
                    "{{$.pipeline_job_create_time_utc}}", "{{$.pipeline_job_schedule_time_utc}}",
                    "{{$.pipeline_root}}")


@dataclass
class RunOptions:
    use_cache: bool = True
    isolation: str | None = None
    max_parallel: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))
    resume: tuple[RunRecord, str] | None = None  # (previous run, step)
    on_update: Callable[[RunRecord], None] | None = None
    snapshot_probe: SnapshotProbe | None = None


@dataclass(eq=False)
class Dag:
    prefix: str
    comp: ComponentSpec
    params: dict[str, Any]
    artifacts: dict[str, list[ArtifactRecord]]
    owner: Node | None
    nodes: dict[str, Node] = field(default_factory=dict)


@dataclass(eq=False)
class Loop:
    items: list[Any]
    limit: int
    dags: list[Dag] = field(default_factory=list)
    records: list[TaskRecord] = field(default_factory=list)


@dataclass(eq=False)
class Node:
    rec: TaskRecord
    spec: TaskSpec
    comp: ComponentSpec
    dag: Dag
    seq: int
    deps: tuple[str, ...]
    forced: bool = False
    child: Dag | None = None
    loop: Loop | None = None
    job: Job | None = None
    parts: KeyParts | None = None
    retry_at: float | None = None
    t0: float = 0.0
    key_params: dict[str, Any] = field(default_factory=dict)
    probe_args: tuple[Executor, dict[str, Any], dict[str, str]] | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def task_paths(spec: PipelineSpec) -> set[str]:
    """Every task id of the spec with loop indices left out (for --resume-from)."""
    out: set[str] = set()

    def walk(comp: ComponentSpec, prefix: str) -> None:
        for name, t in comp.tasks.items():
            out.add(prefix + name)
            out.add(t.display_name)
            callee = spec.component(t.component)
            if callee.is_dag:
                walk(callee, f"{prefix}{name}/")

    walk(spec.root, "")
    return out


class Engine:
    def __init__(self, spec: PipelineSpec, run: RunRecord, store: RunStore, cache: TaskCache,
                 repo: Path, options: RunOptions) -> None:
        self.spec, self.run, self.store, self.cache = spec, run, store, cache
        self.repo, self.opts = repo, options
        self.run_dir = store.run_dir(run.id)
        self.executors = {k: classify(k, v) for k, v in spec.executors.items()}
        self.pool = Pool(options.isolation)
        self.queue: list[Node] = []
        self.dags: list[Dag] = []
        self.failing: str | None = None
        self.seq = 0
        self.dirty = True
        self.last_save = 0.0

    # ---- building ---------------------------------------------------------------------------
    def _new_dag(self, prefix: str, comp: ComponentSpec, params: dict[str, Any],
                 artifacts: dict[str, list[ArtifactRecord]], owner: Node | None) -> Dag:
        dag = Dag(prefix, comp, params, artifacts, owner)
        parent = owner.rec.id if owner is not None else None
        if owner is not None and owner.loop is not None:
            parent = owner.loop.records[-1].id
        for name, t in comp.tasks.items():
            callee = self.spec.component(t.component)
            deps = set(t.depends_on)
            deps |= {b.task for b in t.params.values() if b.task}
            deps |= {b.task for b in t.artifacts.values() if b.task}
            kind = ("importer" if self.executors[callee.executor].kind == "importer"
                    else "container") if callee.executor else \
                ("loop" if t.iterator else "condition" if t.condition else "dag")
            rec = TaskRecord(id=prefix + name, name=t.display_name, parent=parent, kind=kind,
                             component=t.component,
                             depends_on=sorted(prefix + d for d in deps))
            self.run.tasks.append(rec)
            dag.nodes[name] = Node(rec, t, callee, dag, self.seq, tuple(sorted(deps)))
            self.seq += 1
        self.dags.append(dag)
        return dag

    # ---- state changes ----------------------------------------------------------------------
    def _set(self, node: Node, state: TaskState, *, reason: str | None = None,
             error: str | None = None, outputs: TaskIO | None = None) -> None:
        rec = node.rec
        rec.state = state
        if state is TaskState.RUNNING and rec.started_at is None:
            rec.started_at = _now()
            node.t0 = time.monotonic()
        if state.done:
            rec.finished_at = _now()
            if node.t0:
                rec.duration_s = round(time.monotonic() - node.t0, 3)
            if state is TaskState.FAILED and self.failing is None:
                self.failing = rec.id
        if reason is not None:
            rec.reason = reason
        if error is not None:
            rec.error = error
        if outputs is not None:
            rec.outputs = outputs
        self.dirty = True

    def _skip_all(self, dag: Dag, reason: str) -> None:
        for n in dag.nodes.values():
            self._set(n, TaskState.SKIPPED, reason=reason)
            if n.comp.is_dag and n.spec.iterator is None:
                n.child = self._new_dag(f"{n.rec.id}/", n.comp, {}, {}, n)
                self._skip_all(n.child, reason)
        self.dags.remove(dag)

    # ---- inputs -----------------------------------------------------------------------------
    def _final_status(self, node: Node, producer: str) -> dict[str, Any]:
        p = node.dag.nodes[producer]
        state = {"SUCCEEDED": "SUCCEEDED", "CACHED": "SUCCEEDED", "SKIPPED": "SUCCEEDED",
                 "FAILED": "FAILED"}.get(p.rec.state.value, "CANCELLED")
        first = next((t for t in self.run.tasks if t.state is TaskState.FAILED and t.error
                      and (t.id == p.rec.id or t.id.startswith(p.rec.id + "/"))), None)
        return {"state": state, "pipelineJobResourceName": self.run.id,
                "pipelineTaskName": p.rec.name,
                "error": {"code": 0 if first is None else 1,
                          "message": "" if first is None else (first.error or "")}}

    def _param(self, node: Node, name: str, b: ParamBinding) -> tuple[bool, Any]:
        dag = node.dag
        if b.kind == "constant":
            value = b.value
        elif b.kind == "component_input":
            if b.name not in dag.params:
                return False, None
            value = dag.params[b.name]
        elif b.kind == "final_status":
            return True, self._final_status(node, b.task)
        else:
            producer = dag.nodes[b.task]
            if b.name not in producer.rec.outputs.parameters:
                if producer.rec.state is TaskState.SKIPPED:
                    raise InvalidRequestError(
                        f"input {name!r} comes from task {producer.rec.name!r}, which was "
                        "skipped (its condition was false); use dsl.OneOf or move this task "
                        "into the same condition.")
                raise InvalidRequestError(
                    f"input {name!r}: task {producer.rec.name!r} produced no output {b.name!r}")
            value = producer.rec.outputs.parameters[b.name]
        if b.selector:
            value = cel.select(b.selector, value)
        return True, value

    def _inputs(self, node: Node) -> TaskIO:
        iface = node.comp.interface
        params: dict[str, Any] = {}
        for name, b in node.spec.params.items():
            present, value = self._param(node, name, b)
            if present:
                params[name] = value
        for name, p in iface.params_in.items():
            if name not in params and p.has_default:
                params[name] = p.default
        io = TaskIO(parameters=params)
        # values naming the run (its id, name, time) are inputs of this run only: the cache
        # key keeps the placeholder, so a rerun with the same real inputs still hits
        node.key_params = {k: v for k, v in params.items()
                           if isinstance(v, str) and any(p in v for p in RUN_PLACEHOLDERS)}
        ctx = self._context(node, {"inputs": {"parameterValues": params}, "outputs": {}})
        params = resolve_parameters(params, ctx)
        for name, value in list(params.items()):
            declared = iface.params_in.get(name)
            # typed where a component runs; a DAG passes values through as they are (kfp
            # declares an untyped loop item STRING, which would turn 1 into "1")
            if declared is not None and not node.comp.is_dag:
                params[name] = coerce(value, declared.type,
                                      f"task {node.rec.name!r} input {name!r}")
        item = node.spec.iterator.item_input if node.spec.iterator else None
        missing = [n for n, p in iface.params_in.items() if n not in params and not p.optional
                   and p.type not in ("TASK_FINAL_STATUS", "TASK_CONFIG") and n != item]
        if missing:
            raise InvalidRequestError(
                f"task {node.rec.name!r} is missing input parameter(s) {missing}: give them a "
                "value in the pipeline or a default in the component.")
        io.parameters = params
        for name, ab in node.spec.artifacts.items():
            if ab.kind == "component_input":
                if ab.name in node.dag.artifacts:
                    io.artifacts[name] = node.dag.artifacts[ab.name]
                continue
            producer = node.dag.nodes[ab.task]
            arts = producer.rec.outputs.artifacts.get(ab.name)
            if arts is None:
                raise InvalidRequestError(
                    f"input artifact {name!r} comes from task {producer.rec.name!r}, which "
                    f"{'was skipped' if producer.rec.state is TaskState.SKIPPED else 'has none'}.")
            io.artifacts[name] = arts
        return io

    def _context(self, node: Node, ex_input: dict[str, Any]) -> Context:
        return Context(ex_input, self.run.pipeline, self.run.id, node.rec.name, node.rec.id,
                       str(self.run_dir / "artifacts"), self.run.created_at.isoformat(),
                       str(self.run_dir / "workspace"))

    # ---- starting ---------------------------------------------------------------------------
    def _is_forced(self, node: Node) -> bool:
        if self.opts.resume is None:
            return False
        step = self.opts.resume[1]
        own = node.rec.id in (step,) or node.rec.name == step \
            or _INDEX_RE.sub("", node.rec.id) == step
        owner = node.dag.owner
        return own or any(node.dag.nodes[d].forced for d in node.deps) \
            or (owner is not None and owner.forced)

    def _start(self, node: Node) -> None:
        node.forced = self._is_forced(node)
        try:
            inputs = self._inputs(node)
        except TureenError as exc:
            node.rec.attempts = 0
            self._set(node, TaskState.FAILED, error=str(exc))
            return
        node.rec.inputs = inputs
        if node.spec.condition:
            try:
                ok = cel.condition(node.spec.condition, inputs.parameters)
            except TureenError as exc:
                self._set(node, TaskState.FAILED, error=str(exc))
                return
            if not ok:
                self._set(node, TaskState.SKIPPED, reason=f"condition is false: "
                                                           f"{node.spec.condition}")
                if node.comp.is_dag and node.spec.iterator is None:
                    node.child = self._new_dag(f"{node.rec.id}/", node.comp, {}, {}, node)
                    self._skip_all(node.child, f"inside {node.rec.name}, whose condition is false")
                return
        if node.comp.is_dag:
            self._set(node, TaskState.RUNNING)
            if node.spec.iterator is not None:
                self._start_loop(node, inputs)
            else:
                node.child = self._new_dag(f"{node.rec.id}/", node.comp, inputs.parameters,
                                           inputs.artifacts, node)
            return
        ex = self.executors[node.comp.executor or ""]
        if ex.kind == "importer":
            self._import(node, ex, inputs)
            return
        self._prepare(node, ex, inputs)

    def _start_loop(self, node: Node, inputs: TaskIO) -> None:
        it = node.spec.iterator
        assert it is not None
        try:
            if it.kind == "artifact":
                items: list[Any] = list(inputs.artifacts.get(it.input_name or "", []))
            elif it.raw is not None:
                items = coerce(it.raw, "LIST", f"loop {node.rec.name!r} items")
            else:
                items = coerce(inputs.parameters.get(it.input_name or ""), "LIST",
                               f"loop {node.rec.name!r} items")
        except TureenError as exc:
            self._set(node, TaskState.FAILED, error=str(exc))
            return
        node.loop = Loop(items, it.parallelism or len(items) or 1)
        self._grow_loop(node)
        if not items:
            self._set(node, TaskState.SUCCEEDED, outputs=self._collect(node))

    def _grow_loop(self, node: Node) -> None:
        loop, it = node.loop, node.spec.iterator
        assert loop is not None and it is not None
        active = sum(1 for r in loop.records if not r.state.done)
        while len(loop.dags) < len(loop.items) and active < loop.limit and not self.failing:
            i = len(loop.dags)
            rec = TaskRecord(id=f"{node.rec.id}[{i}]", name=f"{node.rec.name}[{i}]",
                             parent=node.rec.id, kind="iteration", component=node.spec.component,
                             state=TaskState.RUNNING, started_at=_now())
            self.run.tasks.append(rec)
            loop.records.append(rec)
            params = dict(node.rec.inputs.parameters)
            arts = dict(node.rec.inputs.artifacts)
            item = loop.items[i]
            if it.kind == "artifact":
                arts[it.item_input] = [item]
            else:
                p = node.comp.interface.params_in[it.item_input]
                params[it.item_input] = coerce(item, p.type, f"loop {node.rec.name!r} item {i}")
            loop.dags.append(self._new_dag(f"{rec.id}/", node.comp, params, arts, node))
            active += 1

    def _import(self, node: Node, ex: Executor, inputs: TaskIO) -> None:
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
        ctx = self._context(node, {"inputs": {"parameterValues": inputs.parameters},
                                   "outputs": {}})
        meta = resolve_parameters(dict(spec.get("metadata") or {}), ctx)
        art = ArtifactRecord(name=name, type=str((spec.get("typeSchema") or {}).get(
            "schemaTitle") or aspec.schema_title), uri=uri, metadata=meta, digest=digest)
        self._set(node, TaskState.RUNNING)
        self._set(node, TaskState.SUCCEEDED, outputs=TaskIO(artifacts={name: [art]}))

    def _prepare(self, node: Node, ex: Executor, inputs: TaskIO) -> None:
        rec = node.rec
        safe = f"{node.seq:03d}-{_SAFE_RE.sub('_', rec.id)[:80]}"
        task_dir = self.run_dir / "tasks" / safe
        art_dir = self.run_dir / "artifacts" / safe
        ex_input = executor_input(node.comp, inputs, task_dir, art_dir)
        component_raw = self.spec.doc.get("components", {}).get(node.spec.component, {})
        env = {"TUREEN_REPO": str(self.repo), "TUREEN_PIPELINE_RUN_ID": self.run.id, **ex.env}
        snapshot = None
        if self.opts.snapshot_probe is not None:
            try:
                snapshot = self.opts.snapshot_probe(ex, inputs.parameters, env)
                node.probe_args = (ex, inputs.parameters, env)
            except TureenError as exc:
                self._set(node, TaskState.FAILED, error=f"data snapshot: {exc}")
                return
        node.parts = KeyParts(
            component_digest(component_raw, ex.raw), {**inputs.parameters, **node.key_params},
            {k: [artifact_identity(a.model_dump()) for a in v]
             for k, v in inputs.artifacts.items()}, snapshot)
        if self._reuse(node):
            return
        job = Job(task_id=rec.id, kind=ex.kind, executor_input=ex_input, log_path="",
                  digests_path=str(task_dir / "digests.json"), workdir=str(self.repo), env=env)
        if ex.kind == "python":
            job.source, job.function = ex.source, ex.function
        else:
            try:
                argv = resolve_command(list(ex.command), self._context(node, ex_input))
            except TureenError as exc:
                self._set(node, TaskState.FAILED, error=str(exc))
                return
            if argv and argv[0] in ("python", "python3"):
                argv[0] = sys.executable
            job.argv = argv
        node.job = job
        (task_dir / "outputs").mkdir(parents=True, exist_ok=True)
        art_dir.mkdir(parents=True, exist_ok=True)
        self.queue.append(node)

    def _reuse(self, node: Node) -> bool:
        """Resume or cache: finish ``node`` from earlier outputs if allowed."""
        rec, parts = node.rec, node.parts
        assert parts is not None
        if self.opts.resume is not None:
            prev, step = self.opts.resume
            if node.forced:
                rec.cache = CacheInfo(hit=False, key=parts.key,
                                      reason=f"--resume-from {step}: runs again")
                return False
            old = prev.task(rec.id)
            if old is not None and old.state in (TaskState.SUCCEEDED, TaskState.CACHED):
                rec.cache = CacheInfo(hit=True, key=parts.key, source_run=prev.id,
                                      source_task=rec.id,
                                      reason=f"--resume-from {step}: outputs of run {prev.id}")
                self._set(node, TaskState.RUNNING)
                self._set(node, TaskState.CACHED, outputs=old.outputs)
                return True
        if not node.spec.cache_enabled:
            rec.cache = CacheInfo(hit=False, key=parts.key, reason="caching is off for this task")
            return False
        if not self.opts.use_cache:
            rec.cache = CacheInfo(hit=False, key=parts.key, reason="--no-cache")
            return False
        outputs, info = self.cache.lookup(self._identity(node), parts, rec.id)
        rec.cache = info
        log.info("cache %s for %s: %s", "hit" if info.hit else "miss", rec.id, info.reason)
        if outputs is None:
            return False
        self._set(node, TaskState.RUNNING)
        self._set(node, TaskState.CACHED, outputs=outputs)
        return True

    def _identity(self, node: Node) -> str:
        return f"{self.run.pipeline}/{node.rec.id}"

    def _launch(self) -> None:
        while self.queue and len(self.pool) < self.opts.max_parallel:
            now = time.monotonic()
            node = next((n for n in self.queue if n.retry_at is None or n.retry_at <= now), None)
            if node is None:
                return
            self.queue.remove(node)
            assert node.job is not None
            if node.job.kind == "python" and "kfp" not in sys.modules:
                from tureen.pipelines.loader import import_kfp

                import_kfp()  # once, before the first fork: every task starts with it loaded
            node.rec.attempts += 1
            name = f"{node.seq:03d}-{_SAFE_RE.sub('_', node.rec.id)[:80]}-{node.rec.attempts}.log"
            node.job.log_path = str(self.run_dir / "logs" / name)
            node.rec.log = f"logs/{name}"
            node.retry_at = None
            self.pool.start(node.job)
            self._set(node, TaskState.RUNNING)

    # ---- finishing --------------------------------------------------------------------------
    def _job_done(self, r: Running, code: int) -> None:
        node = next(n for d in self.dags for n in d.nodes.values() if n.job is r.job)
        where = f"task {node.rec.name!r}"
        if code == 0:
            try:
                outputs = read_outputs(node.comp, r.job.executor_input,
                                       Path(r.job.digests_path), where)
            except TureenError as exc:
                self._fail_or_retry(node, str(exc))
                return
            self._set(node, TaskState.SUCCEEDED, outputs=outputs)
            if node.parts is not None and node.spec.cache_enabled:
                key = self._probe_after(node) or node.parts
                self.cache.store(self._identity(node), key, outputs, self.run.id, node.rec.id)
            return
        tail = tail_text(Path(r.job.log_path), LOG_TAIL_LINES, max_bytes=64 << 10)
        try:
            err = json.loads(Path(r.job.digests_path).with_name("error.json").read_text())
        except (OSError, ValueError):
            err = None
        head = f"{where} failed (exit code {code}, attempt {node.rec.attempts})"
        if isinstance(err, dict) and err.get("tureen"):
            self._fail_or_retry(node, f"{where} failed: {err.get('message')}")
        elif isinstance(err, dict):
            self._fail_or_retry(node, f"{head}: {err.get('type')}: {err.get('message')}\n"
                                      f"Last lines of its log:\n{tail}")
        else:
            self._fail_or_retry(node, f"{head}. Last lines of its log:\n{tail}")

    def _probe_after(self, node: Node) -> KeyParts | None:
        """The key of a task that changed the state in its own key (the deploy gate updates
        the deployment it keys on): its outputs are cached under the state it left behind —
        replaying them there changes nothing — and never under the state before, where a
        replay would claim a change that did not happen."""
        parts, args = node.parts, node.probe_args
        if parts is None or parts.snapshot is None or args is None or \
                self.opts.snapshot_probe is None:
            return None
        try:
            after = self.opts.snapshot_probe(*args)
        except TureenError:
            return None
        if after == parts.snapshot:
            return None
        return KeyParts(parts.component, parts.params, parts.artifacts, after)

    def _fail_or_retry(self, node: Node, error: str) -> None:
        retry = node.spec.retry
        if retry is not None and node.rec.attempts <= retry.max_count:
            delay = retry.delay(node.rec.attempts)
            log.warning("%s; retrying in %.1f s (%d/%d)", error.splitlines()[0], delay,
                        node.rec.attempts, retry.max_count)
            node.rec.error = error
            node.retry_at = time.monotonic() + delay
            self.queue.append(node)
            self.dirty = True
            return
        self._set(node, TaskState.FAILED, error=error)

    def _collect(self, node: Node) -> TaskIO:
        """Outputs of a loop: each output a list over iterations, in item order."""
        assert node.loop is not None
        io = TaskIO()
        for name in node.comp.param_outputs:
            io.parameters[name] = [self._dag_outputs(d).parameters.get(name)
                                   for d in node.loop.dags]
        for name in node.comp.artifact_outputs:
            io.artifacts[name] = [a for d in node.loop.dags
                                  for a in self._dag_outputs(d).artifacts.get(name, [])]
        return io

    def _dag_outputs(self, dag: Dag) -> TaskIO:
        io = TaskIO()
        for name, out in dag.comp.param_outputs.items():
            for sub, key in out.selectors:
                got = dag.nodes[sub].rec.outputs.parameters
                if key in got:
                    io.parameters[name] = got[key]
                    break
        for name, out in dag.comp.artifact_outputs.items():
            for sub, key in out.selectors:
                arts = dag.nodes[sub].rec.outputs.artifacts.get(key)
                if arts is not None:
                    io.artifacts[name] = arts
                    break
        return io

    def _settle(self) -> bool:
        """Finish DAGs whose tasks are all done; True if anything changed."""
        changed = False
        for dag in list(self.dags):
            if dag not in self.dags or not all(n.rec.state.done for n in dag.nodes.values()):
                continue
            self.dags.remove(dag)
            changed = True
            states = {n.rec.state for n in dag.nodes.values()}
            state = TaskState.FAILED if TaskState.FAILED in states else \
                TaskState.CANCELED if TaskState.CANCELED in states else TaskState.SUCCEEDED
            owner = dag.owner
            if owner is None:
                continue
            if owner.loop is not None:
                rec = next(r for r, d in zip(owner.loop.records, owner.loop.dags, strict=True)
                           if d is dag)
                rec.state, rec.finished_at = state, _now()
                if rec.started_at is not None:
                    rec.duration_s = round((rec.finished_at - rec.started_at).total_seconds(), 3)
                self._grow_loop(owner)
                if all(r.state.done for r in owner.loop.records) and \
                        (len(owner.loop.dags) == len(owner.loop.items) or self.failing):
                    lstates = {r.state for r in owner.loop.records}
                    final = TaskState.FAILED if TaskState.FAILED in lstates else \
                        TaskState.CANCELED if TaskState.CANCELED in lstates or \
                        len(owner.loop.dags) < len(owner.loop.items) else TaskState.SUCCEEDED
                    self._set(owner, final, outputs=self._collect(owner))
            else:
                self._set(owner, state, outputs=self._dag_outputs(dag))
        return changed

    # ---- the loop ---------------------------------------------------------------------------
    def _schedule(self) -> bool:
        changed = False
        for dag in list(self.dags):
            for node in dag.nodes.values():
                if node.rec.state is not TaskState.PENDING or node in self.queue:
                    continue
                deps = [dag.nodes[d] for d in node.deps]
                if not all(d.rec.state.done for d in deps):
                    continue
                bad = next((d for d in deps if d.rec.state in (TaskState.FAILED,
                                                               TaskState.CANCELED)), None)
                if not node.spec.all_upstream_completed:
                    if bad is not None:
                        self._set(node, TaskState.CANCELED,
                                  reason=f"upstream task {bad.rec.name!r} {bad.rec.state.value}")
                        changed = True
                        continue
                    if self.failing:
                        self._set(node, TaskState.CANCELED,
                                  reason=f"not started: task {self.failing} failed")
                        changed = True
                        continue
                self._start(node)
                changed = True
        if self.failing:
            for node in [n for n in self.queue if n.rec.state is TaskState.PENDING
                         and not n.spec.all_upstream_completed]:
                self.queue.remove(node)
                self._set(node, TaskState.CANCELED, reason=f"not started: task {self.failing}"
                                                           " failed")
                changed = True
        return changed

    def _publish(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.dirty and (force or now - self.last_save > 0.2):
            self.store.save(self.run)
            self.dirty = False
            self.last_save = now
        if self.opts.on_update is not None:
            self.opts.on_update(self.run)

    def execute(self, params: dict[str, Any]) -> RunRecord:
        root = self._new_dag("", self.spec.root, params, {}, None)
        try:
            while root in self.dags or self.pool.running or self.queue:
                while self._schedule() | self._settle():
                    pass
                self._launch()
                if root not in self.dags and not self.pool.running and not self.queue:
                    break
                if not self.pool.running and not self.queue:
                    waiting = [n.rec.id for d in self.dags for n in d.nodes.values()
                               if not n.rec.state.done]
                    raise RuntimeError(f"pipeline run is stuck: no task can start ({waiting})")
                due = [n.retry_at for n in self.queue if n.retry_at is not None]
                timeout = 0.25 if not due else max(0.0, min(0.25, min(due) - time.monotonic()))
                for r, code in self.pool.wait(timeout):
                    self._job_done(r, code)
                self._publish()
        except BaseException:
            self.pool.stop()
            for n in (n for d in self.dags for n in d.nodes.values()):
                if not n.rec.state.done:
                    self._set(n, TaskState.CANCELED, reason="run interrupted")
            for rec in self.run.tasks:
                if not rec.state.done:
                    rec.state = TaskState.CANCELED
            self.run.state = RunState.CANCELED
            self._finish()
            raise
        finally:
            self.pool.close()
        states = {t.state for t in self.run.tasks if t.parent is None}
        self.run.state = RunState.FAILED if TaskState.FAILED in states or self.failing else \
            RunState.CANCELED if TaskState.CANCELED in states else RunState.SUCCEEDED
        if self.failing:
            failed = self.run.task(self.failing)
            self.run.error = failed.error if failed is not None else self.failing
        self._finish()
        return self.run

    def _finish(self) -> None:
        self.run.finished_at = _now()
        self.run.duration_s = round((self.run.finished_at - self.run.created_at).total_seconds(), 3)
        self.dirty = True
        self._publish(force=True)
