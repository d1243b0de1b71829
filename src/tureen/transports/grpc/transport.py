"""OIP gRPC as a ``Transport``: tureen's own HTTP/2 server, or ``grpc.aio``."""

from __future__ import annotations

import errno
import os
from typing import Any

from tureen.errors import ConfigError, PortInUseError
from tureen.serving.transport import ServerParts
from tureen.transports.grpc.h2calm import Budget, H2Limits
from tureen.transports.grpc.h2server import H2Server, start_h2_server


class GrpcTransport:
    kind = "grpc"

    def __init__(self, parts: ServerParts) -> None:
        self.parts = parts
        self.implementation = parts.settings.grpc_server
        self.port = parts.settings.grpc_port
        self._h2: H2Server | None = None
        self._aio: Any = None

    def describe(self) -> str:
        tls = " TLS" if "grpc" in self.parts.ssl else ""
        return f"grpc :{self.port} ({self.implementation}{tls})"

    async def start(self) -> None:
        p, s = self.parts, self.parts.settings
        limit = int(s.limits.max_message_bytes)
        if self.implementation == "tureen":
            lim = s.limits
            limits = H2Limits(
                limit + 5, max_header_list=int(lim.max_header_bytes),
                budget=Budget(max(int(lim.max_buffered_bytes), limit + 5)),
                handshake_timeout=lim.head_timeout_seconds,
                body_timeout=lim.body_timeout_seconds, idle_timeout=lim.idle_timeout_seconds,
                keepalive_interval=lim.keepalive_seconds)
            self._h2 = await start_h2_server(p.dataplane, max_message_bytes=limit,
                                             chain=p.chain, sock=p.sockets["grpc"],
                                             ssl=p.ssl.get("grpc"), limits=limits,
                                             max_connections=lim.max_connections)
            self.port = self._h2.port
            return
        import grpc

        from tureen.transports.grpc.servicer import add_inference_service

        lim = s.limits
        server = self._aio = grpc.aio.server(options=[
            ("grpc.so_reuseport", 1 if s.workers > 1 else 0),
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            # the same connection deadlines and cap as tureen's server, where grpc core has them
            # (it has no per-stream body deadline)
            ("grpc.server_handshake_timeout_ms", int(lim.head_timeout_seconds * 1000)),
            ("grpc.max_connection_idle_ms", int(lim.idle_timeout_seconds * 1000)),
            ("grpc.keepalive_time_ms", int(lim.keepalive_seconds * 1000)),
            ("grpc.keepalive_timeout_ms", 20_000),
            ("grpc.max_allowed_incoming_connections", lim.max_connections),
        ])
        add_inference_service(server, p.dataplane, p.chain)
        address = f"{s.bind_host}:{s.grpc_port}"
        if "grpc" in p.ssl:
            if s.tls is None:
                raise ConfigError("grpc_server grpcio serves TLS from serving.tls (certificate "
                                  "files); pass --tls-cert/--tls-key.")
            port = server.add_secure_port(address, grpcio_credentials(s.tls))
        else:
            port = server.add_insecure_port(address)
        if port == 0:
            taken = OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))
            raise PortInUseError.from_os_error(taken, f"{s.bind_host}:{s.grpc_port} (gRPC)",
                                               "--grpc_port")
        self.port = port
        await server.start()

    async def stop(self, drain: float) -> None:
        if self._h2 is not None:
            await self._h2.stop(drain)
        if self._aio is not None:
            await self._aio.stop(drain)


def grpcio_credentials(tls: Any) -> Any:
    """grpcio's TLS credentials for ``serving.tls``, re-read when the files change (grpcio
    asks before each handshake), so a renewed certificate is used without a restart."""
    import os

    import grpc

    def read() -> tuple[Any, tuple[float, ...]]:
        paths = [tls.cert, tls.key] + ([tls.client_ca] if tls.client_ca else [])
        stamp = tuple(os.stat(x).st_mtime for x in paths)
        with open(tls.key, "rb") as k, open(tls.cert, "rb") as c:
            pair = (k.read(), c.read())
        ca = open(tls.client_ca, "rb").read() if tls.client_ca else None
        config = grpc.ssl_server_certificate_configuration([pair], root_certificates=ca)
        return config, stamp

    initial, stamp = read()
    seen = [stamp]

    def fetch() -> Any:
        try:
            config, now = read()
        except OSError:
            return None  # mid-rotation: keep the current pair
        if now == seen[0]:
            return None
        seen[0] = now
        return config

    return grpc.dynamic_ssl_server_credentials(
        initial, fetch, require_client_authentication=bool(tls.client_ca))


def grpc_transport(parts: ServerParts) -> Any:
    return GrpcTransport(parts)
