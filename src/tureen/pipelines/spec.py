"""A typed, validated view of a compiled KFP v2 pipeline (the ``PipelineSpec`` IR).

``PipelineSpec.parse(doc)`` takes the IR as the compiler writes it (the first YAML document
of a compiled file, or ``kfp``'s in-memory dict) and checks every reference the local runner
follows: component refs, executor labels, producer tasks and output keys, iterator inputs.
A malformed spec is an ``InvalidRequestError`` naming the path of the bad field
(``components.comp-train.dag.tasks.fit: ...``), before anything runs.

Only the fields a local run needs are modelled; the raw executor dicts are kept for caching
and for the warning that names what a local run ignores (resources, image, platform config).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tureen.errors import InvalidRequestError

PARAMETER_TYPES = {"STRING", "NUMBER_INTEGER", "NUMBER_DOUBLE", "BOOLEAN", "LIST", "STRUCT",
                   "TASK_FINAL_STATUS", "TASK_CONFIG"}
_V1_TYPES = {"INT": "NUMBER_INTEGER", "DOUBLE": "NUMBER_DOUBLE", "STRING": "STRING"}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)s")
#: input/output names: they become file names of a task's outputs
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,255}")


def _err(where: str, msg: str) -> InvalidRequestError:
    return InvalidRequestError(f"pipeline spec: {where}: {msg}")


def _map(d: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    v = d.get(key) or {}
    if not isinstance(v, Mapping):
        raise _err(f"{where}.{key}", f"expected a mapping, got {type(v).__name__}")
    return dict(v)


def _str(d: Mapping[str, Any], key: str, where: str) -> str:
    v = d.get(key)
    if not isinstance(v, str) or not v:
        raise _err(f"{where}.{key}", "missing or not a string")
    return v


@dataclass(frozen=True)
class ParamSpec:
    type: str
    optional: bool = False
    has_default: bool = False
    default: Any = None


@dataclass(frozen=True)
class ArtifactSpec:
    schema_title: str
    schema_version: str = "0.0.1"
    is_list: bool = False
    optional: bool = False

    def type_dict(self) -> dict[str, str]:
        return {"schemaTitle": self.schema_title, "schemaVersion": self.schema_version}


@dataclass(frozen=True)
class Interface:
    params_in: dict[str, ParamSpec] = field(default_factory=dict)
    artifacts_in: dict[str, ArtifactSpec] = field(default_factory=dict)
    params_out: dict[str, ParamSpec] = field(default_factory=dict)
    artifacts_out: dict[str, ArtifactSpec] = field(default_factory=dict)


@dataclass(frozen=True)
class ParamBinding:
    """Where a task input parameter's value comes from (exactly one of the kinds)."""

    kind: str  # constant | component_input | task_output | final_status
    value: Any = None  # constant
    name: str = ""  # component input name, or the producer's output key
    task: str = ""  # producer task
    selector: str | None = None  # parameterExpressionSelector


@dataclass(frozen=True)
class ArtifactBinding:
    kind: str  # component_input | task_output
    name: str
    task: str = ""


@dataclass(frozen=True)
class Retry:
    max_count: int
    backoff_s: float = 0.0
    factor: float = 2.0
    max_backoff_s: float = 3600.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        return float(min(self.max_backoff_s, self.backoff_s * self.factor ** (attempt - 1)))


@dataclass(frozen=True)
class Iterator:
    kind: str  # parameter | artifact
    item_input: str
    raw: str | None = None  # a JSON list written in the pipeline
    input_name: str | None = None  # the component input holding the list
    parallelism: int = 0  # 0 = unlimited


@dataclass(frozen=True)
class TaskSpec:
    name: str
    display_name: str
    component: str
    depends_on: tuple[str, ...] = ()
    params: dict[str, ParamBinding] = field(default_factory=dict)
    artifacts: dict[str, ArtifactBinding] = field(default_factory=dict)
    condition: str | None = None
    all_upstream_completed: bool = False  # exit handler trigger strategy
    iterator: Iterator | None = None
    retry: Retry | None = None
    cache_enabled: bool = False


