"""The security flags every server command shares, and what they turn into.

``--auth token|oidc|mtls`` (repeatable) turns authentication on (over ``serving.auth.type``);
``--tls-cert/--tls-key`` (``--tls-client-ca`` for client certificates) over ``serving.tls``;
``--insecure`` allows a non-loopback bind without authentication. Servers bind 127.0.0.1
unless ``--host``/``serving.host`` says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from tureen.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])


def security_options(f: F) -> F:
    for opt in reversed([
        click.option("--auth", "auth_types", multiple=True,
                     type=click.Choice(["token", "oidc", "mtls"]),
                     help="Require authentication (repeat to combine); overrides "
                          "serving.auth.type in tureen.yaml."),
        click.option("--tls-cert", "--tls_cert", "tls_cert", type=click.Path(dir_okay=False),
                     help="PEM certificate chain: serve REST and gRPC over TLS."),
        click.option("--tls-key", "--tls_key", "tls_key", type=click.Path(dir_okay=False),
                     help="PEM private key of --tls-cert."),
        click.option("--tls-client-ca", "--tls_client_ca", "tls_client_ca",
                     type=click.Path(dir_okay=False),
                     help="CA bundle: clients must present a certificate it signed (mTLS)."),
        click.option("--insecure", is_flag=True,
                     help="Allow a non-loopback --host without authentication (a mesh or "
                          "gateway in front authenticates)."),
    ]):
        f = opt(f)
    return f


def apply_security(
    serving: Any, *, auth_types: tuple[str, ...], tls_cert: str | None, tls_key: str | None,
    tls_client_ca: str | None, insecure: bool, store: Any = None, host: str | None = None,
    self_authenticating: tuple[str, ...] = (),
) -> tuple[Any, Any]:
    """(``serving`` with the flags applied, ``Security`` to hand to ``ModelServer``)."""
    from tureen.auth.chain import build_security
    from tureen.auth.settings import AuthSettings, TLSSettings

    changes: dict[str, Any] = {}
    if auth_types:
        base = serving.auth.model_dump() if serving.auth is not None else {}
        changes["auth"] = AuthSettings.model_validate({**base, "type": list(auth_types)})
    if tls_cert or tls_key or tls_client_ca:
        base = serving.tls.model_dump() if serving.tls is not None else {}
        merged = {**base, **{k: v for k, v in (("cert", tls_cert), ("key", tls_key),
                                                ("client_ca", tls_client_ca)) if v}}
        if not merged.get("cert") or not merged.get("key"):
            raise ConfigError("TLS needs both --tls-cert and --tls-key (or serving.tls.cert "
                              "and .key); `tureen dev-cert` makes a pair for local use.")
        changes["tls"] = TLSSettings.model_validate(merged)
    if host is not None:
        changes["host"] = host
    if changes:
        serving = serving.updated(**changes)
    if serving.auth is not None and "token" in serving.auth.type and store is None:
        raise ConfigError("--auth token checks tokens kept in a feature repo's registry: pass "
                          "--repo DIR (the folder with tureen.yaml).")
    security = build_security(
        auth=serving.auth, tls=serving.tls, audit=serving.audit, host=serving.bind_host,
        insecure=insecure, registry=store.registry if store is not None else None,
        project=store.project if store is not None else None,
        repo_path=Path(store.repo_path) if store is not None else None,
        self_authenticating=self_authenticating)
    return serving, security
