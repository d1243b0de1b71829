"""``tureen serve-model``: the KServe container contract (same flags, same ports)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from tureen.cli.security import apply_security, security_options
from tureen.errors import InvalidRequestError
from tureen.scratch import owned_folder


def given(**values: Any) -> dict[str, Any]:
    """The options among ``values`` set on the command line or by their envvar: they
    override ``serving:`` in tureen.yaml and ``TUREEN_SERVING__*``, click defaults do not."""
    ctx = click.get_current_context()
    return {k: v for k, v in values.items()
            if ctx.get_parameter_source(k) not in (None, ParameterSource.DEFAULT,
                                                   ParameterSource.DEFAULT_MAP)}


def _model_dirs(model_dir: Path, name: str, temp: Callable[[], Path]) -> dict[str, Path]:
    """``name`` → a directory of version subdirectories: ``model_dir`` itself when it holds
    ``1/``, ``2/``, ..., else one whose ``1`` links to ``model_dir``, in a folder from
    ``temp()`` (called only then)."""
    if not model_dir.is_dir():
        raise InvalidRequestError(f"--model_dir {model_dir} is not a directory.")
    subdirs = [p for p in model_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if subdirs and all(p.name.isdigit() for p in subdirs):
        return {name: model_dir.resolve()}
    versions = temp() / "versions"
    versions.mkdir()
    (versions / "1").symlink_to(model_dir.resolve(), target_is_directory=True)
    return {name: versions}


def register(cli: click.Group) -> None:
    @cli.command("serve-model")
    @click.option("--model_name", "--model-name", default="model", show_default=True,
                  help="Name the model is served under (/v1/models/<name>).")
    @click.option("--model_dir", "--model-dir", type=click.Path(path_type=Path),
                  help="Directory with the model files, or with version subdirectories 1/, 2/ …")
    @click.option("--model_repository", "--model-repository", type=click.Path(path_type=Path),
                  help="Serve every model of a repository laid out as DIR/<name>/<version>/.")
    @click.option("--version_policy", "--version-policy", default="latest", show_default=True,
                  help="Which versions to serve: latest, latest:N, all, specific:1,3.")
    @click.option("--http_port", "--http-port", default=8080, show_default=True, type=int)
    @click.option("--grpc_port", "--grpc-port", default=8081, show_default=True, type=int)
    @click.option("--enable_grpc/--disable_grpc", default=True, show_default=True)
    @click.option("--host", default=None,
                  help="Bind address [serving.host or 127.0.0.1; in a pod: 0.0.0.0].")
    @click.option("--workers", default=1, show_default=True, type=int,
                  help="Worker processes sharing the ports.")
    @click.option("--repo", "repo_dir", type=click.Path(path_type=Path, file_okay=False),
                  help="Feature repo whose tureen.yaml (serving:) and registry (API tokens) "
                       "this server uses.")
    @click.option("--enable_model_control", "--enable-model-control", is_flag=True,
                  help="Allow loading and unloading repository models over the network "
                       "(/v2/repository/..., gRPC RepositoryModelLoad/Unload).")
    @click.option("--predictor_host", "--predictor-host",
                  help="Forward predict to this predictor (host:port) instead of a local model.")
    @click.option("--predictor_protocol", "--predictor-protocol", default="v1",
                  show_default=True, type=click.Choice(["v1", "v2", "grpc-v2"]))
    @click.option("--max_batch_size", "--max-batch-size", default=None, type=int,
                  help="Adaptive batching: most rows per predict call; 0 turns it off. "
                       "Default: 64 for scikit-learn/XGBoost/LightGBM, off otherwise.")
    @click.option("--max_latency_ms", "--max-latency-ms", default=None, type=float,
                  help="Adaptive batching: longest a request waits for a running batch "
                       "(default 5).")
    @click.option("--max_request_mb", "--max-request-mb", default=64.0, show_default=True,
                  type=float, help="Largest request body accepted (bigger gets HTTP 413).")
    @click.option("--grace_seconds", default=30.0, show_default=True, type=float,
                  help="On SIGTERM, how long in-flight requests may take to finish.")
    @click.option("--allow_shared_memory", "--allow-shared-memory", is_flag=True,
                  default=False,
                  help="Serve the system shared memory extension (same-host clients).")
    @click.option("--model_load_timeout", "--model-load-timeout", default=600.0,
                  show_default=True, type=float,
                  help="Seconds one model may take to load before it is reported failed.")
    @click.option("--log_level", "--log-level", default="warning", show_default=True)
    @click.option("--http_server", "--http-server", default="tureen", show_default=True,
                  type=click.Choice(["tureen", "uvicorn"]),
                  help="HTTP/1.1 implementation: tureen's own, or uvicorn (ASGI).")
    @click.option("--grpc_server", "--grpc-server", default="tureen", show_default=True,
                  type=click.Choice(["tureen", "grpcio"]),
                  help="gRPC implementation: tureen's own HTTP/2, or grpcio's grpc.aio.")
    @security_options
    def serve_model(
        model_name: str, model_dir: Path | None, model_repository: Path | None,
        version_policy: str, http_port: int, grpc_port: int, enable_grpc: bool,
        host: str | None, workers: int, repo_dir: Path | None, predictor_host: str | None,
        predictor_protocol: str, max_batch_size: int | None, max_latency_ms: float | None,
        max_request_mb: float, grace_seconds: float, model_load_timeout: float, log_level: str,
        http_server: str, grpc_server: str, enable_model_control: bool,
        allow_shared_memory: bool, auth_types: tuple[str, ...], tls_cert: str | None,
        tls_key: str | None, tls_client_ca: str | None, insecure: bool,
    ) -> None:
        """Serve a model over KServe v1, Open Inference Protocol REST and gRPC."""
        from tureen.config import serving_settings
        from tureen.serving.model import Model
        from tureen.serving.server import ModelServer

        if not (model_dir or model_repository or predictor_host):
            raise InvalidRequestError(
                "nothing to serve: pass --model_dir, --model_repository or --predictor_host."
            )
        with contextlib.ExitStack() as stack:
            temps: list[Path] = []  # removed on the way out (by the last worker if killed)

            def temp() -> Path:
                temps.append(stack.enter_context(owned_folder("tureen-serve-")))
                return temps[-1]

            repo = model_repository
            dirs: dict[str, Path] = {}
            if model_dir is not None:
                if repo is not None:
                    raise InvalidRequestError("pass --model_dir or --model_repository, not both.")
                dirs = _model_dirs(model_dir, model_name, temp)
            models: list[Model] = []
            if predictor_host:
                from tureen.serving.clients import predictor_client
                from tureen.serving.remote import RemoteModel

                models.append(RemoteModel(model_name,
                                          predictor_client(predictor_host, predictor_protocol)))
            defaults: dict[str, float] = {}
            if max_batch_size is not None:
                defaults["max_batch_size"] = max_batch_size
            if max_latency_ms is not None:
                defaults["max_latency_ms"] = max_latency_ms
            for m in models:
                m.max_batch_size = int(defaults.get("max_batch_size", m.max_batch_size))
                m.max_latency_ms = defaults.get("max_latency_ms", m.max_latency_ms)
            options = given(
                http_port=http_port, grpc_port=grpc_port, workers=workers,
                version_policy=version_policy, enable_grpc=enable_grpc,
                grace_seconds=grace_seconds, log_level=log_level, http_server=http_server,
                grpc_server=grpc_server, enable_model_control=enable_model_control,
                model_load_timeout=model_load_timeout, allow_shared_memory=allow_shared_memory,
            )
            if given(max_request_mb=max_request_mb):
                options["max_request_bytes"] = int(max_request_mb * 1024 * 1024)
            store = None
            if repo_dir is not None:
                from tureen.store import FeatureStore

                store = FeatureStore(repo_dir)
            base, security = apply_security(
                store.config.serving if store is not None else serving_settings(),
                auth_types=auth_types, tls_cert=tls_cert, tls_key=tls_key,
                tls_client_ca=tls_client_ca, insecure=insecure, store=store, host=host)
            server = ModelServer(settings=base, model_repository=repo, model_dirs=dirs,
                                 security=security, temp_dirs=temps,
                                 model_defaults={**base.model_defaults, **defaults}, **options)
            server.start(models)
