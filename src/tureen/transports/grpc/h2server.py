"""tureen's own OIP gRPC server: ``h2grpc`` connections on an asyncio (uvloop) TCP server.

    server = await start_h2_server(dataplane, "0.0.0.0", 8081, max_message_bytes=256 << 20)
    server.port          # the bound port (ask for 0 to get an ephemeral one)
    await server.stop(grace=10)   # GOAWAY, let calls in flight finish, close
"""

from __future__ import annotations

import asyncio

from tureen.serving.dataplane import DataPlane
from tureen.transports.grpc.h2grpc import GrpcConnection, Service


class H2Server:
    def __init__(self, server: asyncio.AbstractServer, service: Service, port: int) -> None:
        self._server = server
        self.service = service
        self.port = port

    async def stop(self, grace: float) -> None:
        """Stop accepting, send GOAWAY on every connection, wait up to ``grace`` seconds
        for the calls in flight, then cancel what is left and close."""
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
    dataplane: DataPlane, host: str, port: int, *, max_message_bytes: int,
    reuse_port: bool = True, max_streams: int = 1000,
) -> H2Server:
    """Serve ``inference.GRPCInferenceService`` on ``host:port`` (h2c, prior knowledge)."""
    loop = asyncio.get_running_loop()
    service = Service(dataplane, max_message_bytes, max_streams)
    try:
        server = await loop.create_server(
            lambda: GrpcConnection(service), host, port, reuse_port=reuse_port, backlog=1024)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot bind the gRPC port {host}:{port} ({exc.strerror}); "
                      "pick a free one with --grpc_port.") from exc
    bound = int(server.sockets[0].getsockname()[1])
    return H2Server(server, service, bound)
