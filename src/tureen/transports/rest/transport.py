"""REST as a ``Transport``: the REST app on tureen's HTTP/1.1 server or on uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Generator
from typing import Any

import uvicorn

from tureen.serving.transport import ServerParts
from tureen.transports.http1 import HTTPServer
from tureen.transports.rest.app import RestApp, build_app

log = logging.getLogger(__name__)


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: ModelServer owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class HttpTransport:
    kind = "http"

    def __init__(self, parts: ServerParts) -> None:
        s = parts.settings
        self.parts = parts
        self.implementation = s.http_server
        self.sock = parts.sockets["http"]
        self.port = int(self.sock.getsockname()[1])
        self.app: RestApp = build_app(parts.dataplane, parts.extra_routes,
                                      max_request_bytes=int(s.limits.max_request_bytes),
                                      chain=parts.chain)
        self._native: HTTPServer | None = None
        self._uvicorn: _Uvicorn | None = None
        self._task: asyncio.Task[None] | None = None

    def describe(self) -> str:
        tls = " TLS" if "http" in self.parts.ssl else ""
        return f"http :{self.port} ({self.implementation}{tls})"

    async def start(self) -> None:
        s = self.parts.settings
        if self.implementation == "tureen":
            self._native = HTTPServer(
                self.app, max_body_bytes=int(s.limits.max_request_bytes),
                keep_alive_timeout=s.limits.keep_alive_seconds,
                body_limit_advice="send smaller batches or raise --max_request_mb",
            )
            await self._native.start(self.sock, ssl=self.parts.ssl.get("http"))
            return
        config = uvicorn.Config(
            self.app, http="httptools", loop="none", lifespan="on", access_log=False,
            log_level=s.log_level, timeout_graceful_shutdown=int(s.grace_seconds),
            log_config=None, timeout_keep_alive=int(s.limits.keep_alive_seconds),
        )
        config.load()
        config.ssl = self.parts.ssl.get("http")
        server = self._uvicorn = _Uvicorn(config)
        task = self._task = asyncio.get_running_loop().create_task(server.serve([self.sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if task.done():
            task.result()  # raises what stopped it
            raise RuntimeError("uvicorn stopped while starting")
        task.add_done_callback(self._exited)

    def _exited(self, task: asyncio.Task[None]) -> None:
        if self._uvicorn is not None and not self._uvicorn.should_exit:
            log.error("the HTTP server stopped on its own; stopping the server")
            self.parts.stop()

    async def stop(self, drain: float) -> None:
        if self._native is not None:
            await self._native.shutdown(drain)
        if self._uvicorn is not None and self._task is not None:
            self._uvicorn.should_exit = True
            await asyncio.gather(self._task, return_exceptions=True)


def http_transport(parts: ServerParts) -> Any:
    return HttpTransport(parts)
