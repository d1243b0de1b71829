"""``ModelServer``: the composition root for serving.

It is built from ``ServingConfig`` (``tureen.serving.settings``). ``start`` binds the
listening sockets once, then serves in this process or forks ``workers`` processes that
share them. Each serving process builds one ``DataPlane`` and one ``GuardChain`` and starts
its transports (``tureen.serving.transport``: REST on ``http_port``, OIP gRPC on
``grpc_port``) on one event loop; metrics of all workers are summed on scrape.
SIGTERM/SIGINT stop accepting, drain requests in flight (up to ``grace_seconds``) and exit.
A worker does the same when its supervisor dies, even by SIGKILL: it watches the read end of
the supervisor's lifeline pipe (``tureen.lifeline``: EOF means the supervisor process is gone),
and the last worker out removes the folder the workers shared and the ``temp_dirs`` the caller
made for the server (which the supervisor can no longer remove).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import resource
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from ssl import SSLContext
from typing import TYPE_CHECKING, Any

from tureen import lifeline
from tureen.errors import ConfigError
from tureen.serving.context import Authorizer, RequestIdFilter
from tureen.serving.dataplane import DataPlane
from tureen.serving.guard import Guard, GuardChain, InflightLimit
from tureen.serving.metrics import Metrics
from tureen.serving.model import Model
from tureen.serving.repository import ModelRepository, load_model
from tureen.serving.settings import ServingConfig
from tureen.serving.shared_memory import SharedMemoryRegistry
from tureen.serving.transport import (
    ServerParts,
    Transport,
    bind_listener,
    check_port_free,
    transport_factory,
)
from tureen.serving.versions import VersionPolicy

if TYPE_CHECKING:
    from tureen.auth.chain import Security

log = logging.getLogger(__name__)

#: after a stop signal the process ends within grace + this, whatever user code is doing
WATCHDOG_MARGIN_SECONDS = 5.0


class ModelServer:
    def __init__(
        self,
        http_port: int | None = None,
        grpc_port: int | None = None,
        workers: int | None = None,
        *,
        settings: ServingConfig | None = None,
        extra_routes: Sequence[Any] = (),
        guards: Sequence[Guard] = (),
        authorizer: Authorizer | None = None,
        ssl: SSLContext | Mapping[str, SSLContext] | None = None,
        security: Security | None = None,
        transports: Sequence[str] | None = None,
        model_dirs: Mapping[str, Path] | None = None,
        max_request_bytes: int | None = None,
        temp_dirs: Sequence[Path] = (),
        **options: Any,
    ) -> None:
        """``settings`` (default: ``ServingConfig()``) with any of its fields overridden
        by keyword (``ModelServer(0, 0, host="127.0.0.1", enable_grpc=False)``);
        ``max_request_bytes`` sets ``limits.max_request_bytes``. ``extra_routes`` are
        mounted into the REST app; ``guards`` join the guard chain after the built-in
        limits (authentication, audit), ``authorizer`` decides ``authorize(...)`` calls;
        ``ssl`` puts TLS on every transport (one context, or one per transport kind).
        ``security`` (``tureen.auth.chain.build_security``) brings all three — guards,
        authorizer, TLS per transport — plus certificate reload and the audit log.
        ``transports`` names the surfaces to serve (default: ``http`` and, with
        ``enable_grpc``, ``grpc``). ``model_dirs``: model name → a directory of version
        subdirectories the operator chose (``--model_dir``), served besides
        ``model_repository``. ``temp_dirs``: folders the caller made for this server and
        removes after ``start``; if the supervisor of several workers is killed, the last
        worker out removes them."""
        changes: dict[str, Any] = dict(options)
        for key, value in (("http_port", http_port), ("grpc_port", grpc_port),
                           ("workers", workers)):
            if value is not None:
                changes[key] = value
        if max_request_bytes is not None:
            changes["limits"] = {"max_request_bytes": max_request_bytes}
        unknown = sorted(set(changes) - set(ServingConfig.model_fields))
        if unknown:
            raise ConfigError(f"ModelServer got unknown option(s) {', '.join(unknown)}; the "
                              f"options are the fields of ServingConfig.")
        base = settings or ServingConfig()
        self.settings = base.updated(**changes) if changes else base
        s = self.settings
        if s.grpc_server == "grpcio" and s.workers > 1 and s.enable_grpc and s.grpc_port == 0:
            raise ConfigError("grpc_server grpcio binds per worker: with several workers give "
                              "it a fixed --grpc_port.")
        self.extra_routes = list(extra_routes)
        self.security = security
        self.guards = list(guards) + (list(security.guards) if security else [])
        self.authorizer = authorizer or (security.authorizer if security else None)
        contexts: Mapping[str, SSLContext] = (
            {"http": ssl, "grpc": ssl} if isinstance(ssl, SSLContext) else dict(ssl or {}))
        self.ssl: dict[str, SSLContext] = {**(security.ssl if security else {}), **contexts}
        self.model_dirs = dict(model_dirs or {})
        self.temp_dirs = list(temp_dirs)
        self.kinds = list(transports) if transports is not None else (
            ["http", "grpc"] if s.enable_grpc else ["http"])
        self.http_port = s.http_port
        self.grpc_port = s.grpc_port
        self.dataplane: DataPlane | None = None
        self.transports: list[Transport] = []
        #: True when model loading failed; ``start`` then exits with status 1
        self.failed = False
        self._stop: asyncio.Event | None = None
        self._metrics_dir: str | None = None
        self._sockets: dict[str, socket.socket] = {}
        #: in a worker: the read end of the supervisor's lifeline pipe (EOF: it died)
        self._lifeline: int | None = None

    # entry points

    def start(self, models: Sequence[Model] = ()) -> None:
        """Serve ``models`` (and the model repository) until SIGTERM/SIGINT. Blocks."""
        _configure_logging(self.settings.log_level)
        fd_limit = _raise_file_limit()
        servers = sum(kind in ("http", "grpc") for kind in self.kinds)
        cap, warning = connection_cap(self.settings.limits.max_connections, servers, fd_limit)
        if warning is not None:
            log.warning(warning)
            self.settings = self.settings.updated(limits={"max_connections": cap})
        self.bind()
        try:
            if self.settings.workers == 1:
                _run(self.serve(models))
                _leave_stuck_threads(1 if self.failed else 0)
                if self.failed:
                    sys.exit(1)
                return
            self._fork_workers(models)
        finally:
            self.close_sockets()

    def _fork_workers(self, models: Sequence[Model]) -> None:
        with tempfile.TemporaryDirectory(prefix="tureen-metrics-") as mdir:
            self._metrics_dir = mdir
            ctx = multiprocessing.get_context("fork")
            line = lifeline.Lifeline()  # workers see EOF when this process dies
            procs = [ctx.Process(target=self._worker, args=(list(models), line.fd),
                                 daemon=False)
                     for _ in range(self.settings.workers)]
            for p in procs:
                p.start()
            line.release()

            def forward(sig: int, _frame: Any) -> None:
                for p in procs:
                    if p.pid is not None and p.is_alive():
                        os.kill(p.pid, sig)

            signal.signal(signal.SIGTERM, forward)
            signal.signal(signal.SIGINT, forward)
            for p in procs:
                p.join()
            line.close()
            if any(p.exitcode for p in procs):
                sys.exit(1)

    def _worker(self, models: list[Model], line: int) -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        self._lifeline = line
        _run(self.serve(models))
        # the supervisor died: it cannot clean up any more, so the last worker out does
        if (self._metrics_dir is not None and lifeline.at_eof(line)
                and _remove_if_empty(self._metrics_dir)):
            for folder in self.temp_dirs:
                shutil.rmtree(folder, ignore_errors=True)
        _leave_stuck_threads(1 if self.failed else 0)
        if self.failed:
            sys.exit(1)

    def bind(self) -> None:
        """Bind the listening sockets (once; workers inherit them). Raises
        ``PortInUseError`` when a port is taken (and holds none of them then)."""
        try:
            self._bind()
        except BaseException:
            self.close_sockets()
            raise

    def _bind(self) -> None:
        s = self.settings
        if "http" in self.kinds and "http" not in self._sockets:
            self._sockets["http"] = bind_listener(s.bind_host, s.http_port, "HTTP", "--http_port")
            self.http_port = self._sockets["http"].getsockname()[1]
        if "grpc" in self.kinds and "grpc" not in self._sockets:
            if s.grpc_server == "grpcio":
                check_port_free(s.bind_host, s.grpc_port, "gRPC", "--grpc_port")
            else:
                self._sockets["grpc"] = bind_listener(s.bind_host, s.grpc_port, "gRPC",
                                                      "--grpc_port")
                self.grpc_port = self._sockets["grpc"].getsockname()[1]

    def close_sockets(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()

    def _on_signal(self) -> None:
        """SIGTERM/SIGINT: drain, and end the process within the grace period whatever user
        code is doing (a watchdog, armed only when this server owns the process)."""
        _arm_watchdog(self.settings.grace_seconds + WATCHDOG_MARGIN_SECONDS)
        self.stop()

    def _on_supervisor_gone(self) -> None:
        """The lifeline pipe reached EOF: the supervisor died without forwarding a signal
        (SIGKILL, a crash). Drain and exit like SIGTERM."""
        log.error("the supervisor process is gone; draining and exiting (pid %s)", os.getpid())
        self._on_signal()

    def stop(self) -> None:
        """Ask a running ``serve`` to drain and return (thread-safe via the loop)."""
        if self._stop is not None:
            self._stop.set()

    def build_chain(self) -> GuardChain:
        limit = self.settings.limits.max_inflight_requests
        guards: list[Guard] = [InflightLimit(limit)] if limit else []
        return GuardChain([*guards, *self.guards], self.authorizer)

    async def serve(
        self, models: Sequence[Model] = (), install_signal_handlers: bool = True
    ) -> None:
        """Serve in the current event loop until ``stop()`` or a signal."""
        s = self.settings
        loop = asyncio.get_running_loop()
        if s.gil_switch_ms is not None:
            sys.setswitchinterval(s.gil_switch_ms / 1000.0)
        self._stop = asyncio.Event()
        own_sockets = not self._sockets
        self.bind()
        metrics = Metrics(self._metrics_dir)
        repo = ModelRepository(s.model_repository, VersionPolicy.parse(s.version_policy),
                               defaults=s.model_defaults, pinned=self.model_dirs,
                               load_timeout=s.model_load_timeout)
        dp = self.dataplane = DataPlane(repo, metrics, threads=s.threads,
                                        model_control=s.enable_model_control)
        if s.allow_shared_memory:
            dp.shared_memory = SharedMemoryRegistry(
                Path(self._metrics_dir) / "shared-memory" if self._metrics_dir else None)
        for m in models:  # served at once; not ready (503) until loaded below
            dp.register(m)
        repo.announce()
        parts = ServerParts(s, dp, self.build_chain(), self.extra_routes, self._sockets,
                            self.ssl, self.stop)
        self.transports = [transport_factory(kind)(parts) for kind in self.kinds]
        started: list[Transport] = []
        try:
            for t in self.transports:
                await t.start()
                started.append(t)
                if t.kind == "grpc":
                    self.grpc_port = t.port
                elif t.kind == "http":
                    self.http_port = t.port
            if install_signal_handlers:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(sig, self._on_signal)
            if self._lifeline is not None:
                lifeline.watch(loop, self._lifeline, self._on_supervisor_gone)
            writer = loop.create_task(_write_metrics(metrics)) if self._metrics_dir else None
            if self.security is not None and self.security.reloader is not None:
                self.security.reloader.start(loop, sighup=install_signal_handlers)
            loader = loop.create_task(self._load(dp, repo, models))
            log.warning("listening on %s (pid %s); loading models",
                        ", ".join(t.describe() for t in started), os.getpid())
            await self._stop.wait()
            loader.cancel()
            if writer is not None:
                writer.cancel()
        finally:
            await asyncio.gather(*(t.stop(s.grace_seconds) for t in started),
                                 return_exceptions=True)
            metrics.remove_snapshot()
            dp.close()
            if self.security is not None:
                self.security.close()
            if own_sockets:
                self.close_sockets()

    async def _load(self, dp: DataPlane, repo: ModelRepository, models: Sequence[Model]) -> None:
        """Load everything while already answering health checks. Repository models load
        concurrently; one that fails or hangs is reported in the repository index while the
        rest serve. Only when nothing at all could be loaded does the server stop with a
        non-zero exit (as KServe does), after saying what failed."""
        try:
            for m in models:
                if not m.ready:
                    await load_model(m, dp.run_blocking)
                    dp.register(m)  # rebuild its pipeline: load may set batching
            failed = await repo.load_all()
        except Exception as exc:
            log.error("loading models failed, stopping: %s", exc)
            self.failed = True
            self.stop()
            return
        for name, reason in sorted(failed.items()):
            log.error("model %s is not served: %s", name, reason)
        if failed and not dp.repository.names():
            log.error("no model could be loaded, stopping")
            self.failed = True
            self.stop()
            return
        log.warning("ready: serving %s", sorted(dp.repository.names()))


def _raise_file_limit() -> int:
    """Let the process open as many sockets as the system allows: the connection caps, not
    a default soft limit of 1024 descriptors, decide when clients are refused. Returns the
    descriptors the process may open."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


