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

This module is the scheduler; the rest lives beside it: ``graph`` (the DAGs and task nodes
being run), ``bindings`` (a task's inputs), ``subdags`` (loops and sub-DAG outputs),
``reuse`` (``--resume-from`` and the cache) and ``jobs`` (a task as a worker job).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tureen.errors import TureenError
from tureen.pipelines import bindings, cel, jobs, reuse, subdags
from tureen.pipelines.cache import TaskCache
from tureen.pipelines.executors import Executor, classify
from tureen.pipelines.graph import Dag, Loop, Node, dependencies, now, task_kind, task_paths
from tureen.pipelines.pool import Pool, Running
from tureen.pipelines.records import (
    ArtifactRecord,
    RunRecord,
    RunState,
    TaskIO,
    TaskRecord,
    TaskState,
)
from tureen.pipelines.reuse import Resume, SnapshotProbe
from tureen.pipelines.runs import RunStore
from tureen.pipelines.spec import ComponentSpec, PipelineSpec
from tureen.pipelines.taskio import executor_input, read_outputs

__all__ = ["Engine", "RunOptions", "SnapshotProbe", "task_paths"]

log = logging.getLogger(__name__)


@dataclass
class RunOptions:
    use_cache: bool = True
    isolation: str | None = None
    max_parallel: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))
    resume: Resume | None = None  # (previous run, step)
    on_update: Callable[[RunRecord], None] | None = None
    snapshot_probe: SnapshotProbe | None = None


