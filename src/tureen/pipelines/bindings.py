"""A task's inputs, resolved from its bindings when it is about to start.

A binding names where a value comes from: a constant, an input of the enclosing DAG, an
output of an upstream task (optionally narrowed by a CEL selector), or that task's final
status (``dsl.PipelineTaskFinalStatus`` in an exit handler). Parameters left unbound take the
component's default, run placeholders (``{{$.pipeline_job_uuid}}`` and the like) are filled
in, and a container component's parameters are coerced to their declared types.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tureen.errors import InvalidRequestError
from tureen.pipelines import cel
from tureen.pipelines.graph import Node
from tureen.pipelines.placeholders import Context, resolve_parameters
from tureen.pipelines.records import RunRecord, TaskIO, TaskState
from tureen.pipelines.spec import ParamBinding
from tureen.pipelines.values import coerce

RUN_PLACEHOLDERS = (
    "{{$.pipeline_job_uuid}}",
    "{{$.pipeline_job_name}}",
    "{{$.pipeline_job_resource_name}}",
    "{{$.pipeline_task_uuid}}",
    "{{$.pipeline_job_create_time_utc}}",
    "{{$.pipeline_job_schedule_time_utc}}",
    "{{$.pipeline_root}}",
)


def task_context(run: RunRecord, run_dir: Path, node: Node, ex_input: dict[str, Any]) -> Context:
    """What placeholders of ``node``'s component resolve against."""
    return Context(
        ex_input,
        run.pipeline,
        run.id,
        node.rec.name,
        node.rec.id,
        str(run_dir / "artifacts"),
        run.created_at.isoformat(),
        str(run_dir / "workspace"),
    )


def final_status(run: RunRecord, node: Node, producer: str) -> dict[str, Any]:
    p = node.dag.nodes[producer]
    state = {
        "SUCCEEDED": "SUCCEEDED",
        "CACHED": "SUCCEEDED",
        "SKIPPED": "SUCCEEDED",
        "FAILED": "FAILED",
    }.get(p.rec.state.value, "CANCELLED")
    first = next(
        (
            t
            for t in run.tasks
            if t.state is TaskState.FAILED
            and t.error
            and (t.id == p.rec.id or t.id.startswith(p.rec.id + "/"))
        ),
        None,
    )
    return {
        "state": state,
        "pipelineJobResourceName": run.id,
        "pipelineTaskName": p.rec.name,
        "error": {
            "code": 0 if first is None else 1,
            "message": "" if first is None else (first.error or ""),
        },
    }


def parameter(run: RunRecord, node: Node, name: str, b: ParamBinding) -> tuple[bool, Any]:
    """(bound, value) of input parameter ``name``: not bound when it comes from an input the
    enclosing DAG was not given."""
    dag = node.dag
    if b.kind == "constant":
        value = b.value
    elif b.kind == "component_input":
        if b.name not in dag.params:
            return False, None
        value = dag.params[b.name]
    elif b.kind == "final_status":
        return True, final_status(run, node, b.task)
    else:
        producer = dag.nodes[b.task]
        if b.name not in producer.rec.outputs.parameters:
            if producer.rec.state is TaskState.SKIPPED:
                raise InvalidRequestError(
                    f"input {name!r} comes from task {producer.rec.name!r}, which was "
                    "skipped (its condition was false); use dsl.OneOf or move this task "
                    "into the same condition."
                )
            raise InvalidRequestError(
                f"input {name!r}: task {producer.rec.name!r} produced no output {b.name!r}"
            )
        value = producer.rec.outputs.parameters[b.name]
    if b.selector:
        value = cel.select(b.selector, value)
    return True, value


def task_inputs(run: RunRecord, run_dir: Path, node: Node) -> TaskIO:
    """The parameters and artifacts ``node`` starts with; also sets ``node.key_params``."""
    iface = node.comp.interface
    params: dict[str, Any] = {}
    for name, b in node.spec.params.items():
        present, value = parameter(run, node, name, b)
        if present:
            params[name] = value
    for name, p in iface.params_in.items():
        if name not in params and p.has_default:
            params[name] = p.default
    io = TaskIO(parameters=params)
    # values naming the run (its id, name, time) are inputs of this run only: the cache
    # key keeps the placeholder, so a rerun with the same real inputs still hits
    node.key_params = {
        k: v
        for k, v in params.items()
        if isinstance(v, str) and any(p in v for p in RUN_PLACEHOLDERS)
    }
    ctx = task_context(run, run_dir, node, {"inputs": {"parameterValues": params}, "outputs": {}})
    params = resolve_parameters(params, ctx)
    for name, value in list(params.items()):
        declared = iface.params_in.get(name)
        # typed where a component runs; a DAG passes values through as they are (kfp
        # declares an untyped loop item STRING, which would turn 1 into "1")
        if declared is not None and not node.comp.is_dag:
            params[name] = coerce(value, declared.type, f"task {node.rec.name!r} input {name!r}")
    item = node.spec.iterator.item_input if node.spec.iterator else None
    missing = [
        n
        for n, p in iface.params_in.items()
        if n not in params
        and not p.optional
        and p.type not in ("TASK_FINAL_STATUS", "TASK_CONFIG")
        and n != item
    ]
    if missing:
        raise InvalidRequestError(
            f"task {node.rec.name!r} is missing input parameter(s) {missing}: give them a "
            "value in the pipeline or a default in the component."
        )
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
                f"{'was skipped' if producer.rec.state is TaskState.SKIPPED else 'has none'}."
            )
        io.artifacts[name] = arts
    return io
