"""``tureen pipeline compile``: KFP IR YAML for a Kubeflow Pipelines backend.

kfp's own compiler writes the spec; then tureen's components get the tureen image (``--image``;
the components are declared with the placeholder ``tureen:latest``), and the result is
checked before it is written:

- against the PipelineSpec schema (kfp's protobuf messages, unknown fields rejected) and by
  tureen's runner (every reference resolves, every executor is runnable);
- for local paths: a parameter default or constant naming a file of this machine would not
  exist in the cluster's pods — an error says which and what to pass instead (a path
  relative to the repo, which the image holds at ``/app/repo``, or an object-store URL).

``write_image_context`` writes the image's build context with the Dockerfile of
``deploy export``: the repo's definitions and ``pipelines/`` under ``/app/repo`` and
``TUREEN_REPO=/app/repo``, so components find the repo with no path in the YAML.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import yaml

from tureen.errors import InvalidRequestError
from tureen.pipelines.loader import compile_text, pick_pipeline, split_target
from tureen.pipelines.spec import PipelineSpec

TUREEN_IMAGE = "tureen:latest"
IMAGE_REPO = "/app/repo"


@dataclass
class Compiled:
    name: str
    tasks: int
    image: str
    warnings: list[str] = field(default_factory=list)


def check_schema(doc: dict[str, Any], platform: dict[str, Any] | None = None) -> None:
    """Parse the IR into kfp's protobuf messages; unknown fields or wrong types fail."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2 as pb

    try:
        json_format.ParseDict(doc, pb.PipelineSpec())
        json_format.ParseDict(doc.get("deploymentSpec") or {}, pb.PipelineDeploymentConfig())
        if platform:
            json_format.ParseDict(platform, pb.PlatformSpec())
    except json_format.ParseError as exc:
        raise InvalidRequestError(f"the compiled pipeline does not match the KFP PipelineSpec "
                                  f"schema: {exc}") from None


def _constants(doc: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(where, value) of every constant and default a task would receive."""
    for pname, p in ((doc.get("root") or {}).get("inputDefinitions") or {}).get(
            "parameters", {}).items():
        if "defaultValue" in p:
            yield f"pipeline parameter {pname!r}", p["defaultValue"]
    comps = dict(doc.get("components") or {})
    comps["root"] = doc.get("root") or {}
    for comp in comps.values():
        for tname, task in ((comp.get("dag") or {}).get("tasks") or {}).items():
            for iname, inp in ((task.get("inputs") or {}).get("parameters") or {}).items():
                rv = inp.get("runtimeValue") or {}
                if "constant" in rv:
                    yield f"input {iname!r} of task {tname!r}", rv["constant"]


def local_paths(doc: dict[str, Any], repo: Path) -> list[str]:
    found = []
    for where, value in _constants(doc):
        for s in _strings(value):
            p = Path(s)
            if s.startswith("/") and len(s) > 1 and (p.exists() or s.startswith(str(repo))):
                found.append(f"{where} is the local path {s}")
    return found


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)


def compile_pipeline(target: str, out: Path, *, image: str | None = None,
                     repo: str | Path = ".") -> Compiled:
    path, name = split_target(target)
    if path.suffix in (".yaml", ".yml", ".json"):
        raise InvalidRequestError(f"{path} is already compiled; compile the pipeline's .py file.")
    text = compile_text(pick_pipeline(path, name), path)
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    doc, platform = docs[0], (docs[1] if len(docs) > 1 else {})
    image = image or TUREEN_IMAGE
    for ex in (doc.get("deploymentSpec") or {}).get("executors", {}).values():
        c = ex.get("container")
        if isinstance(c, dict) and c.get("image") == TUREEN_IMAGE:
            c["image"] = image
    bad = local_paths(doc, Path(repo).resolve())
    if bad:
        raise InvalidRequestError(
            "the compiled pipeline would carry paths of this machine, which do not exist in "
            "the cluster's pods:\n  " + "\n  ".join(bad) + "\nUse paths relative to the repo "
            f"(the image holds it at {IMAGE_REPO}) or object-store URLs (s3://, gs://).")
    check_schema(doc, platform or None)
    spec = PipelineSpec.parse(doc, platform)
    lines = text.splitlines()
    n = next((i for i, ln in enumerate(lines) if not ln.startswith("#")), len(lines))
    header = "".join(ln + "\n" for ln in lines[:n])
    body = yaml.safe_dump_all([doc] + ([platform] if platform else []), sort_keys=False,
                              width=100)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + body)
    tasks = sum(1 for c in spec.components.values() if not c.is_dag)
    warnings = []
    if image == TUREEN_IMAGE and any(
            (ex.get("container") or {}).get("image") == TUREEN_IMAGE
            for ex in doc["deploymentSpec"]["executors"].values()):
        warnings.append(f"tureen's components use the image {TUREEN_IMAGE!r}; build and push "
                        "one (--image-context) and pass --image REGISTRY/NAME:TAG.")
    return Compiled(spec.name, tasks, image, warnings)


def _tureen_version() -> str:
    try:
        return version("tureen")
    except PackageNotFoundError:  # pragma: no cover - source tree without metadata
        return "0.1.0"


def write_image_context(repo: Path, out_dir: Path) -> list[str]:
    """Dockerfile, requirements.txt and the repo's code (not its data) for the image."""
    from tureen.deployments.export import image_lines

    out_dir.mkdir(parents=True, exist_ok=True)
    lines = image_lines("tureen pipeline components: generated by `tureen pipeline compile`.",
                        ["COPY repo/ /app/repo/"], env=[f"ENV TUREEN_REPO={IMAGE_REPO}"])
    (out_dir / "Dockerfile").write_text("\n".join([*lines, f"WORKDIR {IMAGE_REPO}", ""]))
    (out_dir / "requirements.txt").write_text(
        f"tureen[pipelines,xgboost,lightgbm,sql,redis]=={_tureen_version()}\n")
    dest = out_dir / "repo"
    dest.mkdir(exist_ok=True)
    copied = []
    for f in [repo / "tureen.yaml", *sorted(repo.glob("*.py"))]:
        if f.is_file():
            shutil.copy2(f, dest / f.name)
            copied.append(f.name)
    if (repo / "pipelines").is_dir():
        shutil.copytree(repo / "pipelines", dest / "pipelines", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        copied.append("pipelines/")
    (out_dir / ".dockerignore").write_text("**/__pycache__\n**/*.pyc\n")
    return ["Dockerfile", "requirements.txt", *(f"repo/{c}" for c in copied)]
