"""A task's inputs and outputs in Kubeflow's executor protocol.

``executor_input`` builds the ``ExecutorInput`` JSON a component receives (parameter values,
input artifacts, where to write each output), and ``read_outputs`` turns what the component
wrote (``executor_output.json``, output parameter files, artifact files) back into typed
outputs, checking that every declared output was produced.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tureen.errors import InvalidRequestError
from tureen.pipelines.records import ArtifactRecord, TaskIO
from tureen.pipelines.spec import ComponentSpec
from tureen.pipelines.values import coerce, from_text

EXECUTOR_OUTPUT = "executor_output.json"


def _runtime_artifact(a: ArtifactRecord) -> dict[str, Any]:
    return {"name": a.name, "type": {"schemaTitle": a.type}, "uri": a.uri,
            "metadata": a.metadata}


def executor_input(comp: ComponentSpec, inputs: TaskIO, task_dir: Path,
                   artifact_dir: Path) -> dict[str, Any]:
    outputs: dict[str, Any] = {
        "parameters": {k: {"outputFile": str(task_dir / "outputs" / k)}
                       for k in comp.interface.params_out},
        "artifacts": {k: {"artifacts": [{
            "name": k, "type": v.type_dict(), "uri": str(artifact_dir / k), "metadata": {}}]}
            for k, v in comp.interface.artifacts_out.items()},
        "outputFile": str(task_dir / EXECUTOR_OUTPUT),
    }
    return {
        "inputs": {
            "parameterValues": dict(inputs.parameters),
            "artifacts": {k: {"artifacts": [_runtime_artifact(a) for a in v]}
                          for k, v in inputs.artifacts.items()},
        },
        "outputs": outputs,
    }


def read_outputs(comp: ComponentSpec, ex_input: dict[str, Any], digests_path: Path,
                 where: str) -> TaskIO:
    out_path = Path(ex_input["outputs"]["outputFile"])
    written: dict[str, Any] = {}
    if out_path.is_file():
        try:
            written = json.loads(out_path.read_text() or "{}")
        except ValueError as exc:
            raise InvalidRequestError(f"{where}: {out_path} is not JSON: {exc}") from None
    try:
        digests = json.loads(digests_path.read_text())
    except (FileNotFoundError, ValueError):
        digests = {}
    params: dict[str, Any] = {}
    given = written.get("parameterValues") or {}
    for name, pspec in comp.interface.params_out.items():
        if name in given:
            params[name] = coerce(given[name], pspec.type, f"{where}: output {name!r}")
            continue
        f = Path(ex_input["outputs"]["parameters"][name]["outputFile"])
        if f.is_file():
            params[name] = from_text(f.read_text(), pspec.type, f"{where}: output {name!r}")
            continue
        raise InvalidRequestError(
            f"{where} did not produce its output parameter {name!r}: return it from the "
            "function (or write it to its output file)."
        )
    artifacts: dict[str, list[ArtifactRecord]] = {}
    declared = ex_input["outputs"]["artifacts"]
    for name, spec in comp.interface.artifacts_out.items():
        runtime = (written.get("artifacts") or {}).get(name, {}).get("artifacts") \
            or declared[name]["artifacts"]
        recs = []
        ds = digests.get(name) or []
        base = declared[name]["artifacts"][0]
        for i, a in enumerate(runtime):
            digest = ds[i] if i < len(ds) else None
            recs.append(ArtifactRecord(
                name=str(a.get("name") or name), type=spec.schema_title,
                uri=str(a.get("uri") or base["uri"]), metadata=dict(a.get("metadata") or {}),
                digest=digest))
        artifacts[name] = recs
    return TaskIO(parameters=params, artifacts=artifacts)
