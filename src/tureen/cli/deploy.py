"""``tureen deploy``: declare deployments, change the served version, export to KServe."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tureen.cli.output import console, err_console, json_option, print_json, repo_option, table
from tureen.errors import ConfigError, NotFoundError

if TYPE_CHECKING:
    from tureen.deployments import Deployments, DeploymentSpec


def _deployments(repo: str) -> Deployments:
    from tureen.deployments import Deployments

    return Deployments.for_repo(repo)


def _row(s: DeploymentSpec) -> list[Any]:
    canary = f"{s.canary.version} ({s.canary.percent:g}%)" if s.canary else ""
    return [s.name, s.state, f"{s.model}:{s.version}", canary, s.feature_service or "",
            s.logging.value, s.log_sink or ("parquet" if s.logging.value != "NONE" else ""),
            s.idle_unload_seconds or "", s.updated_at.strftime("%Y-%m-%d %H:%M:%S")]


_COLUMNS = ["name", "state", "model", "canary", "feature service", "logging", "sink",
            "idle unload s", "updated"]


def _show(spec: DeploymentSpec, as_json: bool, message: str) -> None:
    if as_json:
        print_json(spec.to_dict())
    else:
        console.print(message)


def _log_file(repo: str, name: str, component: str) -> Path:
    from tureen.deployments.status import log_path

    return log_path(Path(repo).resolve(), name, component)


def register(cli: click.Group) -> None:
    @cli.group()
    def deploy() -> None:
        """Deployments: a model version served with features, logging and canaries."""

    @deploy.command()
    @click.argument("name")
    @click.option("--model", "-m", "model_ref", required=True, help="MODEL[:VERSION].")
    @click.option("--feature-service", help="Fetch these online features for each request.")
    @click.option("--transformer", type=click.Path(exists=True, dir_okay=False),
                  help="Transformer config (.yaml) or pre/postprocess script (.py).")
    @click.option("--workers", default=1, show_default=True, type=int)
    @click.option("--logging", "logging_mode", default="NONE", show_default=True,
                  type=click.Choice(["ALL", "MODEL_INPUTS", "PREDICTIONS", "NONE"],
                                    case_sensitive=False))
    @click.option("--log-sink", help="Parquet path (default data/inference_log), "
                  "kafka://HOST:PORT or http(s)://... (CloudEvents).")
    @click.option("--batching", help="max_batch_size=N,max_latency_ms=MS")
    @click.option("--idle-unload", type=float, help="Unload the model after N idle seconds.")
    @repo_option
    @json_option
    def create(name: str, model_ref: str, feature_service: str | None, transformer: str | None,
               workers: int, logging_mode: str, log_sink: str | None, batching: str | None,
               idle_unload: float | None, repo: str, as_json: bool) -> None:
        """Declare deployment NAME (stopped until `deploy start`)."""
        from tureen.models.registry import parse_model_ref

        model, version = parse_model_ref(model_ref)
        deps = _deployments(repo)
        spec = deps.create(name, model, version, feature_service=feature_service,
                           transformer=transformer, workers=workers, logging=logging_mode,
                           log_sink=log_sink, batching=batching,
                           idle_unload_seconds=idle_unload)
        _show(spec, as_json, f"Created deployment [bold]{name}[/] serving {model}:"
              f"{spec.version} (stopped; `tureen deploy start {name}`)")

    @deploy.command("list")
    @repo_option
    @json_option
    def list_(repo: str, as_json: bool) -> None:
        """Every deployment of the repo."""
        specs = _deployments(repo).list()
        if as_json:
            print_json([s.to_dict() for s in specs])
            return
        table("deployments", _COLUMNS, [_row(s) for s in specs])

    @deploy.command()
    @click.argument("name")
    @click.option("--url", help="A running server (e.g. http://127.0.0.1:8080) to ask for "
                  "readiness.")
    @repo_option
    @json_option
    def status(name: str, url: str | None, repo: str, as_json: bool) -> None:
        """The spec of NAME and, with --url, whether a running server has it ready."""
        spec = _deployments(repo).get(name)
        live: dict[str, Any] | None = None
        if url:
            import httpx

            try:
                r = httpx.get(f"{url.rstrip('/')}/v2/models/{name}", timeout=5)
                ready = httpx.get(f"{url.rstrip('/')}/v2/models/{name}/ready", timeout=5)
                live = {"http_status": r.status_code, "ready": ready.status_code == 200,
                        "metadata": r.json() if r.status_code == 200 else r.text}
            except httpx.HTTPError as exc:
                live = {"error": str(exc)}
        from tureen.deployments.status import read_status

        workers = read_status(Path(repo).resolve(), name)
        if as_json:
            print_json({**spec.to_dict(), "server": live, "workers": workers})
            return
        for col, value in zip(_COLUMNS, _row(spec), strict=True):
            console.print(f"{col + ':':<17}{value}")
        if spec.batching:
            console.print(f"{'batching:':<17}max_batch_size={spec.batching.max_batch_size}, "
                          f"max_latency_ms={spec.batching.max_latency_ms:g}")
        if spec.transformer:
            console.print(f"{'transformer:':<17}{spec.transformer}")
        if spec.history:
            console.print(f"previous versions: {list(spec.history)}")
        for w in workers:
            if w.get("switch_error"):
                err_console.print(f"[red]worker {w['pid']} still serves version {w['version']}:"
                                  f"[/] {w['switch_error']}")
        if live is not None:
            console.print(f"server: {live}")
        rows = [[w["pid"], v, s["requests"], s["errors"], f"{s['p50_seconds'] * 1000:.2f}",
                 f"{s['p99_seconds'] * 1000:.2f}", w["loaded_versions"], w["cold_starts"]]
                for w in workers for v, s in w["versions"].items()]
        if rows:
            table("serving workers (per version)", ["pid", "version", "requests", "errors",
                  "p50 ms", "p99 ms", "loaded", "cold starts"], rows)

    for state, verb in (("started", "start"), ("stopped", "stop")):
        def make(state: str = state, verb: str = verb) -> None:
            @deploy.command(verb, help=f"Mark NAME {state} (`tureen serve` serves started ones).")
            @click.argument("name")
            @repo_option
            @json_option
            def cmd(name: str, repo: str, as_json: bool) -> None:
                spec = _deployments(repo).set_state(name, state)
                _show(spec, as_json, f"Deployment [bold]{name}[/] {state}.")
        make()

    @deploy.command()
    @click.argument("name")
    @click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
    @repo_option
    def delete(name: str, yes: bool, repo: str) -> None:
        """Delete deployment NAME (its logs and models stay)."""
        deps = _deployments(repo)
        deps.get(name)
        if not yes:
            click.confirm(f"Delete deployment {name}?", abort=True)
        deps.delete(name)
        console.print(f"Deleted deployment {name}.")

    @deploy.command()
    @click.argument("name")
    @click.option("--version", "version", help="Serve this model version (or 'latest').")
    @click.option("--rollback", is_flag=True, help="Go back to the previously served version.")
    @click.option("--canary-version", help="Send a share of the traffic to this version.")
    @click.option("--canary-percent", type=float, help="The canary's share (default 10).")
    @click.option("--promote", is_flag=True, help="Make the canary the main version.")
    @click.option("--clear-canary", is_flag=True, help="Send all traffic to the main version.")
    @repo_option
    @json_option
    def update(name: str, version: str | None, rollback: bool, canary_version: str | None,
               canary_percent: float | None, promote: bool, clear_canary: bool, repo: str,
               as_json: bool) -> None:
        """Change what NAME serves; a running `tureen serve` switches without failed requests."""
        spec = _deployments(repo).update(
            name, version, rollback=rollback, canary_version=canary_version,
            canary_percent=canary_percent, promote=promote, clear_canary=clear_canary)
        canary = (f", canary {spec.canary.version} at {spec.canary.percent:g}%"
                  if spec.canary else "")
        _show(spec, as_json, f"Deployment [bold]{name}[/] serves {spec.model}:{spec.version}"
              f"{canary}; running servers switch within a few seconds.")

    @deploy.command()
    @click.argument("name")
    @click.option("--target", type=click.Choice(["kserve"]), default="kserve",
                  show_default=True)
    @click.option("--out", "out_dir", default="deploy", show_default=True,
                  type=click.Path(file_okay=False), help="Output folder.")
    @click.option("--image", default="tureen:latest", show_default=True,
                  help="Image for the transformer (and custom predictors).")
    @click.option("--storage-uri", help="Bucket prefix the models are pushed to "
                  "(s3://bucket/models); default: the models store URL.")
    @click.option("--namespace", help="Kubernetes namespace.")
    @click.option("--auth", "auth", type=click.Choice(["server", "mesh"]),
                  help="Who authenticates requests: the tureen server (serving.auth of the "
                       "repo) or the mesh (the pod runs with --insecure). Default: server when "
                       "tureen.yaml sets serving.auth, else mesh.")
    @click.option("--bundle-online-store", is_flag=True,
                  help="Carry a snapshot of a local SQLite online store in the image (else a "
                  "deployment with features refuses to export with one).")
    @click.option("--tureen-requirement",
                  help="requirements.txt line installing tureen in the image (default: the "
                  "running release, or a wheel built from this checkout into wheels/).")
    @repo_option
    @json_option
    def export(name: str, target: str, out_dir: str, image: str, storage_uri: str | None,
               namespace: str | None, auth: str | None, bundle_online_store: bool,
               tureen_requirement: str | None, repo: str, as_json: bool) -> None:
        """Write a KServe InferenceService and a Dockerfile for NAME."""
        from tureen.deployments.export import export_kserve

        deps = _deployments(repo)
        has_auth = deps.features.config.serving.auth is not None
        if auth is None:
            auth = "server" if has_auth else "mesh"
        elif auth == "server" and not has_auth:
            raise ConfigError("--auth server needs serving.auth in tureen.yaml (the image "
                              "carries it); set it, or export with --auth mesh.")
        spec = deps.get(name)
        main = deps.models.get(spec.model, spec.version)
        canary = deps.models.get(spec.model, spec.canary.version) if spec.canary else None
        done = export_kserve(spec, main, canary, Path(out_dir), repo_path=Path(repo).resolve(),
                             image=image, storage_uri=storage_uri, namespace=namespace,
                             auth=auth, bundle_online_store=bundle_online_store,
                             tureen_requirement=tureen_requirement)
        if as_json:
            print_json({"manifest": str(done.manifest), "dockerfile": str(done.dockerfile),
                        "requirements": str(done.requirements),
                        "warnings": list(done.warnings)})
            return
        console.print(f"Wrote {done.manifest}, {done.dockerfile} and {done.requirements}")
        for w in done.warnings:
            err_console.print(f"[yellow]warning:[/] {w}")

    @deploy.command()
    @click.argument("name")
    @click.option("--component", type=click.Choice(["transformer", "predictor"]),
                  default="predictor", show_default=True)
    @click.option("--tail", "-n", type=int, default=50, show_default=True)
    @click.option("--follow", "-f", is_flag=True, help="Keep printing new lines.")
    @repo_option
    def logs(name: str, component: str, tail: int, follow: bool, repo: str) -> None:
        """Server log lines of NAME (written by `tureen serve` to .tureen/logs/)."""
        _deployments(repo).get(name)
        path = _log_file(repo, name, component)
        if not path.is_file():
            raise NotFoundError(
                f"no log file {path} yet: `tureen serve` writes it while the deployment serves."
            )
        lines = path.read_text(errors="replace").splitlines()[-tail:] if tail > 0 else []
        for line in lines:
            click.echo(line)
        if not follow:
            return
        with path.open(errors="replace") as f:
            f.seek(0, 2)
            try:
                while True:
                    line = f.readline()
                    if line:
                        click.echo(line.rstrip("\n"))
                    else:
                        time.sleep(0.25)
            except KeyboardInterrupt:
                return
