"""``HTTPServer``: listening, the once-a-second sweep (keep-alive, head and body deadlines,
Date header), the connection cap, ASGI lifespan, and graceful shutdown.

    server = HTTPServer(app, resolver=app)        # app: ASGI; resolver: NativeResolver
    await server.start(sock)                       # an already bound, listening socket
    ...
    await server.shutdown(grace=30)                # stop accepting, drain, close
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
from ssl import SSLContext
from typing import Any

from tureen.serving.ratelog import RateLimitedLog
from tureen.transports.http1 import response
from tureen.transports.http1.asgi import ASGIApp, Lifespan
from tureen.transports.http1.native import Headers, NativeHandler, NativeResolver, Reply
from tureen.transports.http1.protocol import Connection

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 64 * 1024 * 1024
DEFAULT_MAX_HEADER = 64 * 1024


async def _not_found(headers: Headers, body: bytes | bytearray) -> Reply:
    return 404, b'{"error":"no such route on this server."}', b"application/json", []


class ServerState:
    """What every connection of one server shares."""

    def __init__(self, app: ASGIApp | None, resolver: NativeResolver | None,
                 max_body_bytes: int, max_header_bytes: int, body_limit_advice: str,
                 head_timeout: float = 10.0, body_timeout: float = 60.0,
                 max_connections: int = 1000) -> None:
        self.loop = asyncio.get_running_loop()
        self.app = app
        self.resolver = resolver
        self.not_found: NativeHandler = _not_found
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.body_limit_advice = body_limit_advice
        self.head_timeout = head_timeout
        self.body_timeout = body_timeout
        self.max_connections = max_connections
        self.draining = False
        self.connections: set[Connection] = set()
        self.refusals = RateLimitedLog(logging.getLogger("tureen.transports.http1.protocol"))
        self.lifespan_state: dict[str, Any] = {}


class HTTPServer:
    def __init__(
        self,
        app: ASGIApp | None = None,
        resolver: NativeResolver | None = None,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY,
        max_header_bytes: int = DEFAULT_MAX_HEADER,
        keep_alive_timeout: float = 5.0,
        body_limit_advice: str = "send a smaller body or raise the server's max_body_bytes",
        lifespan: bool = True,
        head_timeout: float = 10.0,
        body_timeout: float = 60.0,
        max_connections: int = 1000,
    ) -> None:
        """``app`` answers what ``resolver`` does not claim (with neither, every request is a
        404). ``resolver`` defaults to ``app`` when the app is a ``NativeResolver``."""
        if resolver is None and isinstance(app, NativeResolver):
            resolver = app
        self.app = app
        self.resolver = resolver
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.keep_alive_timeout = keep_alive_timeout
        self.body_limit_advice = body_limit_advice
        self.head_timeout = head_timeout
        self.body_timeout = body_timeout
        self.max_connections = max_connections
        self.use_lifespan = lifespan and app is not None
        self.state: ServerState | None = None
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._lifespan: Lifespan | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the server first"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def connections(self) -> set[Connection]:
        return self.state.connections if self.state is not None else set()

    async def start(self, sock: socket.socket | None = None, host: str = "127.0.0.1",
                    port: int = 0, backlog: int = 2048, ssl: SSLContext | None = None) -> None:
        """Run the app's lifespan startup, then accept on ``sock`` (or bind host:port);
        with ``ssl``, over TLS."""
        loop = asyncio.get_running_loop()
        state = self.state = ServerState(self.app, self.resolver, self.max_body_bytes,
                                         self.max_header_bytes, self.body_limit_advice,
                                         self.head_timeout, self.body_timeout,
                                         self.max_connections)
        if self.use_lifespan and self.app is not None:
            self._lifespan = Lifespan(self.app, state.lifespan_state)
            await self._lifespan.startup()
        if sock is not None:
            self._server = await loop.create_server(lambda: Connection(state), sock=sock,
                                                    backlog=backlog, ssl=ssl)
        else:
            self._server = await loop.create_server(lambda: Connection(state), host, port,
                                                    backlog=backlog, ssl=ssl)
        self._sweeper = loop.create_task(self._sweep())

    async def _sweep(self) -> None:
        interval = min(1.0, self.keep_alive_timeout)
        ticks = max(1, math.ceil(self.keep_alive_timeout / interval - 1e-9))
        assert self.state is not None
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            response.DATE.refresh()
            now = loop.time()
            for conn in list(self.state.connections):
                conn.sweep(ticks, now)

    async def shutdown(self, grace: float = 30.0) -> None:
        """Stop accepting, close idle connections, let requests in flight finish for up to
        ``grace`` seconds (their responses say ``connection: close``), then close the rest
        and run the lifespan shutdown."""
        state = self.state
        if state is None or self._server is None:
            return
        self._server.close()
        state.draining = True
        for conn in list(state.connections):
            if conn.idle:
                conn.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while state.connections and loop.time() < deadline:
            await asyncio.sleep(0.05)
        tasks: list[asyncio.Task[Any]] = []
        for conn in list(state.connections):
            tasks.extend(conn.tasks)
            conn.abort()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        await self._server.wait_closed()
        if self._lifespan is not None:
            await self._lifespan.shutdown()
        self._server = None
