"""``ModelServer``: the composition root for serving.

In each worker process it builds one ``DataPlane``, the REST app (KServe v1 + OIP) on tureen's
HTTP/1.1 server (``http_server="tureen"``, native handlers; ``"uvicorn"`` runs the same app
over ASGI) and the OIP gRPC service on tureen's own HTTP/2 (``grpc_server="tureen"``;
``"grpcio"`` runs it on ``grpc.aio``), all on one event loop. ``workers > 1``
forks that many processes sharing the ports through ``SO_REUSEPORT``; their metrics are
summed on scrape. SIGTERM/SIGINT stop accepting, drain requests in flight (up to
``grace_seconds``) and exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import uvicorn
from starlette.routing import BaseRoute

from tureen.serving.context import RequestIdFilter
from tureen.serving.dataplane import DataPlane
from tureen.serving.metrics import Metrics
from tureen.serving.model import Model
from tureen.serving.repository import ModelRepository, load_model
from tureen.serving.versions import VersionPolicy

log = logging.getLogger(__name__)

MAX_GRPC_MESSAGE = 256 * 1024 * 1024
HTTP_SERVERS = ("tureen", "uvicorn")
GRPC_SERVERS = ("tureen", "grpcio")
KEEP_ALIVE_SECONDS = 5.0


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: ModelServer owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def bind_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class ModelServer:
    def __init__(
        self,
        http_port: int = 8080,
        grpc_port: int = 8081,
        workers: int = 1,
        *,
        host: str = "0.0.0.0",
        model_repository: str | Path | None = None,
        version_policy: str = "latest",
        enable_grpc: bool = True,
        max_request_bytes: int = 64 * 1024 * 1024,
        grace_seconds: float = 30.0,
        threads: int = 8,
        extra_routes: Sequence[BaseRoute] = (),
        log_level: str = "warning",
        model_defaults: dict[str, Any] | None = None,
        gil_switch_ms: float | None = None,
        http_server: str = "tureen",
        grpc_server: str = "tureen",
    ) -> None:
        """``model_defaults``: model-settings.json defaults for repository models (e.g.
        ``{"max_batch_size": 0}`` turns adaptive batching off for every built-in runtime).
        ``gil_switch_ms``: set the interpreter's thread switch interval (Python's default is
        5 ms; a smaller one hands finished predict threads back to the loop sooner, at the
        cost of more switching — no gain was measurable on the 2-core bench machine).
        ``http_server``: ``"tureen"`` (native fast path) or ``"uvicorn"`` (the ASGI app on
        uvicorn). ``grpc_server``: ``"tureen"`` (tureen's own HTTP/2, see
        ``transports.grpc.h2server``) or ``"grpcio"`` (``grpc.aio``)."""
        if http_server not in HTTP_SERVERS:
            raise ValueError(f"http_server {http_server!r} is unknown; use one of "
                             f"{', '.join(HTTP_SERVERS)}.")
        if grpc_server not in GRPC_SERVERS:
            raise ValueError(f"grpc_server {grpc_server!r} is unknown; use one of "
                             f"{', '.join(GRPC_SERVERS)}.")
        self.http_server = http_server
        self.grpc_server = grpc_server
        self.http_port = http_port
        self.grpc_port = grpc_port
        self.workers = max(1, workers)
        self.host = host
        self.model_repository = Path(model_repository) if model_repository else None
        self.version_policy = VersionPolicy.parse(version_policy)
        self.enable_grpc = enable_grpc
        self.max_request_bytes = max_request_bytes
        self.grace_seconds = grace_seconds
        self.threads = threads
        self.extra_routes = list(extra_routes)
        self.log_level = log_level
        self.model_defaults = dict(model_defaults or {})
        self.gil_switch_ms = gil_switch_ms
        self.dataplane: DataPlane | None = None
        #: True when model loading failed; ``start`` then exits with status 1
        self.failed = False
        self._stop: asyncio.Event | None = None
        self._metrics_dir: str | None = None

    # entry points

    def start(self, models: Sequence[Model] = ()) -> None:
        """Serve ``models`` (and the model repository) until SIGTERM/SIGINT. Blocks."""
        _configure_logging(self.log_level)
        if self.workers == 1:
            _run(self.serve(models))
            if self.failed:
                sys.exit(1)
            return
        with tempfile.TemporaryDirectory(prefix="tureen-metrics-") as mdir:
            self._metrics_dir = mdir
            ctx = multiprocessing.get_context("fork")
            procs = [ctx.Process(target=self._worker, args=(list(models),), daemon=False)
                     for _ in range(self.workers)]
            for p in procs:
                p.start()

            def forward(sig: int, _frame: Any) -> None:
                for p in procs:
                    if p.pid is not None and p.is_alive():
                        os.kill(p.pid, sig)

            signal.signal(signal.SIGTERM, forward)
            signal.signal(signal.SIGINT, forward)
            for p in procs:
                p.join()
            if any(p.exitcode for p in procs):
                sys.exit(1)

    def _worker(self, models: list[Model]) -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        _run(self.serve(models))
        if self.failed:
            sys.exit(1)

    def stop(self) -> None:
        """Ask a running ``serve`` to drain and return (thread-safe via the loop)."""
        if self._stop is not None:
            self._stop.set()

    async def serve(
        self, models: Sequence[Model] = (), install_signal_handlers: bool = True
    ) -> None:
        """Serve in the current event loop until ``stop()`` or a signal."""
        loop = asyncio.get_running_loop()
        if self.gil_switch_ms is not None:
            sys.setswitchinterval(self.gil_switch_ms / 1000.0)
        self._stop = asyncio.Event()
        metrics = Metrics(self._metrics_dir)
        repo = ModelRepository(self.model_repository, self.version_policy,
                               defaults=self.model_defaults)
        dp = self.dataplane = DataPlane(repo, metrics, threads=self.threads)
        for m in models:  # served at once; not ready (503) until loaded below
            dp.register(m)
        repo.announce()

        from tureen.transports.rest import build_app

        app = build_app(dp, self.extra_routes, max_request_bytes=self.max_request_bytes)
        sock = bind_socket(self.host, self.http_port, reuse_port=True)
        self.http_port = sock.getsockname()[1]
        web_task: asyncio.Task[Any] | None = None
        if self.http_server == "uvicorn":
            web = _Uvicorn(uvicorn.Config(
                app, http="httptools", loop="none", lifespan="on", access_log=False,
                log_level=self.log_level, timeout_graceful_shutdown=int(self.grace_seconds),
                log_config=None, timeout_keep_alive=int(KEEP_ALIVE_SECONDS),
            ))
        else:
            from tureen.transports.http1 import HTTPServer

            native = HTTPServer(
                app, max_body_bytes=self.max_request_bytes,
                keep_alive_timeout=KEEP_ALIVE_SECONDS,
                body_limit_advice="send smaller batches or raise --max_request_mb",
            )
            await native.start(sock)
        grpc_server = None
        if self.enable_grpc:
            grpc_server = await self._start_grpc(dp)
        if install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._stop.set)
        writer = loop.create_task(_write_metrics(metrics)) if self._metrics_dir else None
        if self.http_server == "uvicorn":
            web_task = loop.create_task(web.serve(sockets=[sock]))
        stop_task = loop.create_task(self._stop.wait())
        loader = loop.create_task(self._load(dp, repo, models))
        log.warning("listening on http :%s (%s) grpc :%s (pid %s); loading models",
                    self.http_port, self.http_server, self.grpc_port if grpc_server else "-",
                    os.getpid())
        await asyncio.wait({stop_task} if web_task is None else {web_task, stop_task},
                           return_when=asyncio.FIRST_COMPLETED)
        loader.cancel()
        drains: list[asyncio.Future[Any]] = []
        if web_task is not None:
            web.should_exit = True
            drains.append(web_task)
        else:
            drains.append(loop.create_task(native.shutdown(self.grace_seconds)))
        if grpc_server is not None:
            drains.append(loop.create_task(grpc_server.stop(self.grace_seconds)))
        await asyncio.gather(*drains, return_exceptions=True)
        stop_task.cancel()
        if writer is not None:
            writer.cancel()
        metrics.remove_snapshot()
        dp.close()
        sock.close()

    async def _load(self, dp: DataPlane, repo: ModelRepository, models: Sequence[Model]) -> None:
        """Load everything while already answering health checks; any failure stops the
        server with a non-zero exit (as KServe does), after saying what failed."""
        try:
            for m in models:
                if not m.ready:
                    await load_model(m, dp.run_blocking)
                    dp.register(m)  # rebuild its pipeline: load may set batching
            await repo.load_all()
        except Exception as exc:
            log.error("loading models failed, stopping: %s", exc)
            self.failed = True
            self.stop()
            return
        log.warning("ready: serving %s", dp.list_models())

    async def _start_grpc(self, dp: DataPlane) -> Any:
        if self.grpc_server == "tureen":
            from tureen.transports.grpc.h2server import start_h2_server

            h2 = await start_h2_server(dp, self.host, self.grpc_port,
                                       max_message_bytes=MAX_GRPC_MESSAGE)
            self.grpc_port = h2.port
            return h2
        import grpc

        from tureen.transports.grpc import add_inference_service

        server = grpc.aio.server(options=[
            ("grpc.so_reuseport", 1),
            ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE),
            ("grpc.max_send_message_length", MAX_GRPC_MESSAGE),
        ])
        add_inference_service(server, dp)
        port = server.add_insecure_port(f"{self.host}:{self.grpc_port}")
        if port == 0:
            raise OSError(f"cannot bind the gRPC port {self.host}:{self.grpc_port}; pick a free "
                          "one with --grpc_port.")
        self.grpc_port = port
        await server.start()
        return server


async def _write_metrics(metrics: Metrics) -> None:
    while True:
        metrics.write_snapshot()
        await asyncio.sleep(1.0)


def _run(coro: Any) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        asyncio.run(coro)
        return
    uvloop.run(coro)


LOG_FORMAT = ("%(asctime)s %(levelname)s %(process)d %(name)s [%(request_id)s %(model)s]: "
              "%(message)s")


def _configure_logging(level: str) -> None:
    """Every serving log line names its request id and model:version."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    root.setLevel(level.upper())
    for h in root.handlers:
        h.setFormatter(logging.Formatter(LOG_FORMAT))
        if not any(isinstance(f, RequestIdFilter) for f in h.filters):
            h.addFilter(RequestIdFilter())
