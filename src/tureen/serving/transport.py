"""``Transport``: one network surface of a serving process, and how the server finds them.

``ModelServer`` knows no transport by import. It binds the listening sockets, builds the
``DataPlane`` and the ``GuardChain``, and for each surface looks up a factory by name in
``TRANSPORTS`` (``"module:function"``, like the backend table) that turns ``ServerParts``
into a ``Transport``; then it loops over them: ``start()`` each, and on shutdown
``stop(drain)`` each. Another area adds a surface (ingestion, the console) with
``register_transport(kind, "pkg.module:factory")`` and ``ModelServer(transports=[...])``.

    class Transport(Protocol):
        kind: str                          # "http", "grpc", ...
        port: int                          # the bound port
        async def start(self) -> None       # accepting once it returns
        async def stop(self, drain: float) -> None   # stop accepting, finish in-flight work
                                                     # for up to ``drain`` seconds, close
        def describe(self) -> str           # "http :8080 (tureen)" for the log

Sockets are bound once, by the parent process, without ``SO_REUSEPORT``: forked workers
inherit and share them, and a second server on the same port fails at once with
``PortInUseError`` instead of silently taking part of the traffic.
"""

from __future__ import annotations

import errno
import importlib
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from ssl import SSLContext
from typing import Any, Protocol

from tureen.errors import ConfigError, PortInUseError
from tureen.serving.dataplane import DataPlane
from tureen.serving.guard import GuardChain
from tureen.serving.settings import ServingConfig


class Transport(Protocol):
    kind: str
    port: int

    async def start(self) -> None: ...

    async def stop(self, drain: float) -> None: ...

    def describe(self) -> str: ...


@dataclass
class ServerParts:
    """What a transport factory gets."""

    settings: ServingConfig
    dataplane: DataPlane
    chain: GuardChain
    #: routes other areas mount into the REST app (``RouteTable``s, Starlette routes)
    extra_routes: Sequence[Any] = ()
    #: kind → bound listening socket (absent: the transport binds itself, e.g. grpcio)
    sockets: dict[str, socket.socket] = field(default_factory=dict)
    #: transport kind → its TLS server context (the auth area builds them: ALPN ``h2`` for
    #: gRPC, ``http/1.1`` for REST); a kind without one is served in plain text
    ssl: Mapping[str, SSLContext] = field(default_factory=dict)
    #: a transport that dies on its own calls this to stop the whole server
    stop: Callable[[], None] = lambda: None


TransportFactory = Callable[[ServerParts], Transport]

TRANSPORTS: dict[str, str] = {
    "http": "tureen.transports.rest.transport:http_transport",
    "grpc": "tureen.transports.grpc.transport:grpc_transport",
}


def register_transport(kind: str, target: str) -> None:
    """Make ``kind`` served by the factory at ``"module:function"``."""
    if ":" not in target:
        raise ConfigError(f"transport {kind!r}: {target!r} is not 'module:function'.")
    TRANSPORTS[kind] = target


def transport_factory(kind: str) -> TransportFactory:
    target = TRANSPORTS.get(kind)
    if target is None:
        raise ConfigError(f"no transport {kind!r}; known: {', '.join(sorted(TRANSPORTS))}.")
    module, _, name = target.partition(":")
    factory: TransportFactory = getattr(importlib.import_module(module), name)
    return factory


def bind_listener(host: str, port: int, what: str, option: str,
                  backlog: int = 2048) -> socket.socket:
    """A listening TCP socket on ``host:port`` that forked workers can inherit; another
    listener on that port (ours or anyone's) is a ``PortInUseError``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError.from_os_error(exc, f"{host}:{port} ({what})", option) from None
        raise
    sock.set_inheritable(True)
    return sock


def check_port_free(host: str, port: int, what: str, option: str) -> None:
    """Raise ``PortInUseError`` when something listens on ``host:port`` (for servers that
    bind by themselves, like grpcio's)."""
    bind_listener(host, port, what, option, backlog=1).close()
