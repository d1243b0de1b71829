"""``tureen console``: the web console alone, at ``/`` (``tureen serve`` mounts it at
``/console/`` next to the models it serves)."""

from __future__ import annotations

import asyncio
import ipaddress
import signal
from pathlib import Path

import click

from tureen.errors import InvalidRequestError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _serve(app: object, host: str, port: int) -> None:
    from tureen.serving.server import bind_socket
    from tureen.transports.http1 import HTTPServer

    server = HTTPServer(app, keep_alive_timeout=5.0)  # type: ignore[arg-type]
    sock = bind_socket(host, port, reuse_port=False)
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
    @click.option("--serving-host", help="Where `tureen serve` runs, for the endpoints and "
                  "curl lines pages show [serving.host or 127.0.0.1].")
    @click.option("--serving-http-port", type=int, help="[serving.http_port or 8080]")
    @click.option("--serving-grpc-port", type=int, help="[serving.grpc_port or 8081]")
    def console_cmd(repo: Path, host: str, port: int, insecure: bool, serving_host: str | None,
                    serving_http_port: int | None, serving_grpc_port: int | None) -> None:
        """Browse features, models, deployments, logs and pipeline runs in a browser."""
        from tureen.console import ConsoleApp, ConsoleServices, Endpoints
        from tureen.serving.server import _run

        if not is_loopback(host) and not insecure:
            raise InvalidRequestError(
                f"refusing to serve the console on {host}: it can change deployments and this "
                "server has no authentication; bind 127.0.0.1, or pass --insecure.")
        services = ConsoleServices(repo)
        cfg = services.features.config.serving
        services.endpoints = Endpoints(
            host=serving_host or cfg.host or "127.0.0.1",
            http_port=serving_http_port or cfg.http_port or 8080,
            grpc_port=serving_grpc_port or cfg.grpc_port or 8081)
        _run(_serve(ConsoleApp(services), host, port))
