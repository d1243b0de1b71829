"""Container placeholders of the KFP IR, resolved for one task.

A container's ``command`` / ``args`` elements may be plain strings with ``{{$...}}``
placeholders (``{{$.inputs.parameters['x']}}``, ``{{$.outputs.artifacts['m'].path}}``,
``{{$}}`` = the executor input JSON, ``{{$.pipeline_job_name}}`` ...) or JSON structures
``{"Concat": [...]}`` / ``{"IfPresent": {"InputName": ..., "Then": ..., "Else": ...}}``.
String parameter values may themselves hold placeholders (an f-string argument compiles to
``"{{$.inputs.parameters['pipelinechannel--t-Output']}}-suffix"``); ``resolve_parameters``
replaces those first. An unknown placeholder is an error naming it, never passed through.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tureen.errors import InvalidRequestError
from tureen.pipelines.values import to_text

_PH_RE = re.compile(r"\{\{\$(?:\.[^{}]*)?\}\}")
_IO_RE = re.compile(
    r"\{\{\$\.(inputs|outputs)\.(parameters|artifacts)\['([^']+)'\]"
    r"(?:\.(path|uri|output_file|metadata)(?:\['([^']+)'\])?)?\}\}"
)


@dataclass(frozen=True)
class Context:
    executor_input: Mapping[str, Any]
    job_name: str
    job_id: str
    task_name: str
    task_id: str
    pipeline_root: str
    created: str
    workspace: str


def _artifact(ctx: Context, side: str, name: str) -> Mapping[str, Any]:
    arts = ctx.executor_input.get(side, {}).get("artifacts", {}).get(name, {}).get("artifacts")
    if not arts:
        raise InvalidRequestError(f"placeholder refers to {side} artifact {name!r}, "
                                  "which this task does not have.")
    first: Mapping[str, Any] = arts[0]
    return first


def _one(ph: str, ctx: Context) -> str:
    fixed: dict[str, Callable[[], Any]] = {
        "{{$}}": lambda: json.dumps(ctx.executor_input),
        "{{$.outputs.output_file}}": lambda: ctx.executor_input["outputs"]["outputFile"],
        "{{$.outputMetadataUri}}": lambda: ctx.executor_input["outputs"]["outputFile"],
        "{{$.pipeline_job_name}}": lambda: ctx.job_name,
        "{{$.pipeline_job_resource_name}}": lambda: ctx.job_name,
        "{{$.pipeline_job_uuid}}": lambda: ctx.job_id,
        "{{$.pipeline_task_name}}": lambda: ctx.task_name,
        "{{$.pipeline_task_uuid}}": lambda: ctx.task_id,
        "{{$.pipeline_root}}": lambda: ctx.pipeline_root,
        "{{$.pipeline_job_create_time_utc}}": lambda: ctx.created,
        "{{$.pipeline_job_schedule_time_utc}}": lambda: ctx.created,
        "{{$.workspace_path}}": lambda: ctx.workspace,
    }
    if ph in fixed:
        return str(fixed[ph]())
    m = _IO_RE.fullmatch(ph)
    if m is None:
        raise InvalidRequestError(f"unknown placeholder {ph}; a local run supports the "
                                  "placeholders of KFP 2.x.")
    side, kind, name, attr, key = m.groups()
    if kind == "parameters":
        if side == "inputs":
            values = ctx.executor_input.get("inputs", {}).get("parameterValues", {})
            if name not in values:
                raise InvalidRequestError(f"placeholder {ph}: input {name!r} has no value.")
            return to_text(values[name])
        out = ctx.executor_input["outputs"].get("parameters", {}).get(name)
        if out is None or attr != "output_file":
            raise InvalidRequestError(f"placeholder {ph}: no output parameter file {name!r}.")
        return str(out["outputFile"])
    art = _artifact(ctx, side, name)
    if attr == "metadata":
        meta = art.get("metadata", {})
        if key is not None:
            if key not in meta:
                raise InvalidRequestError(f"placeholder {ph}: no metadata key {key!r}.")
            return to_text(meta[key])
        return json.dumps(meta)
    return str(art.get("uri", ""))  # path == uri for local artifacts


def resolve_string(text: str, ctx: Context) -> str:
    return _PH_RE.sub(lambda m: _one(m.group(), ctx), text)


def _provided(ctx: Context) -> set[str]:
    ins = ctx.executor_input.get("inputs", {})
    return set(ins.get("parameterValues", {})) | set(ins.get("artifacts", {}))


def _struct(node: Any, provided: set[str], ctx: Context) -> list[str] | str | None:
    if isinstance(node, str):
        return resolve_string(node, ctx)
    if not isinstance(node, Mapping) or len(node) != 1:
        raise InvalidRequestError(f"bad command placeholder structure: {json.dumps(node)[:200]}")
    (op, body), = node.items()
    if op == "Concat":
        parts = [_struct(p, provided, ctx) for p in body]
        return "".join(p if isinstance(p, str) else "".join(p) for p in parts if p is not None)
    if op == "IfPresent":
        branch = body.get("Then") if body.get("InputName") in provided else body.get("Else")
        if branch is None:
            return None
        if isinstance(branch, list):
            out: list[str] = []
            for p in branch:
                r = _struct(p, provided, ctx)
                if isinstance(r, list):
                    out.extend(r)
                elif r is not None:
                    out.append(r)
            return out
        return _struct(branch, provided, ctx)
    raise InvalidRequestError(f"unknown command placeholder {op!r}; expected Concat or IfPresent.")


def resolve_command(elements: list[str], ctx: Context) -> list[str]:
    """A container's ``command + args`` with every placeholder resolved."""
    provided = _provided(ctx)
    out: list[str] = []
    for el in elements:
        if el.startswith(('{"Concat"', '{"IfPresent"')):
            try:
                node = json.loads(el)
            except ValueError:
                node = None
            if node is not None:
                r = _struct(node, provided, ctx)
                if isinstance(r, list):
                    out.extend(r)
                elif r is not None:
                    out.append(r)
                continue
        out.append(resolve_string(el, ctx))
    return out


_INPUT_RE = re.compile(r"\{\{\$\.inputs\.parameters\['([^']+)'\]\}\}")


def _resolve_value(v: Any, ctx: Context) -> Any:
    if isinstance(v, str) and "{{$" in v:
        whole = _INPUT_RE.fullmatch(v)
        values = ctx.executor_input.get("inputs", {}).get("parameterValues", {})
        if whole is not None and whole.group(1) in values:
            return values[whole.group(1)]  # the value itself, typed
        return resolve_string(v, ctx)
    if isinstance(v, list):
        return [_resolve_value(x, ctx) for x in v]
    if isinstance(v, dict):
        return {k: _resolve_value(x, ctx) for k, x in v.items()}
    return v


def resolve_parameters(values: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Parameter values with placeholders inside resolved: f-string arguments, and pipeline
    channels inside list or dict constants (a string that is exactly one input placeholder
    becomes that input's value, keeping its type)."""
    return {k: _resolve_value(v, ctx) for k, v in values.items()}
