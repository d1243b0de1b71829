"""TLS contexts for the servers and for tureen's own clients, and certificate reload.

``server_context`` builds one ``ssl.SSLContext`` per server (ALPN ``h2`` for the HTTP/2
server, ``http/1.1`` for the HTTP/1.1 one). ``CertReloader`` loads a renewed certificate
into that same context on SIGHUP or when the files change: new handshakes get the new pair,
connections already open keep theirs (nothing is dropped). A renewed pair that does not load
(half-written, key not matching) is refused with an error in the log and the old one stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import ssl
from collections.abc import Callable, Sequence
from pathlib import Path

from tureen.auth.settings import TLSSettings
from tureen.errors import ConfigError

log = logging.getLogger(__name__)


def _check_files(settings: TLSSettings) -> None:
    for what, path in (("certificate", settings.cert), ("key", settings.key),
                       ("client CA", settings.client_ca)):
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"TLS {what} file {path} does not exist; pass an existing file "
                              "(`tureen dev-cert` makes a pair for local use).")


def server_context(
    settings: TLSSettings, alpn: Sequence[str] = (), require_client_cert: bool = True
) -> ssl.SSLContext:
    """A server context for ``settings``; with ``client_ca`` it verifies client certificates
    (required, or optional when ``require_client_cert`` is False — bearer tokens also work)."""
    _check_files(settings)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(settings.cert, settings.key)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"cannot load the TLS pair {settings.cert} / {settings.key}: {exc}. "
                          "Check that the key matches the certificate and both are PEM.") from exc
    if settings.client_ca:
        try:
            ctx.load_verify_locations(settings.client_ca)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"cannot load the client CA {settings.client_ca}: {exc}.") from exc
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    ctx.options |= ssl.OP_NO_COMPRESSION
    return ctx


def client_context(
    ca_file: str | None = None, cert: str | None = None, key: str | None = None
) -> ssl.SSLContext:
    """A client context: the system CAs or ``ca_file``; a client certificate for mTLS."""
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


class CertReloader:
    """Reload the pair into every registered context on SIGHUP or when the files change."""

    def __init__(self, settings: TLSSettings, poll_seconds: float = 2.0) -> None:
        self.settings = settings
        self.poll_seconds = poll_seconds
        self.contexts: list[ssl.SSLContext] = []
        self.listeners: list[Callable[[], None]] = []
        self.reloads = 0
        self._stamp = self._mtimes()
        self._task: asyncio.Task[None] | None = None

    def _mtimes(self) -> tuple[float, ...]:
        out = []
        for p in (self.settings.cert, self.settings.key, self.settings.client_ca):
            if p is None:
                continue
            try:
                out.append(os.stat(p).st_mtime)
            except OSError:
                out.append(0.0)
        return tuple(out)

    def add(self, ctx: ssl.SSLContext) -> ssl.SSLContext:
        self.contexts.append(ctx)
        return ctx

    def reload(self) -> bool:
        """Load the files again; False (old pair kept) when they do not load."""
        s = self.settings
        try:
            probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            probe.load_cert_chain(s.cert, s.key)
            for ctx in self.contexts:
                ctx.load_cert_chain(s.cert, s.key)
                if s.client_ca:
                    ctx.load_verify_locations(s.client_ca)
        except (ssl.SSLError, OSError) as exc:
            log.error("TLS reload of %s failed, keeping the current certificate: %s", s.cert, exc)
            return False
        self.reloads += 1
        for fn in self.listeners:
            fn()
        log.warning("TLS certificate reloaded from %s", s.cert)
        return True

    def check(self) -> bool:
        """Reload when the files changed since the last look."""
        stamp = self._mtimes()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        return self.reload()

    def start(self, loop: asyncio.AbstractEventLoop, sighup: bool = True) -> None:
        if sighup:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signal.SIGHUP, self.reload)
        if self.settings.reload:
            self._task = loop.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            self.check()

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
