"""Load a pipeline to run or compile: ``FILE.py[:PIPELINE]`` (a KFP v2 pipeline written with
the SDK, compiled here with ``kfp``'s own compiler) or a compiled ``.yaml`` / ``.json``.

Errors say what to do: a file that does not import shows the exception and its line, a file
with several pipelines lists them, a compiled file that is not a KFP v2 pipeline says so.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tureen.errors import InvalidRequestError, NotFoundError, suggest
from tureen.user_code import NotImportableError, import_file

MAX_SPEC_BYTES = 64 << 20
KFP_MISSING = ("needs the Kubeflow Pipelines SDK, which is not installed: "
               "pip install 'tureen[pipelines]' (or pip install kfp).")


@dataclass
class LoadedPipeline:
    name: str
    doc: dict[str, Any]  # the PipelineSpec IR
    platform: dict[str, Any] = field(default_factory=dict)  # platform spec (second document)
    source: str = ""
    python_defaults: dict[str, Any] = field(default_factory=dict)


def kfp_available() -> bool:
    return importlib.util.find_spec("kfp") is not None


def import_kfp() -> None:
    """Import kfp's DSL and compiler without its API client: ``import kfp`` also imports
    ``kfp.client`` (google-auth, cryptography, the server API), about a second that a local
    run never needs. ``kfp.Client`` still works: it is imported when first used."""
    if "kfp" in sys.modules:
        return
    before = os.environ.get("_KFP_RUNTIME")
    os.environ["_KFP_RUNTIME"] = "true"  # kfp/__init__ then skips its eager imports
    try:
        import kfp
    finally:
        if before is None:
            del os.environ["_KFP_RUNTIME"]
        else:
            os.environ["_KFP_RUNTIME"] = before
    import kfp.dsl

    def lazy(name: str) -> Any:
        if name == "Client":
            from kfp.client import Client

            return Client
        raise AttributeError(f"module 'kfp' has no attribute {name!r}")

    kfp.__getattr__ = lazy


def split_target(target: str) -> tuple[Path, str | None]:
    """``pipelines/train.py:fraud`` → (path, "fraud")."""
    path, sep, name = target.rpartition(":")
    if sep and path.endswith(".py") and name.isidentifier():
        return Path(path), name
    return Path(target), None


def read_compiled(path: Path) -> LoadedPipeline:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise NotFoundError(f"{path} does not exist.") from None
    if size > MAX_SPEC_BYTES:
        raise InvalidRequestError(f"{path} is {size >> 20} MB; a compiled pipeline is at most "
                                  f"{MAX_SPEC_BYTES >> 20} MB.")
    return parse_compiled(path.read_text(), path)


def parse_compiled(text: str, path: Path) -> LoadedPipeline:
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None] \
            if path.suffix != ".json" else [json.loads(text)]
    except (yaml.YAMLError, ValueError) as exc:
        raise InvalidRequestError(f"{path} is not valid YAML/JSON: {exc}") from None
    if not docs or not isinstance(docs[0], dict):
        raise InvalidRequestError(f"{path} holds no pipeline (expected a compiled KFP v2 "
                                  "pipeline: `tureen pipeline compile` or kfp's compiler).")
    doc = docs[0]
    if "pipelineSpec" in doc:  # a PipelineJob wrapper (Vertex / KFP job JSON)
        doc = doc["pipelineSpec"]
    name = str((doc.get("pipelineInfo") or {}).get("name") or path.stem)
    platform = docs[1] if len(docs) > 1 and isinstance(docs[1], dict) else {}
    return LoadedPipeline(name, doc, platform, str(path))


def _import_pipeline_file(path: Path) -> Any:
    if not path.is_file():
        raise NotFoundError(f"pipeline file {path} does not exist.")
    sys.path.insert(0, str(path.parent.resolve()))  # sibling modules import like in a script
    try:
        return import_file(path.resolve(), "_tureen_pipeline_")
    except NotImportableError as exc:
        raise InvalidRequestError(str(exc)) from None
    except SyntaxError as exc:
        raise InvalidRequestError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
    except Exception as exc:
        frames = [f for f in traceback.extract_tb(exc.__traceback__)
                  if Path(f.filename).resolve() == path.resolve()]
        at = f"{path}:{frames[-1].lineno}" if frames else str(path)
        if isinstance(exc, ModuleNotFoundError) and exc.name and exc.name.split(".")[0] == "kfp":
            raise InvalidRequestError(f"{at}: this pipeline {KFP_MISSING}") from None
        raise InvalidRequestError(
            f"{at}: the pipeline file does not import: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path.remove(str(path.parent.resolve()))


def pipelines_in(module: Any) -> dict[str, Any]:
    from kfp.dsl.graph_component import GraphComponent

    return {k: v for k, v in vars(module).items()
            if isinstance(v, GraphComponent) and not k.startswith("_")}


def pick_pipeline(path: Path, name: str | None) -> Any:
    """The pipeline object (a kfp ``GraphComponent``) named ``name`` in ``path``."""
    if not kfp_available():
        raise InvalidRequestError(f"running {path} {KFP_MISSING}")
    import_kfp()
    module = _import_pipeline_file(path)
    found = pipelines_in(module)
    if name is not None:
        if name not in found:
            raise NotFoundError(f"{path} has no pipeline named {name!r}.{suggest(name, found)} "
                                f"Pipelines in it: {sorted(found) or 'none'}.")
        return found[name]
    if len(found) == 1:
        return next(iter(found.values()))
    if not found:
        raise InvalidRequestError(f"{path} defines no @dsl.pipeline function.")
    # sub-pipelines used by another pipeline are not candidates
    used = {c for v in found.values() for c in _spec_dict(v).get("components", {})}
    top = {k: v for k, v in found.items()
           if "comp-" + str(v.name).lower().replace("_", "-") not in used}
    if len(top) == 1:
        return next(iter(top.values()))
    raise InvalidRequestError(f"{path} defines {len(found)} pipelines ({', '.join(sorted(found))});"
                              f" pick one: {path}:NAME.")


def _spec_dict(pipeline: Any) -> dict[str, Any]:
    from google.protobuf import json_format

    d: dict[str, Any] = json_format.MessageToDict(pipeline.pipeline_spec)
    return d


def compile_text(pipeline: Any, path: Path) -> str:
    """kfp's compiler output (YAML text) for ``pipeline``, defined in ``path``."""
    from kfp import compiler

    with tempfile.TemporaryDirectory(prefix="tureen-compile-") as tmp:
        out = Path(tmp) / "pipeline.yaml"
        try:
            compiler.Compiler().compile(pipeline, package_path=str(out))
        except Exception as exc:
            raise InvalidRequestError(f"{path}: kfp cannot compile the pipeline: "
                                      f"{type(exc).__name__}: {exc}") from exc
        return out.read_text()


def load(target: str, cache_dir: Path | None = None) -> LoadedPipeline:
    """The pipeline ``target`` names; ``cache_dir`` keeps compiled IR of ``.py`` files."""
    from tureen.pipelines import compiled

    path, name = split_target(target)
    if path.suffix in (".yaml", ".yml", ".json"):
        if name is not None:
            raise InvalidRequestError(f"{path} is a compiled pipeline; drop ':{name}'.")
        return read_compiled(path)
    hit = compiled.get(cache_dir, path, name) if cache_dir is not None else None
    if hit is not None:
        return LoadedPipeline(str((hit["doc"].get("pipelineInfo") or {}).get("name")),
                              hit["doc"], hit["platform"], str(path), hit["python_defaults"])
    pipeline = pick_pipeline(path, name)
    loaded = parse_compiled(compile_text(pipeline, path), path.with_suffix(".yaml"))
    loaded.source = str(path)
    spec_inputs = getattr(pipeline.component_spec, "inputs", None) or {}
    loaded.python_defaults = {k: v.default for k, v in spec_inputs.items()
                              if getattr(v, "default", None) is not None}
    if cache_dir is not None:
        compiled.put(cache_dir, path, name, loaded.doc, loaded.platform, loaded.python_defaults)
    return loaded