class Engine:
    def __init__(
        self,
        spec: PipelineSpec,
        run: RunRecord,
        store: RunStore,
        cache: TaskCache,
        repo: Path,
        options: RunOptions,
    ) -> None:
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
    def _new_dag(
        self,
        prefix: str,
        comp: ComponentSpec,
        params: dict[str, Any],
        artifacts: dict[str, list[ArtifactRecord]],
        owner: Node | None,
    ) -> Dag:
        dag = Dag(prefix, comp, params, artifacts, owner)
        parent = owner.rec.id if owner is not None else None
        if owner is not None and owner.loop is not None:
            parent = owner.loop.records[-1].id
        for name, t in comp.tasks.items():
            callee = self.spec.component(t.component)
            deps = dependencies(t)
            rec = TaskRecord(
                id=prefix + name,
                name=t.display_name,
                parent=parent,
                kind=task_kind(t, callee, self.executors),
                component=t.component,
                depends_on=sorted(prefix + d for d in deps),
            )
            self.run.tasks.append(rec)
            dag.nodes[name] = Node(rec, t, callee, dag, self.seq, tuple(sorted(deps)))
            self.seq += 1
        self.dags.append(dag)
        return dag

    # ---- state changes ----------------------------------------------------------------------
    def _set(
        self,
        node: Node,
        state: TaskState,
        *,
        reason: str | None = None,
        error: str | None = None,
        outputs: TaskIO | None = None,
    ) -> None:
        rec = node.rec
        rec.state = state
        if state is TaskState.RUNNING and rec.started_at is None:
            rec.started_at = now()
            node.t0 = time.monotonic()
        if state.done:
            rec.finished_at = now()
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

    # ---- starting ---------------------------------------------------------------------------
    def _start(self, node: Node) -> None:
        node.forced = reuse.is_forced(node, self.opts.resume)
        try:
            inputs = bindings.task_inputs(self.run, self.run_dir, node)
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
                self._set(
                    node, TaskState.SKIPPED, reason=f"condition is false: {node.spec.condition}"
                )
                if node.comp.is_dag and node.spec.iterator is None:
                    node.child = self._new_dag(f"{node.rec.id}/", node.comp, {}, {}, node)
                    self._skip_all(node.child, f"inside {node.rec.name}, whose condition is false")
                return
        if node.comp.is_dag:
            self._set(node, TaskState.RUNNING)
            if node.spec.iterator is not None:
                self._start_loop(node, inputs)
            else:
                node.child = self._new_dag(
                    f"{node.rec.id}/", node.comp, inputs.parameters, inputs.artifacts, node
                )
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
            items = subdags.loop_items(node, inputs)
        except TureenError as exc:
            self._set(node, TaskState.FAILED, error=str(exc))
            return
        node.loop = Loop(items, it.parallelism or len(items) or 1)
        self._grow_loop(node)
        if not items:
            self._set(node, TaskState.SUCCEEDED, outputs=subdags.loop_outputs(node))

    def _grow_loop(self, node: Node) -> None:
        loop = node.loop
        assert loop is not None and node.spec.iterator is not None
        active = sum(1 for r in loop.records if not r.state.done)
        while len(loop.dags) < len(loop.items) and active < loop.limit and not self.failing:
            i = len(loop.dags)
            rec = subdags.iteration_record(node, i)
            self.run.tasks.append(rec)
            loop.records.append(rec)
            params, arts = subdags.iteration_inputs(node, i)
            loop.dags.append(self._new_dag(f"{rec.id}/", node.comp, params, arts, node))
            active += 1

    def _import(self, node: Node, ex: Executor, inputs: TaskIO) -> None:
        ctx = bindings.task_context(
            self.run,
            self.run_dir,
            node,
            {"inputs": {"parameterValues": inputs.parameters}, "outputs": {}},
        )
        outputs = jobs.importer_outputs(node, ex, inputs, ctx)
        self._set(node, TaskState.RUNNING)
        self._set(node, TaskState.SUCCEEDED, outputs=outputs)

    def _prepare(self, node: Node, ex: Executor, inputs: TaskIO) -> None:
        task_dir, art_dir = jobs.task_dirs(self.run_dir, node)
        ex_input = executor_input(node.comp, inputs, task_dir, art_dir)
        env = jobs.task_env(self.repo, self.run.id, ex)
        snapshot = None
        if self.opts.snapshot_probe is not None:
            try:
                snapshot = self.opts.snapshot_probe(ex, inputs.parameters, env)
                node.probe_args = (ex, inputs.parameters, env)
            except TureenError as exc:
                self._set(node, TaskState.FAILED, error=f"data snapshot: {exc}")
                return
        node.parts = reuse.task_key(self.spec, node, ex, inputs, snapshot)
        if self._reuse(node):
            return
        try:
            node.job = jobs.container_job(
                node,
                ex,
                ex_input,
                task_dir,
                self.repo,
                env,
                bindings.task_context(self.run, self.run_dir, node, ex_input),
            )
        except TureenError as exc:
            self._set(node, TaskState.FAILED, error=str(exc))
            return
        (task_dir / "outputs").mkdir(parents=True, exist_ok=True)
        art_dir.mkdir(parents=True, exist_ok=True)
        self.queue.append(node)

    def _reuse(self, node: Node) -> bool:
        """Resume or cache: finish ``node`` from earlier outputs if allowed."""
        outputs, asked = reuse.earlier_outputs(
            node, self.opts.resume, self.opts.use_cache, self.cache, self._identity(node)
        )
        if asked:
            info = node.rec.cache
            assert info is not None
            log.info("cache %s for %s: %s", "hit" if info.hit else "miss", node.rec.id, info.reason)
        if outputs is None:
            return False
        self._set(node, TaskState.RUNNING)
        self._set(node, TaskState.CACHED, outputs=outputs)
        return True

    def _identity(self, node: Node) -> str:
        return f"{self.run.pipeline}/{node.rec.id}"

    def _launch(self) -> None:
        while self.queue and len(self.pool) < self.opts.max_parallel:
            now_s = time.monotonic()
            node = next((n for n in self.queue if n.retry_at is None or n.retry_at <= now_s), None)
            if node is None:
                return
            self.queue.remove(node)
            assert node.job is not None
            if node.job.kind == "python" and "kfp" not in sys.modules:
                from tureen.pipelines.loader import import_kfp

                import_kfp()  # once, before the first fork: every task starts with it loaded
            node.rec.attempts += 1
            name = f"{jobs.file_stem(node)}-{node.rec.attempts}.log"
            node.job.log_path = str(self.run_dir / "logs" / name)
            node.rec.log = f"logs/{name}"
            node.retry_at = None
            self.pool.start(node.job)
            self._set(node, TaskState.RUNNING)

    # ---- finishing --------------------------------------------------------------------------
    def _job_done(self, r: Running, code: int) -> None:
        node = next(n for d in self.dags for n in d.nodes.values() if n.job is r.job)
        if code == 0:
            try:
                outputs = read_outputs(
                    node.comp,
                    r.job.executor_input,
                    Path(r.job.digests_path),
                    f"task {node.rec.name!r}",
                )
            except TureenError as exc:
                self._fail_or_retry(node, str(exc))
                return
            self._set(node, TaskState.SUCCEEDED, outputs=outputs)
            if node.parts is not None and node.spec.cache_enabled:
                key = reuse.key_after(node, self.opts.snapshot_probe) or node.parts
                self.cache.store(self._identity(node), key, outputs, self.run.id, node.rec.id)
            return
        self._fail_or_retry(node, jobs.failure(node, r.job, code))

    def _fail_or_retry(self, node: Node, error: str) -> None:
        retry = node.spec.retry
        if retry is not None and node.rec.attempts <= retry.max_count:
            delay = retry.delay(node.rec.attempts)
            log.warning(
                "%s; retrying in %.1f s (%d/%d)",
                error.splitlines()[0],
                delay,
                node.rec.attempts,
                retry.max_count,
            )
            node.rec.error = error
            node.retry_at = time.monotonic() + delay
            self.queue.append(node)
            self.dirty = True
            return
        self._set(node, TaskState.FAILED, error=error)

    def _settle(self) -> bool:
        """Finish DAGs whose tasks are all done; True if anything changed."""
        changed = False
        for dag in list(self.dags):
            if dag not in self.dags or not all(n.rec.state.done for n in dag.nodes.values()):
                continue
            self.dags.remove(dag)
            changed = True
            state = subdags.dag_state(dag)
            owner = dag.owner
            if owner is None:
                continue
            if owner.loop is not None:
                subdags.end_iteration(owner.loop, dag, state)
                self._grow_loop(owner)
                if all(r.state.done for r in owner.loop.records) and (
                    len(owner.loop.dags) == len(owner.loop.items) or self.failing
                ):
                    self._set(
                        owner, subdags.loop_state(owner.loop), outputs=subdags.loop_outputs(owner)
                    )
            else:
                self._set(owner, state, outputs=subdags.dag_outputs(dag))
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
                bad = next(
                    (d for d in deps if d.rec.state in (TaskState.FAILED, TaskState.CANCELED)), None
                )
                if not node.spec.all_upstream_completed:
                    if bad is not None:
                        self._set(
                            node,
                            TaskState.CANCELED,
                            reason=f"upstream task {bad.rec.name!r} {bad.rec.state.value}",
                        )
                        changed = True
                        continue
                    if self.failing:
                        self._set(
                            node,
                            TaskState.CANCELED,
                            reason=f"not started: task {self.failing} failed",
                        )
                        changed = True
                        continue
                self._start(node)
                changed = True
        if self.failing:
            for node in [
                n
                for n in self.queue
                if n.rec.state is TaskState.PENDING and not n.spec.all_upstream_completed
            ]:
                self.queue.remove(node)
                self._set(
                    node, TaskState.CANCELED, reason=f"not started: task {self.failing} failed"
                )
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
                    waiting = [
                        n.rec.id
                        for d in self.dags
                        for n in d.nodes.values()
                        if not n.rec.state.done
                    ]
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
        self.run.state = (
            RunState.FAILED
            if TaskState.FAILED in states or self.failing
            else RunState.CANCELED
            if TaskState.CANCELED in states
            else RunState.SUCCEEDED
        )
        if self.failing:
            failed = self.run.task(self.failing)
            self.run.error = failed.error if failed is not None else self.failing
        self._finish()
        return self.run

    def _finish(self) -> None:
        self.run.finished_at = now()
        self.run.duration_s = round((self.run.finished_at - self.run.created_at).total_seconds(), 3)
        self.dirty = True
        self._publish(force=True)
