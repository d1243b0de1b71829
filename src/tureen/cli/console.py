"""``tureen console``: the web console alone, at ``/`` (``tureen serve`` mounts it at
``/console/`` next to the models it serves)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import click


async def _serve(app: object, host: str, port: int) -> None:
    from tureen.serving.transport import bind_listener
    from tureen.transports.http1 import HTTPServer

    server = HTTPServer(app, keep_alive_timeout=5.0)  # type: ignore[arg-type]
    sock = bind_listener(host, port, "console", "--port")
    await server.start(sock)
    click.echo(f"tureen console on http://{host}:{server.port}/", err=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.shutdown(grace=2.0)
    sock.close()


def register(cli: click.Group) -> None:
    @cli.command("console")
    @click.option("--repo", "-r", default=".", show_default=True, envvar="TUREEN_REPO",
                  type=click.Path(path_type=Path, file_okay=False), help="Feature repo folder.")
    @click.option("--host", default="127.0.0.1", show_default=True,
                  help="Bind address (loopback unless --insecure).")
    @click.option("--port", "-p", default=8888, show_default=True, type=int)
    @click.option("--insecure", is_flag=True,
                  help="Allow a non-loopback address without authentication.")
    @click.option("--auth", "auth_types", multiple=True,
                  type=click.Choice(["token", "oidc", "mtls"]),
                  help="Authenticate every request [serving.auth in tureen.yaml].")
    @click.option("--serving-host", help="Where `tureen serve` runs, for the endpoints and "
                  "curl lines pages show [serving.host or 127.0.0.1].")
    @click.option("--serving-http-port", type=int, help="[serving.http_port or 8080]")
    @click.option("--serving-grpc-port", type=int, help="[serving.grpc_port or 8081]")
    def console_cmd(repo: Path, host: str, port: int, insecure: bool,
                    auth_types: tuple[str, ...], serving_host: str | None,
                    serving_http_port: int | None, serving_grpc_port: int | None) -> None:
        """Browse features, models, deployments, logs and pipeline runs in a browser."""
        from tureen.auth.authn import Authenticator
        from tureen.auth.bind import check_bind
        from tureen.auth.guard import AuthGuard
        from tureen.auth.settings import AuthSettings
        from tureen.console import ConsoleApp, ConsoleServices, Endpoints
        from tureen.serving.server import _run

        services = ConsoleServices(repo)
        settings = services.features.config.serving.auth
        if auth_types:
            settings = AuthSettings.model_validate(
                {**(settings.model_dump() if settings else {}), "type": list(auth_types)})
        warning = check_bind(host, auth=settings is not None, tls=False, insecure=insecure)
        if warning:
            click.echo(f"warning: {warning}", err=True)
        if settings is not None:
            services.guard = AuthGuard(Authenticator(settings, services.features.registry),
                                       project=services.project,
                                       open_health=settings.open_health)
        cfg = services.features.config.serving
        services.endpoints = Endpoints(
            host=serving_host or cfg.host or "127.0.0.1",
            http_port=serving_http_port or cfg.http_port or 8080,
            grpc_port=serving_grpc_port or cfg.grpc_port or 8081)
        _run(_serve(ConsoleApp(services), host, port))
