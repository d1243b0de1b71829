"""Tasks that run a DAG: a sub-DAG (a condition, an exit handler, a pipeline used as a
component) or a ``ParallelFor`` loop with one iteration DAG per item.

- A loop's items come from an input parameter, a raw list in the spec, or an input artifact
  list; each iteration DAG gets the loop task's inputs plus its item, typed.
- A sub-DAG passes its outputs up through ``dag.outputs``: the first selector whose task
  produced the output wins (``dsl.OneOf`` takes the branch that ran).
- A loop's outputs are lists over its iterations, in item order (``dsl.Collected``).
- A DAG ends FAILED if any of its tasks failed, else CANCELED if any was canceled, else
  SUCCEEDED; a loop also ends CANCELED when not every item got an iteration.
"""

from __future__ import annotations

from typing import Any

from tureen.pipelines.graph import Dag, Loop, Node, now
from tureen.pipelines.records import ArtifactRecord, TaskIO, TaskRecord, TaskState
from tureen.pipelines.values import coerce


def loop_items(node: Node, inputs: TaskIO) -> list[Any]:
    """The items loop task ``node`` iterates over (``TureenError`` if they are no list)."""
    it = node.spec.iterator
    assert it is not None
    if it.kind == "artifact":
        return list(inputs.artifacts.get(it.input_name or "", []))
    if it.raw is not None:
        items: list[Any] = coerce(it.raw, "LIST", f"loop {node.rec.name!r} items")
        return items
    items = coerce(
        inputs.parameters.get(it.input_name or ""), "LIST", f"loop {node.rec.name!r} items"
    )
    return items


def iteration_record(node: Node, i: int) -> TaskRecord:
    """The record of iteration ``i`` of loop task ``node``, started now."""
    return TaskRecord(
        id=f"{node.rec.id}[{i}]",
        name=f"{node.rec.name}[{i}]",
        parent=node.rec.id,
        kind="iteration",
        component=node.spec.component,
        state=TaskState.RUNNING,
        started_at=now(),
    )


def iteration_inputs(node: Node, i: int) -> tuple[dict[str, Any], dict[str, list[ArtifactRecord]]]:
    """(parameters, artifacts) of iteration ``i``'s DAG: the loop's inputs and the item."""
    loop, it = node.loop, node.spec.iterator
    assert loop is not None and it is not None
    params = dict(node.rec.inputs.parameters)
    arts = dict(node.rec.inputs.artifacts)
    item = loop.items[i]
    if it.kind == "artifact":
        arts[it.item_input] = [item]
    else:
        p = node.comp.interface.params_in[it.item_input]
        params[it.item_input] = coerce(item, p.type, f"loop {node.rec.name!r} item {i}")
    return params, arts


def end_iteration(loop: Loop, dag: Dag, state: TaskState) -> None:
    """Record that iteration ``dag`` of ``loop`` ended in ``state``."""
    rec = next(r for r, d in zip(loop.records, loop.dags, strict=True) if d is dag)
    rec.state, rec.finished_at = state, now()
    if rec.started_at is not None:
        rec.duration_s = round((rec.finished_at - rec.started_at).total_seconds(), 3)


def dag_outputs(dag: Dag) -> TaskIO:
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


def loop_outputs(node: Node) -> TaskIO:
    """Outputs of a loop: each output a list over iterations, in item order."""
    assert node.loop is not None
    io = TaskIO()
    for name in node.comp.param_outputs:
        io.parameters[name] = [dag_outputs(d).parameters.get(name) for d in node.loop.dags]
    for name in node.comp.artifact_outputs:
        io.artifacts[name] = [
            a for d in node.loop.dags for a in dag_outputs(d).artifacts.get(name, [])
        ]
    return io


def dag_state(dag: Dag) -> TaskState:
    """The end state of a DAG whose tasks are all done."""
    states = {n.rec.state for n in dag.nodes.values()}
    return (
        TaskState.FAILED
        if TaskState.FAILED in states
        else TaskState.CANCELED
        if TaskState.CANCELED in states
        else TaskState.SUCCEEDED
    )


def loop_state(loop: Loop) -> TaskState:
    """The end state of a loop whose iterations are all done."""
    lstates = {r.state for r in loop.records}
    return (
        TaskState.FAILED
        if TaskState.FAILED in lstates
        else TaskState.CANCELED
        if TaskState.CANCELED in lstates or len(loop.dags) < len(loop.items)
        else TaskState.SUCCEEDED
    )
