"""tureen's own OIP gRPC server: ``h2grpc`` connections on an asyncio (uvloop) TCP server.

    server = await start_h2_server(dataplane, "127.0.0.1", 8081, max_message_bytes=256 << 20)
    server.port          # the bound port (ask for 0 to get an ephemeral one)
    await server.stop(grace=10)   # GOAWAY, let calls in flight finish, close

Once a second the server applies every connection's timers (``H2Connection.tick``:
handshake, request body, idle, keepalive); ``max_connections`` connections at most are
served per process, more are answered with GOAWAY and closed.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from ssl import SSLContext

from tureen.errors import PortInUseError
from tureen.serving.dataplane import DataPlane
from tureen.serving.guard import GuardChain
from tureen.transports.grpc.h2calm import H2Limits
from tureen.transports.grpc.h2grpc import GrpcConnection, Service


class H2Server:
    def __init__(self, server: asyncio.AbstractServer, service: Service, port: int) -> None:
        self._server = server
        self.service = service
        self.port = port
        self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            now = loop.time()
            for c in list(self.service.connections):
                c.tick(now)

    async def stop(self, grace: float) -> None:
        """Stop accepting, send GOAWAY on every connection, wait up to ``grace`` seconds
        for the calls in flight, then cancel what is left and close."""
        self._ticker.cancel()
        self._server.close()
        conns = list(self.service.connections)
        for c in conns:
            c.shutdown()
        waiting = [c.closed for c in conns if not c.closed.done()]
        if waiting:
            await asyncio.wait(waiting, timeout=grace)
        for c in conns:
            if not c.closed.done():
                c.abort()
        waiting = [c.closed for c in conns if not c.closed.done()]
        if waiting:
            await asyncio.wait(waiting, timeout=1.0)
        await self._server.wait_closed()


async def start_h2_server(
    dataplane: DataPlane, host: str = "127.0.0.1", port: int = 0, *, max_message_bytes: int,
    max_streams: int = 1000, chain: GuardChain | None = None, sock: socket.socket | None = None,
    ssl: SSLContext | None = None, limits: H2Limits | None = None, max_connections: int = 1000,
) -> H2Server:
    """Serve ``inference.GRPCInferenceService`` on ``sock`` (a bound, listening socket) or
    ``host:port`` (h2c with prior knowledge; h2 over TLS when ``ssl`` is given)."""
    loop = asyncio.get_running_loop()
    service = Service(dataplane, max_message_bytes, max_streams, chain, limits, max_connections)
    if sock is not None:
        server = await loop.create_server(lambda: GrpcConnection(service), sock=sock, ssl=ssl)
    else:
        try:
            server = await loop.create_server(lambda: GrpcConnection(service), host, port,
                                              backlog=1024, ssl=ssl)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError.from_os_error(exc, f"{host}:{port} (gRPC)",
                                                   "--grpc_port") from None
            raise
    bound = int(server.sockets[0].getsockname()[1])
    return H2Server(server, service, bound)
