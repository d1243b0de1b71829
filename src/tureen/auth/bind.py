"""Safe defaults for where a server listens.

Servers bind 127.0.0.1 unless told otherwise. A non-loopback address without authentication
is refused (one line naming ``--insecure``, the explicit opt-out for a server behind a mesh
or gateway that authenticates); a non-loopback address without TLS is allowed with a warning.
"""

from __future__ import annotations

import ipaddress

from tureen.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def check_bind(host: str, *, auth: bool, tls: bool, insecure: bool) -> str | None:
    """Raise for a non-loopback bind without auth (unless ``insecure``); return a warning
    for one without TLS; None when the bind is safe."""
    if is_loopback(host):
        return None
    if not auth and not insecure:
        raise ConfigError(
            f"refusing to listen on {host} without authentication: set serving.auth in "
            "tureen.yaml (or --auth token|oidc|mtls), or pass --insecure if a mesh or gateway "
            "in front authenticates every request.")
    if not tls:
        return (f"listening on {host} without TLS: credentials and data cross the network in "
                "clear text; pass --tls-cert/--tls-key (or serving.tls) unless a mesh "
                "encrypts the traffic.")
    return None