#: descriptors kept for everything but client connections (model files, logs, stores)
FD_RESERVE = 128


def connection_cap(max_connections: int, servers: int, fd_limit: int,
                   ) -> tuple[int, str | None]:
    """The per-server connection cap that fits ``fd_limit`` descriptors (so a flood of
    connections is refused with 503 / GOAWAY before accept() runs out of descriptors), and
    a warning when that is below ``max_connections``."""
    fits = max(1, (fd_limit - FD_RESERVE) // max(1, servers))
    if fits >= max_connections:
        return max_connections, None
    return fits, (f"limits.max_connections is {max_connections} per server but this process "
                  f"may open {fd_limit} file descriptors; each of its {servers} server(s) "
                  f"refuses connections above {fits}. Raise the limit (ulimit -n) or lower "
                  f"limits.max_connections.")


def _arm_watchdog(seconds: float) -> None:
    """End the process if draining and cleanup have not finished in ``seconds``."""

    def expire() -> None:
        log.error("still not stopped %.0f s after the stop signal; exiting now", seconds)
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()


def _remove_if_empty(folder: str) -> bool:
    """Remove the workers' shared folder once the others left it (each removes its own
    files first: whichever worker ends last succeeds, and only it gets True)."""
    with contextlib.suppress(OSError):
        (Path(folder) / "shared-memory").rmdir()
    try:
        Path(folder).rmdir()
    except OSError:
        return False
    return True


#: how long a stopped server waits for model threads to end before leaving them behind
STUCK_GRACE_SECONDS = 2.0


def _leave_stuck_threads(code: int) -> None:
    """A model thread that never returns (a hung predict) would keep the interpreter from
    exiting, which joins every non-daemon thread: exit without waiting for it. Threads that
    end within ``STUCK_GRACE_SECONDS`` (a pool's idle workers, which ``shutdown(wait=False)``
    only asks to leave; a predict finishing) are waited for, so a clean stop exits normally
    (atexit handlers run) and says nothing."""
    deadline = time.monotonic() + STUCK_GRACE_SECONDS
    stuck = []
    for t in threading.enumerate():
        if t is threading.main_thread() or t.daemon:
            continue
        t.join(max(0.0, deadline - time.monotonic()))
        if t.is_alive():
            stuck.append(t.name)
    if stuck:
        log.warning("exiting while model threads still run: %s", ", ".join(stuck[:5]))
        logging.shutdown()
        os._exit(code)


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
