"""``tureen serve-features``, ``tureen serve`` and ``tureen serve-transformer``.

- ``serve-features``: the Feast-compatible feature server (default port 6566) plus every
  FeatureService as an OIP model (REST on the same port, gRPC on ``--grpc-port``).
- ``serve``: the repo server: feature routes, FeatureService models, configured feature
  transformers, the repo's registered models and any model providers (deployments).
- ``serve-transformer``: a feature transformer alone, with the KServe container contract
  (``--model_name``, ``--predictor_host``, ``--predictor_protocol``, ``--http_port``,
  ``--grpc_port``), so it replaces a custom KServe transformer image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tureen.cli.security import apply_security, security_options
from tureen.cli.serving import given
from tureen.errors import InvalidRequestError

_REPO = click.option("--repo", "-r", "repo", default=".", show_default=True,
                     type=click.Path(path_type=Path), help="Feature repo folder.")


def _server(settings: Any, routes: list[Any], **options: Any) -> Any:
    """A ModelServer from ``settings`` (tureen.yaml / TUREEN_SERVING__*) and the options
    given on the command line."""
    from tureen.serving.server import ModelServer

    return ModelServer(settings=settings, extra_routes=routes, **options)


def _registered_models(root: Path, taken: set[str]) -> tuple[Path | None, dict[str, Path]]:
    """The repo's registered models, without the names deployments and transformers serve
    (a Hopsworks-style deployment named after its model keeps the name): the whole model
    store as the repository when no name is taken, else each other model by name."""
    from tureen.serving.repository import MODEL_NAME

    if not root.is_dir():
        return None, {}
    names = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if not any(p.name in taken for p in names):
        return root, {}
    return None, {p.name: p.resolve() for p in names
                  if p.name not in taken and MODEL_NAME.fullmatch(p.name)}


def _store(repo: Path) -> Any:
    from tureen.store import FeatureStore

    return FeatureStore(repo)


def register(cli: click.Group) -> None:
    @cli.command("serve-features")
    @_REPO
    @click.option("--host", default=None, help="Bind address [serving.host or 127.0.0.1].")
    @click.option("--port", "--http-port", "-p", "port", default=6566, show_default=True,
                  type=int, help="HTTP port (Feast routes and OIP REST).")
    @click.option("--grpc-port", default=6567, show_default=True, type=int,
                  help="OIP gRPC port for the FeatureService models (0: any free port).")
    @click.option("--no-grpc", is_flag=True, help="Do not start the gRPC server.")
    @click.option("--workers", "-w", default=1, show_default=True, type=int)
    @click.option("--feast-compat/--exact", "feast_compat", default=None,
                  help="Feast routes answer with Feast's statuses and values (a stored null "
                  "and a value past its TTL are PRESENT) [serving.feast_compat or exact].")
    @click.option("--log-level", default="warning", show_default=True)
    @security_options
    def serve_features(repo: Path, host: str | None, port: int, grpc_port: int, no_grpc: bool,
                       workers: int, feast_compat: bool | None, log_level: str,
                       **security: Any) -> None:
        """Serve online features with Feast's HTTP API (and each FeatureService over OIP)."""
        from tureen.feature_server import feature_service_models
        from tureen.transports.rest.feast import feature_routes

        store = _store(repo)
        options = given(workers=workers, log_level=log_level)
        options.update(http_port=port, grpc_port=grpc_port)  # this command's own defaults
        if no_grpc:
            options["enable_grpc"] = False
        cfg, sec = apply_security(store.config.serving, store=store, host=host, **security)
        scheme = "https" if cfg.tls else "http"
        click.echo(f"tureen feature server for {store.project} on {scheme}://{cfg.bind_host}:"
                   f"{port} (Feast-compatible; OIP gRPC :{'-' if no_grpc else grpc_port}"
                   f"{'; auth ' + '+'.join(cfg.auth.type) if cfg.auth else ''})", err=True)
        server = _server(cfg, feature_routes(store, feast_compat), security=sec, **options)
        server.start(feature_service_models(store))

    @cli.command("serve")
    @_REPO
    @click.option("--host", default=None, help="Bind address [serving.host or 127.0.0.1].")
    @click.option("--http-port", "--http_port", type=int, default=None,
                  help="HTTP port [serving.http_port or 8080].")
    @click.option("--grpc-port", "--grpc_port", type=int, default=None,
                  help="gRPC port [serving.grpc_port or 8081].")
    @click.option("--workers", "-w", type=int, default=None,
                  help="Worker processes [serving.workers or 1].")
    @click.option("--transformer", "-t", "transformers", multiple=True,
                  type=click.Path(path_type=Path, exists=True),
                  help="Transformer config file (YAML); repeatable. Adds to "
                       "serving.transformers in tureen.yaml.")
    @click.option("--models/--no-models", "serve_registered", default=False, show_default=True,
                  help="Also serve every registered model of the repo's model store under its "
                  "own name (names a deployment or transformer uses stay theirs). Off by default: "
                  "a registered model is served when a deployment or transformer asks for it.")
    @click.option("--no-console", is_flag=True, help="Do not mount the web console at /console/.")
    @click.option("--ingest/--no-ingest", "ingest", default=None,
                  help="Also run `tureen ingest` for the repo's Kafka stream views "
                       "[streaming.ingest_in_serve or off].")
    @click.option("--feast-compat/--exact", "feast_compat", default=None,
                  help="Feast routes answer with Feast's statuses and values (a stored null "
                  "and a value past its TTL are PRESENT) [serving.feast_compat or exact].")
    @click.option("--log-level", default="warning", show_default=True)
    @click.option("--enable-model-control", "--enable_model_control", is_flag=True,
                  help="Allow loading and unloading repository models over the network.")
    @security_options
    def serve(repo: Path, host: str | None, http_port: int | None, grpc_port: int | None,
              workers: int | None, transformers: tuple[Path, ...], serve_registered: bool,
              no_console: bool, ingest: bool | None, feast_compat: bool | None,
              log_level: str, enable_model_control: bool, **security: Any) -> None:
        """Serve the repo: feature routes, feature services, transformers and models."""
        from tureen.feature_server.repo_server import repo_models, transformer_configs
        from tureen.transports.rest.feast import feature_routes

        store = _store(repo)
        options = {k: v for k, v in (("http_port", http_port),
                                     ("grpc_port", grpc_port), ("workers", workers))
                   if v is not None}
        options.update(given(log_level=log_level, enable_model_control=enable_model_control))
        cfg, sec = apply_security(store.config.serving.updated(**options), store=store,
                                  host=host, **security,
                                  self_authenticating=() if no_console else ("/console/",))
        models = repo_models(store, transformer_configs(store, transformers))
        model_root: Path | None = None
        model_dirs: dict[str, Path] = {}
        if serve_registered:
            path = Path(str(store.config.models.options.get("path", "models")))
            model_root = path if path.is_absolute() else store.repo_path / path
            model_root, model_dirs = _registered_models(model_root, {m.name for m in models})
        click.echo(f"tureen serving {store.project}: {', '.join(m.name for m in models)}"
                   f"{' + models in ' + str(model_root) if model_root else ''}"
                   f"{' + ' + ', '.join(model_dirs) if model_dirs else ''} on "
                   f"{'https' if cfg.tls else 'http'}://{cfg.bind_host}:{cfg.http_port} grpc "
                   f":{cfg.grpc_port}{'; auth ' + '+'.join(cfg.auth.type) if cfg.auth else ''}",
                   err=True)
        routes: list[Any] = [*feature_routes(store, feast_compat)]
        if not no_console:
            from starlette.routing import Mount

            from tureen.console import ConsoleApp, ConsoleServices, Endpoints

            services = ConsoleServices(
                repo, Endpoints(cfg.bind_host, cfg.http_port, cfg.grpc_port), store=store)
            if sec.authenticator is not None:  # the console signs browsers in itself
                from tureen.auth.guard import AuthGuard

                services.guard = AuthGuard(sec.authenticator, project=store.project,
                                           audit=sec.audit,
                                           open_health=cfg.auth.open_health)
            console = ConsoleApp(services)
            routes = [*routes, Mount("/console", app=console)]
        from tureen.deployments.watcher import KIND, watch_repo
        from tureen.streaming.hosting import hosted_ingest

        watch_repo(store)  # deployments started while serving are served at once
        surfaces = ["http", "grpc"] if cfg.enable_grpc else ["http"]
        server = _server(cfg, routes, model_repository=model_root, model_dirs=model_dirs,
                         transports=[*surfaces, KIND], security=sec)
        run_ingest = ingest if ingest is not None else store.config.streaming.ingest_in_serve
        with hosted_ingest(store, run_ingest):
            server.start(models)

    @cli.command("serve-transformer")
    @click.option("--model_name", "--model-name", required=True,
                  help="Name the transformer is served under (the InferenceService name).")
    @click.option("--predictor_host", "--predictor-host",
                  help="Predictor host:port (KServe sets this for a transformer).")
    @click.option("--predictor_protocol", "--predictor-protocol", default="v1",
                  show_default=True, type=click.Choice(["v1", "v2", "grpc-v2"]))
    @click.option("--http_port", "--http-port", default=8080, show_default=True, type=int)
    @click.option("--grpc_port", "--grpc-port", default=8081, show_default=True, type=int)
    @click.option("--workers", default=1, show_default=True, type=int)
    @click.option("--host", default=None,
                  help="Bind address [serving.host or 127.0.0.1; in a pod: 0.0.0.0].")
    @click.option("--config", "config_file", type=click.Path(path_type=Path, exists=True),
                  help="Transformer config (YAML); the flags below override it.")
    @click.option("--feature_service", "--feature-service", help="FeatureService to read.")
    @click.option("--repo", type=click.Path(path_type=Path),
                  help="Feature repo (registry for datatypes; online store when in process).")
    @click.option("--feature_server", "--feature-server",
                  help="URL of a Feast-compatible feature server to read features from.")
    @click.option("--entity_key", "--entity-key", multiple=True,
                  help="JOIN_KEY=FIELD: where a join key is in the request; repeatable.")
    @click.option("--predictor_model", "--predictor-model",
                  help="Model name on the predictor [the --model_name].")
    @click.option("--missing", type=click.Choice(["reject", "default", "null"]),
                  help="Missing entity / null feature policy.")
    @click.option("--timeout", type=float, help="Per-attempt timeout (seconds).")
    @click.option("--retries", type=int, help="Retries with exponential backoff.")
    @click.option("--log_level", "--log-level", default="warning", show_default=True)
    @security_options
    def serve_transformer(
        model_name: str, predictor_host: str | None, predictor_protocol: str, http_port: int,
        grpc_port: int, workers: int, host: str | None, config_file: Path | None,
        feature_service: str | None, repo: Path | None, feature_server: str | None,
        entity_key: tuple[str, ...], predictor_model: str | None, missing: str | None,
        timeout: float | None, retries: int | None, log_level: str, **security: Any,
    ) -> None:
        """Serve a feature transformer in front of a predictor (KServe container contract)."""
        import yaml

        from tureen.transformer import build_transformer, load_transformer_config

        data: dict[str, Any] = {}
        if config_file is not None:
            loaded = yaml.safe_load(config_file.read_text())
            data = dict(loaded) if isinstance(loaded, dict) else {}
        data["name"] = model_name
        if feature_service:
            data["feature_service"] = feature_service
        pred = dict(data.get("predictor") or {})
        if predictor_host:
            pred.update(host=predictor_host, protocol=predictor_protocol)
        if predictor_model:
            pred["model"] = predictor_model
        data["predictor"] = pred
        feats = dict(data.get("features") or {})
        if feature_server:
            feats.update(source="remote", url=feature_server)
        if repo is not None:
            feats["repo"] = str(repo)
        data["features"] = feats
        keys = dict(data.get("entity_keys") or {})
        for item in entity_key:
            k, eq, v = item.partition("=")
            if not eq:
                raise InvalidRequestError(f"--entity_key {item!r}: write JOIN_KEY=FIELD.")
            keys[k] = v
        data["entity_keys"] = keys
        if missing:
            data["missing"] = {**dict(data.get("missing") or {}), "policy": missing}
        if timeout is not None:
            data["timeout_seconds"] = timeout
        if retries is not None:
            data["retries"] = retries
        config = load_transformer_config(data)
        store = None
        if config.features.source == "local" or config.features.repo is None:
            store_repo = repo or (Path(config.features.repo) if config.features.repo else None)
            if store_repo is not None:
                store = _store(store_repo)
        model = build_transformer(config, store=store)
        from tureen.config import serving_settings

        options = given(http_port=http_port, grpc_port=grpc_port, workers=workers,
                        log_level=log_level)
        auth_store = store if store is not None else (_store(repo) if repo is not None else None)
        cfg, sec = apply_security(
            auth_store.config.serving if auth_store is not None else serving_settings(),
            store=auth_store, host=host, **security)
        server = _server(cfg, [], security=sec, **options)
        server.start([model])
