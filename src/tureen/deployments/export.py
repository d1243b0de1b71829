"""``deploy export --target kserve``: a KServe InferenceService and the image that runs it.

The InferenceService (``serving.kserve.io/v1beta1``) has:

- ``spec.predictor.model``: ``modelFormat`` from the registered framework, ``storageUri``
  of the model version (the models store URL; local paths must be replaced by a bucket with
  ``--storage-uri``), ``protocolVersion: v2``; frameworks without a KServe runtime
  (TorchScript, custom ``model.py``) run in the tureen image with ``tureen serve-model``;
- ``spec.transformer`` (deployments with a feature service): the tureen image running
  ``tureen serve-transformer`` with the KServe container contract (``--model_name``,
  ``--predictor_protocol``, ``--http_port``, ``--grpc_port``, ``--workers``; KServe adds
  ``--predictor_host``);
- ``minReplicas: 0`` when idle unload is set (scale to zero), else 1; ``logger`` when the
  deployment logs to an HTTP sink (KServe's own logger then emits the same CloudEvents);
  ``batcher`` from the batching settings; ``canaryTrafficPercent`` for a canary (KServe
  routes that share to the latest rollout, which carries the canary version's storageUri).

The bind address and the authentication are stated in the container args: a tureen server
binds 127.0.0.1 unless told otherwise, so in a pod it gets ``--host 0.0.0.0``; with
``auth="server"`` it authenticates itself (``serving.auth`` of the repo's ``tureen.yaml`` baked
into the image), with ``auth="mesh"`` (the default when the repo has no ``serving.auth``) the
args say ``--insecure`` and a comment in the manifest says why: the mesh (Istio
AuthorizationPolicy, a gateway) must authenticate, and a pod without its sidecar would be open.

The Dockerfile is multi-stage: dependencies are resolved from ``requirements.txt`` alone in
the first stage (a layer Docker caches until the requirements change), then the feature repo
is copied on top.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import yaml

from tureen.deployments.spec import DeploymentSpec
from tureen.inference_log.record import LogMode
from tureen.models import ModelVersion

#: tureen framework -> KServe modelFormat name (None: served by the tureen image)
KSERVE_FORMATS: dict[str, str | None] = {
    "sklearn": "sklearn", "xgboost": "xgboost", "lightgbm": "lightgbm", "onnx": "onnx",
    "tensorflow": "tensorflow", "torchscript": None, "custom": None,
}
EXTRAS = {"xgboost": "xgboost", "lightgbm": "lightgbm", "onnx": "onnx",
          "torchscript": "torch", "tensorflow": "tensorflow"}
LOGGER_MODES = {LogMode.ALL: "all", LogMode.MODEL_INPUTS: "request",
                LogMode.PREDICTIONS: "response"}


AUTH_MODES = ("server", "mesh")
MESH_COMMENT = (
    "# --insecure: this server does not authenticate requests itself. The exporting repo has "
    "no\n# serving.auth, so authentication is left to the mesh (Istio AuthorizationPolicy, "
    "a gateway).\n# A pod without its sidecar would serve anyone who reaches it: set "
    "serving.auth and\n# export with --auth server to have tureen check tokens itself.\n")


def bind_args(auth: str) -> list[str]:
    """Inside a pod the server must listen on every interface; say how it is protected."""
    if auth not in AUTH_MODES:
        raise ValueError(f"auth must be one of {AUTH_MODES}")
    return ["--host", "0.0.0.0"] + (["--insecure"] if auth == "mesh" else [])


@dataclass(frozen=True)
class Exported:
    manifest: Path
    dockerfile: Path
    requirements: Path
    warnings: tuple[str, ...]


def _tureen_version() -> str:
    try:
        return version("tureen")
    except PackageNotFoundError:  # pragma: no cover - source tree without metadata
        return "0.1.0"


def inference_service(
    spec: DeploymentSpec,
    main: ModelVersion,
    canary: ModelVersion | None = None,
    *,
    image: str = "tureen:latest",
    storage_uri: str | None = None,
    namespace: str | None = None,
    auth: str = "mesh",
) -> tuple[dict[str, Any], list[str]]:
    """The InferenceService dict for ``spec`` and warnings about what needs attention."""
    warnings: list[str] = []
    bind = bind_args(auth)
    served = canary or main  # KServe's canary: the new rollout carries the canary version
    uri = f"{storage_uri.rstrip('/')}/{served.name}/{served.version}" if storage_uri \
        else served.uri
    if "://" not in uri:
        warnings.append(
            f"storageUri {uri} is a local path a cluster cannot read; push the models store "
            "to a bucket (models.path: s3://...) or pass --storage-uri s3://bucket/models."
        )
    ext: dict[str, Any] = {"minReplicas": 0 if spec.idle_unload_seconds else 1}
    if spec.logging is not LogMode.NONE:
        sink = spec.log_sink or ""
        if sink.startswith(("http://", "https://")):
            ext["logger"] = {"mode": LOGGER_MODES[spec.logging], "url": sink}
        else:
            warnings.append(
                f"logging {spec.logging.value} goes to {sink or 'Parquet'}; KServe's logger "
                "only posts CloudEvents over HTTP, so no logger is set (use --log-sink http://...)."
            )
    predictor: dict[str, Any] = dict(ext)
    if spec.batching is not None:
        predictor["batcher"] = {"maxBatchSize": spec.batching.max_batch_size,
                                "maxLatency": max(1, round(spec.batching.max_latency_ms))}
    if canary is not None and spec.canary is not None:
        predictor["canaryTrafficPercent"] = round(spec.canary.percent)
    fmt = KSERVE_FORMATS.get(main.framework)
    if fmt is not None:
        predictor["model"] = {"modelFormat": {"name": fmt}, "protocolVersion": "v2",
                              "storageUri": uri}
    else:
        predictor["containers"] = [{
            "name": "kserve-container", "image": image,
            "command": ["tureen", "serve-model"],
            "args": ["--model_name", spec.name, "--model_dir", "/mnt/models",
                     "--http_port", "8080", "--grpc_port", "8081",
                     "--workers", str(spec.workers), *bind],
            "env": [{"name": "STORAGE_URI", "value": uri}],
            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
        }]
    body: dict[str, Any] = {"predictor": predictor}
    if spec.feature_service is not None:
        args = ["--model_name", spec.name, "--predictor_protocol", "v2",
                "--http_port", "8080", "--grpc_port", "8081", "--workers", str(spec.workers),
                "--feature_service", spec.feature_service, "--repo", "/app/repo",
                "--predictor_model", spec.name, *bind]
        if spec.transformer and spec.transformer.endswith((".yaml", ".yml")):
            args += ["--config", f"/app/transformer/{Path(spec.transformer).name}"]
        body["transformer"] = {**ext, "containers": [{
            "name": "kserve-container", "image": image,
            "command": ["tureen", "serve-transformer"], "args": args,
            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
        }]}
        body["transformer"].pop("logger", None)
    metadata: dict[str, Any] = {
        "name": spec.name,
        "labels": {"app.kubernetes.io/managed-by": "tureen",
                   "tureen.dev/model": main.name, "tureen.dev/model-version": str(main.version)},
        "annotations": {"tureen.dev/framework": main.framework},
    }
    if canary is not None:
        metadata["labels"]["tureen.dev/canary-version"] = str(canary.version)
    if namespace:
        metadata["namespace"] = namespace
    return ({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
             "metadata": metadata, "spec": body}, warnings)


def manifest_text(manifest: dict[str, Any]) -> str:
    """The manifest as YAML, with the reason for every ``--insecure`` in a comment above it."""
    out: list[str] = []
    for line in yaml.safe_dump(manifest, sort_keys=False).splitlines(keepends=True):
        if line.strip() == "- --insecure":
            indent = line[: len(line) - len(line.lstrip())]
            out.extend(indent + c + "\n" for c in MESH_COMMENT.splitlines())
        out.append(line)
    return "".join(out)


def extras(spec: DeploymentSpec, main: ModelVersion) -> list[str]:
    return sorted({e for e in (EXTRAS.get(main.framework),) if e}
                  | ({"kafka"} if (spec.log_sink or "").startswith("kafka://") else set())
                  | {"redis"})


def requirements(spec: DeploymentSpec, main: ModelVersion, tureen: str | None = None) -> str:
    """requirements.txt: ``tureen`` is the line that installs it on the target (see
    ``bundle.tureen_requirement``); default: the running version from an index."""
    return (tureen or f"tureen[{','.join(extras(spec, main))}]=={_tureen_version()}") + "\n"


def image_lines(title: str, copies: Sequence[str], env: Sequence[str] = (),
                wheels: bool = False) -> list[str]:
    """The build every tureen image shares (deployments, pipeline components): dependencies
    from requirements.txt in a cached first stage, then the files, run as user 1000."""
    return [
        "# syntax=docker/dockerfile:1",
        f"# {title}",
        "# Stage 1 resolves dependencies from requirements.txt only, so this layer is cached",
        "# until the requirements change; the feature repo is copied in the final stage.",
        "FROM python:3.11-slim AS deps",
        "WORKDIR /build",
        "COPY requirements.txt .",
        *(["COPY wheels/ wheels/"] if wheels else []),
        "RUN --mount=type=cache,target=/root/.cache/pip \\",
        "    pip wheel --wheel-dir /wheels -r requirements.txt",
        "",
        "FROM python:3.11-slim",
        "ENV PYTHONUNBUFFERED=1",
        *env,
        "COPY --from=deps /wheels /wheels",
        "RUN pip install --no-cache-dir --no-index /wheels/* && rm -rf /wheels",
        "WORKDIR /app",
        *copies,
        "RUN useradd --uid 1000 --create-home tureen && chown -R tureen /app",
        "USER 1000",
    ]


def dockerfile(spec: DeploymentSpec, wheels: bool = False) -> str:
    copies = ["COPY repo/ /app/repo/"]
    if spec.transformer:
        copies.append("COPY transformer/ /app/transformer/")
    lines = image_lines(f"tureen deployment {spec.name}: generated by `tureen deploy export`.",
                        copies, wheels=wheels)
    lines += [
        "# tureen servers bind 127.0.0.1 unless told otherwise: the InferenceService args pass",
        "# --host 0.0.0.0 and either serving.auth (in repo/tureen.yaml) or --insecure with a",
        "# comment saying which mesh authenticates instead. Without either the server refuses",
        "# to start on 0.0.0.0.",
        "EXPOSE 8080 8081",
        'ENTRYPOINT ["tureen"]',
        'CMD ["serve-transformer", "--help"]',
        "",
    ]
    return "\n".join(lines)


def export_kserve(
    spec: DeploymentSpec,
    main: ModelVersion,
    canary: ModelVersion | None,
    out_dir: Path,
    *,
    repo_path: Path | None = None,
    image: str = "tureen:latest",
    storage_uri: str | None = None,
    namespace: str | None = None,
    auth: str = "mesh",
    bundle_online_store: bool = False,
    tureen_requirement: str | None = None,
) -> Exported:
    """Write the manifest, Dockerfile, requirements.txt and what the image carries (see
    ``tureen.deployments.bundle``) into ``out_dir``. ``tureen_requirement`` overrides how the
    image installs tureen."""
    from tureen.deployments import bundle

    notes: list[str] = []
    if repo_path is not None:  # refuse before writing anything
        from tureen.config import load_config

        config = load_config(repo_path)
        notes = bundle.copy_repo(repo_path, out_dir / "repo", config,
                                 reads_online=spec.feature_service is not None,
                                 bundle_online_store=bundle_online_store)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest, warnings = inference_service(spec, main, canary, image=image,
                                           storage_uri=storage_uri, namespace=namespace,
                                           auth=auth)
    m = out_dir / f"{spec.name}-inferenceservice.yaml"
    m.write_text(manifest_text(manifest))
    line = bundle.tureen_requirement(extras(spec, main), out_dir, tureen_requirement)
    d = out_dir / "Dockerfile"
    d.write_text(dockerfile(spec, wheels=line.startswith(f"./{bundle.WHEELS}/")))
    r = out_dir / "requirements.txt"
    r.write_text(requirements(spec, main, line))
    if spec.transformer:
        (out_dir / "transformer").mkdir(exist_ok=True)
        shutil.copy2(spec.transformer, out_dir / "transformer" / Path(spec.transformer).name)
    (out_dir / ".dockerignore").write_text("**/__pycache__\n**/*.pyc\n**/*.db-wal\n**/*.db-shm\n")
    return Exported(m, d, r, tuple(warnings + notes))