@dataclass(frozen=True)
class DagOutput:
    selectors: tuple[tuple[str, str], ...]  # (producer subtask, output key), first that exists
    oneof: bool = False


@dataclass(frozen=True)
class ComponentSpec:
    name: str
    interface: Interface
    executor: str | None = None
    tasks: dict[str, TaskSpec] = field(default_factory=dict)  # for DAG components
    param_outputs: dict[str, DagOutput] = field(default_factory=dict)
    artifact_outputs: dict[str, DagOutput] = field(default_factory=dict)

    @property
    def is_dag(self) -> bool:
        return self.executor is None


@dataclass(frozen=True)
class PipelineSpec:
    name: str
    root: ComponentSpec
    components: dict[str, ComponentSpec]
    executors: dict[str, dict[str, Any]]
    platform: dict[str, Any]
    doc: dict[str, Any]

    def component(self, name: str) -> ComponentSpec:
        return self.components[name]

    @classmethod
    def parse(cls, doc: Mapping[str, Any], platform: Mapping[str, Any] | None = None
              ) -> PipelineSpec:
        if not isinstance(doc, Mapping):
            raise _err("(top level)", "expected a mapping (a compiled KFP v2 pipeline)")
        if "root" not in doc or "pipelineInfo" not in doc:
            hint = ("this looks like a single component, not a pipeline"
                    if "executorLabel" in str(doc.get("root", "")) or "implementation" in doc
                    else "is it a compiled KFP v2 pipeline?")
            raise _err("(top level)", f"no `root` / `pipelineInfo`; {hint}")
        schema = str(doc.get("schemaVersion", ""))
        if not schema.startswith("2."):
            raise _err("schemaVersion", f"{schema or 'missing'}; only KFP v2 IR (2.x) runs here, "
                                        "recompile the pipeline with kfp>=2")
        name = _str(_map(doc, "pipelineInfo", ""), "name", "pipelineInfo")
        executors = _map(_map(doc, "deploymentSpec", ""), "executors", "deploymentSpec")
        comps = {k: _component(k, v, f"components.{k}") for k, v in
                 _map(doc, "components", "").items()}
        root = _component("root", doc["root"], "root")
        spec = cls(name, root, comps, executors, dict(platform or {}), dict(doc))
        spec._check(root, "root")
        for k, c in comps.items():
            spec._check(c, f"components.{k}")
        spec._check_acyclic()
        return spec

    def _check_acyclic(self) -> None:
        """No component contains itself, and no DAG's tasks depend on each other in a circle
        (either would never finish)."""
        state: dict[str, int] = {}  # 1 = on the current path, 2 = done

        def visit(name: str, path: tuple[str, ...]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                raise _err(f"components.{name}", "contains itself: " + " → ".join(
                    (*path[path.index(name):], name)))
            state[name] = 1
            comp = self.root if name == "root" else self.components[name]
            for t in comp.tasks.values():
                visit(t.component, (*path, name))
            state[name] = 2

        visit("root", ())
        for cname, comp in [("root", self.root), *self.components.items()]:
            deps = {n: set(t.depends_on) | {b.task for b in t.params.values() if b.task}
                    | {b.task for b in t.artifacts.values() if b.task}
                    for n, t in comp.tasks.items()}
            done: set[str] = set()
            while len(done) < len(deps):
                ready = [n for n, d in deps.items() if n not in done and d <= done]
                if not ready:
                    stuck = sorted(n for n in deps if n not in done)
                    raise _err(f"{'root' if cname == 'root' else 'components.' + cname}.dag",
                               f"tasks depend on each other in a cycle: {stuck}")
                done.update(ready)

    def _check(self, comp: ComponentSpec, where: str) -> None:
        if comp.executor is not None:
            ex = self.executors.get(comp.executor)
            if not isinstance(ex, Mapping) or not ({"container", "importer"} & set(ex)):
                kinds = sorted(ex) if isinstance(ex, Mapping) else "missing"
                raise _err(f"{where}.executorLabel",
                           f"executor {comp.executor!r} is {kinds}; a local run supports "
                           "container and importer executors")
            return
        for tname, t in comp.tasks.items():
            tw = f"{where}.dag.tasks.{tname}" + (
                f" ({t.display_name})" if t.display_name != tname else "")
            if t.component not in self.components:
                raise _err(f"{tw}.componentRef", f"no component named {t.component!r}")
            for dep in t.depends_on:
                if dep not in comp.tasks:
                    raise _err(f"{tw}.dependentTasks", f"no task {dep!r} in this DAG")
            callee = self.components[t.component]
            for pname, b in t.params.items():
                if b.kind in ("task_output", "final_status") and b.task not in comp.tasks:
                    raise _err(f"{tw}.inputs.parameters.{pname}", f"no task {b.task!r}")
                if b.kind == "component_input" and b.name not in comp.interface.params_in:
                    raise _err(f"{tw}.inputs.parameters.{pname}",
                               f"the enclosing component has no input parameter {b.name!r}")
                if b.kind == "task_output":
                    producer = self.components[comp.tasks[b.task].component]
                    if b.name not in producer.interface.params_out:
                        raise _err(f"{tw}.inputs.parameters.{pname}",
                                   f"task {b.task!r} has no output parameter {b.name!r}")
            for aname, ab in t.artifacts.items():
                if ab.kind == "task_output":
                    if ab.task not in comp.tasks:
                        raise _err(f"{tw}.inputs.artifacts.{aname}", f"no task {ab.task!r}")
                    producer = self.components[comp.tasks[ab.task].component]
                    if ab.name not in producer.interface.artifacts_out:
                        raise _err(f"{tw}.inputs.artifacts.{aname}",
                                   f"task {ab.task!r} has no output artifact {ab.name!r}")
                elif ab.name not in comp.interface.artifacts_in:
                    raise _err(f"{tw}.inputs.artifacts.{aname}",
                               f"the enclosing component has no input artifact {ab.name!r}")
            if t.iterator is not None and t.iterator.kind == "parameter" \
                    and t.iterator.item_input not in callee.interface.params_in:
                raise _err(f"{tw}.parameterIterator",
                           f"loop body has no input {t.iterator.item_input!r}")
        for outs, kind in ((comp.param_outputs, "parameter"), (comp.artifact_outputs, "artifact")):
            for oname, o in outs.items():
                for sub, _key in o.selectors:
                    if sub not in comp.tasks:
                        raise _err(f"{where}.dag.outputs.{kind}s.{oname}", f"no subtask {sub!r}")


def _param_spec(d: Mapping[str, Any], where: str) -> ParamSpec:
    ptype = d.get("parameterType") or _V1_TYPES.get(str(d.get("type", "")))
    if ptype not in PARAMETER_TYPES:
        raise _err(f"{where}.parameterType", f"{ptype!r} is not a KFP parameter type")
    return ParamSpec(str(ptype), bool(d.get("isOptional", False)), "defaultValue" in d,
                     d.get("defaultValue"))


def _artifact_spec(d: Mapping[str, Any], where: str) -> ArtifactSpec:
    t = _map(d, "artifactType", where)
    title = t.get("schemaTitle") or "system.Artifact"
    return ArtifactSpec(str(title), str(t.get("schemaVersion", "0.0.1")),
                        bool(d.get("isArtifactList", False)), bool(d.get("isOptional", False)))


def _names(d: Mapping[str, Any], where: str) -> dict[str, Any]:
    for name in d:
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or name in (".", ".."):
            raise _err(where, f"{str(name)[:80]!r} is not a valid input or output name "
                              "(letters, digits, '_', '-', '.')")
    return dict(d)


def _interface(d: Mapping[str, Any], where: str) -> Interface:
    ins, outs = _map(d, "inputDefinitions", where), _map(d, "outputDefinitions", where)
    for side, defs in (("inputDefinitions", ins), ("outputDefinitions", outs)):
        for kind in ("parameters", "artifacts"):
            _names(_map(defs, kind, where), f"{where}.{side}.{kind}")
    return Interface(
        {k: _param_spec(v, f"{where}.inputDefinitions.parameters.{k}")
         for k, v in _map(ins, "parameters", where).items()},
        {k: _artifact_spec(v, f"{where}.inputDefinitions.artifacts.{k}")
         for k, v in _map(ins, "artifacts", where).items()},
        {k: _param_spec(v, f"{where}.outputDefinitions.parameters.{k}")
         for k, v in _map(outs, "parameters", where).items()},
        {k: _artifact_spec(v, f"{where}.outputDefinitions.artifacts.{k}")
         for k, v in _map(outs, "artifacts", where).items()},
    )


def runtime_value(v: Mapping[str, Any], where: str) -> Any:
    """A ``ValueOrRuntimeParameter``'s constant."""
    if "constant" in v:
        return v["constant"]
    cv = v.get("constantValue")
    if isinstance(cv, Mapping):
        for k in ("stringValue", "intValue", "doubleValue"):
            if k in cv:
                return int(cv[k]) if k == "intValue" else cv[k]
    raise _err(where, "expected a constant value")


def _param_binding(d: Mapping[str, Any], where: str) -> ParamBinding:
    sel = d.get("parameterExpressionSelector") or None
    if "runtimeValue" in d:
        return ParamBinding("constant", runtime_value(d["runtimeValue"], f"{where}.runtimeValue"),
                            selector=sel)
    if "componentInputParameter" in d:
        return ParamBinding("component_input", name=str(d["componentInputParameter"]),
                            selector=sel)
    if "taskOutputParameter" in d:
        t = _map(d, "taskOutputParameter", where)
        return ParamBinding("task_output", name=_str(t, "outputParameterKey", where),
                            task=_str(t, "producerTask", where), selector=sel)
    if "taskFinalStatus" in d:
        t = _map(d, "taskFinalStatus", where)
        return ParamBinding("final_status", task=_str(t, "producerTask", where))
    raise _err(where, "no runtimeValue, componentInputParameter, taskOutputParameter or "
                      "taskFinalStatus")


def _artifact_binding(d: Mapping[str, Any], where: str) -> ArtifactBinding:
    if "componentInputArtifact" in d:
        return ArtifactBinding("component_input", str(d["componentInputArtifact"]))
    if "taskOutputArtifact" in d:
        t = _map(d, "taskOutputArtifact", where)
        return ArtifactBinding("task_output", _str(t, "outputArtifactKey", where),
                               _str(t, "producerTask", where))
    raise _err(where, "no componentInputArtifact or taskOutputArtifact")


def parse_duration(v: Any, where: str) -> float:
    if v is None:
        return 0.0
    if isinstance(v, int | float):
        return float(v)
    m = _DURATION_RE.fullmatch(str(v))
    if not m:
        raise _err(where, f"{v!r} is not a duration like '30s'")
    return float(m.group(1))


def _task(name: str, d: Mapping[str, Any], where: str) -> TaskSpec:
    if not isinstance(d, Mapping):
        raise _err(where, "expected a mapping")
    inputs = _map(d, "inputs", where)
    trigger = _map(d, "triggerPolicy", where)
    iterator = None
    if "parameterIterator" in d:
        it = _map(d, "parameterIterator", where)
        items = _map(it, "items", f"{where}.parameterIterator")
        raw, inp = items.get("raw"), items.get("inputParameter")
        if raw is None and inp is None:
            raise _err(f"{where}.parameterIterator.items", "needs raw or inputParameter")
        iterator = Iterator("parameter", _str(it, "itemInput", f"{where}.parameterIterator"),
                            raw=None if raw is None else str(raw),
                            input_name=None if inp is None else str(inp))
    elif "artifactIterator" in d:
        it = _map(d, "artifactIterator", where)
        items = _map(it, "items", f"{where}.artifactIterator")
        iterator = Iterator("artifact", _str(it, "itemInput", f"{where}.artifactIterator"),
                            input_name=_str(items, "inputArtifact", f"{where}.artifactIterator"))
    if iterator is not None:
        limit = int(_map(d, "iteratorPolicy", where).get("parallelismLimit", 0) or 0)
        iterator = Iterator(iterator.kind, iterator.item_input, iterator.raw,
                            iterator.input_name, max(0, limit))
    retry = None
    if "retryPolicy" in d:
        r = _map(d, "retryPolicy", where)
        retry = Retry(int(r.get("maxRetryCount", 0) or 0),
                      parse_duration(r.get("backoffDuration"), f"{where}.retryPolicy"),
                      float(r.get("backoffFactor", 2.0) or 2.0),
                      parse_duration(r.get("backoffMaxDuration", "3600s"), f"{where}.retryPolicy"))
    return TaskSpec(
        name=name,
        display_name=str(_map(d, "taskInfo", where).get("name") or name),
        component=_str(_map(d, "componentRef", where), "name", f"{where}.componentRef"),
        depends_on=tuple(str(x) for x in d.get("dependentTasks") or ()),
        params={k: _param_binding(v, f"{where}.inputs.parameters.{k}")
                for k, v in _map(inputs, "parameters", where).items()},
        artifacts={k: _artifact_binding(v, f"{where}.inputs.artifacts.{k}")
                   for k, v in _map(inputs, "artifacts", where).items()},
        condition=trigger.get("condition") or None,
        all_upstream_completed=trigger.get("strategy") == "ALL_UPSTREAM_TASKS_COMPLETED",
        iterator=iterator,
        retry=retry,
        cache_enabled=bool(_map(d, "cachingOptions", where).get("enableCache", False)),
    )


def _selectors(v: Mapping[str, Any], where: str) -> DagOutput:
    if "valueFromParameter" in v:
        s = _map(v, "valueFromParameter", where)
        return DagOutput(((_str(s, "producerSubtask", where),
                           _str(s, "outputParameterKey", where)),))
    if "valueFromOneof" in v:
        sels = _map(v, "valueFromOneof", where).get("parameterSelectors") or []
        return DagOutput(tuple((_str(s, "producerSubtask", where),
                                _str(s, "outputParameterKey", where)) for s in sels), oneof=True)
    if "artifactSelectors" in v:
        sels = v["artifactSelectors"] or []
        return DagOutput(tuple((_str(s, "producerSubtask", where),
                                _str(s, "outputArtifactKey", where)) for s in sels),
                         oneof=len(sels) > 1)
    raise _err(where, "no valueFromParameter, valueFromOneof or artifactSelectors")


def _component(name: str, d: Any, where: str) -> ComponentSpec:
    if not isinstance(d, Mapping):
        raise _err(where, "expected a mapping")
    interface = _interface(d, where)
    if "executorLabel" in d:
        return ComponentSpec(name, interface, executor=str(d["executorLabel"]))
    dag = _map(d, "dag", where)
    if not dag:
        raise _err(where, "neither an executorLabel nor a dag")
    outs = _map(dag, "outputs", f"{where}.dag")
    return ComponentSpec(
        name, interface,
        tasks={k: _task(k, v, f"{where}.dag.tasks.{k}")
               for k, v in _map(dag, "tasks", f"{where}.dag").items()},
        param_outputs={k: _selectors(v, f"{where}.dag.outputs.parameters.{k}")
                       for k, v in _map(outs, "parameters", where).items()},
        artifact_outputs={k: _selectors(v, f"{where}.dag.outputs.artifacts.{k}")
                          for k, v in _map(outs, "artifacts", where).items()},
    )


def canonical(value: Any) -> str:
    """Stable JSON for hashing (sorted keys, no whitespace)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
