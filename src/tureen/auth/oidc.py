"""OIDC: verify JWTs against the issuer's JWKS, with no network call when the key is cached.

``JWKSCache`` holds the issuer's public keys by ``kid``. A token whose ``kid`` is cached is
verified locally. An unknown ``kid`` (the issuer rotated its keys) refetches the JWKS — one
fetch shared by every request waiting for it (single flight), and at most once per
``jwks_min_refresh_seconds``, so forged tokens with random ``kid``s cannot make the server
hammer the issuer. Keys older than ``jwks_max_age_seconds`` are refreshed in the background
while the cached ones keep serving. A verified token's identity is cached until its ``exp``,
so a client that reuses its token costs one dict lookup per request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from tureen.auth.policy import Identity
from tureen.auth.settings import OIDCSettings
from tureen.errors import BackendUnavailableError, ConfigError

log = logging.getLogger(__name__)

MAX_JWKS_BYTES = 1024 * 1024
MAX_JWT_CHARS = 16 * 1024
VERIFIED_CACHE_SIZE = 4096


def _jwt() -> Any:
    try:
        import jwt
    except ImportError as exc:  # pragma: no cover - the auth extra
        raise ConfigError("OIDC needs PyJWT and cryptography: pip install 'tureen[auth]'.") \
            from exc
    return jwt


def claim(claims: Mapping[str, Any], path: str) -> Any:
    """The value at a dot path (``resource_access.tureen.roles``), or None."""
    cur: Any = claims
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _strings(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        return tuple(v.replace(",", " ").split())
    if isinstance(v, list | tuple):
        return tuple(str(x) for x in v if isinstance(x, str | int))
    return ()


class JWKSCache:
    def __init__(self, settings: OIDCSettings) -> None:
        self.settings = settings
        self._keys: dict[str, Any] = {}  # kid -> PyJWK
        self._fetched_at = 0.0  # monotonic; 0 = never
        self._inflight: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.fetches = 0

    def cached(self, kid: str) -> Any | None:
        return self._keys.get(kid)

    def stale(self) -> bool:
        return time.monotonic() - self._fetched_at > self.settings.jwks_max_age_seconds

    async def key(self, kid: str) -> Any | None:
        """The key for ``kid``: cached, else after one (shared, rate-limited) refetch."""
        k = self._keys.get(kid)
        if k is not None:
            if self.stale():
                self._refresh_in_background()
            return k
        if (self._fetched_at
                and time.monotonic() - self._fetched_at < self.settings.jwks_min_refresh_seconds):
            return None
        await self.refresh()
        return self._keys.get(kid)

    def _refresh_in_background(self) -> None:
        if self._inflight is None:
            self._start_fetch(asyncio.get_running_loop())

    def _start_fetch(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        # a real task: the HTTP client needs one, and the request that started the fetch
        # may be running outside a task (tureen's HTTP/1.1 server runs handlers eagerly)
        task = loop.create_task(self._fetch())
        self._inflight, self._loop = task, loop

        def done(t: asyncio.Task[None]) -> None:
            if self._inflight is t:
                self._inflight = None
            if not t.cancelled():
                t.exception()  # retrieved here; every waiter re-raises it

        task.add_done_callback(done)
        return task

    async def refresh(self) -> None:
        """Fetch the JWKS; concurrent callers share one fetch."""
        loop = asyncio.get_running_loop()
        fut = self._inflight if self._inflight is not None and self._loop is loop else None
        if fut is None:
            fut = self._start_fetch(loop)
        await asyncio.shield(fut)

    async def _fetch(self) -> None:
        s = self.settings
        self.fetches += 1
        verify: Any = True
        if s.ca_file:
            from tureen.auth.tls import client_context

            verify = client_context(s.ca_file)
        async with httpx.AsyncClient(timeout=s.timeout_seconds, verify=verify,
                                     follow_redirects=False) as client:
            url = s.jwks_url or await self._discover(client)
            doc = await _get_json(client, url)
        keys = doc.get("keys") if isinstance(doc, dict) else None
        if not isinstance(keys, list):
            raise BackendUnavailableError(f"the JWKS at {url} has no `keys` list.")
        jwt = _jwt()
        parsed: dict[str, Any] = {}
        for raw in keys:
            if not isinstance(raw, dict) or raw.get("use", "sig") != "sig":
                continue
            kid = raw.get("kid")
            if not isinstance(kid, str):
                continue
            try:
                parsed[kid] = jwt.PyJWK(raw)
            except Exception as exc:  # an unsupported key type is skipped, not fatal
                log.warning("JWKS key %s skipped: %s", kid, exc)
        self._keys = parsed
        self._fetched_at = time.monotonic()

    async def _discover(self, client: httpx.AsyncClient) -> str:
        url = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
        doc = await _get_json(client, url)
        uri = doc.get("jwks_uri") if isinstance(doc, dict) else None
        if not isinstance(uri, str):
            raise BackendUnavailableError(f"{url} has no jwks_uri; set serving.auth.oidc."
                                          "jwks_url.")
        self.settings = self.settings.model_copy(update={"jwks_url": uri})
        return uri


async def _get_json(client: httpx.AsyncClient, url: str) -> Any:
    import orjson

    try:
        async with client.stream("GET", url) as resp:
            if resp.status_code != 200:
                raise BackendUnavailableError(f"GET {url} answered {resp.status_code}.")
            body = bytearray()
            async for chunk in resp.aiter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise BackendUnavailableError(f"{url} sent more than 1 MiB.")
        return orjson.loads(body)
    except httpx.HTTPError as exc:
        raise BackendUnavailableError(f"cannot fetch {url}: {exc}") from exc
    except ValueError as exc:
        raise BackendUnavailableError(f"{url} did not send JSON: {exc}") from exc


class OIDCVerifier:
    def __init__(self, settings: OIDCSettings) -> None:
        self.settings = settings
        self.jwks = JWKSCache(settings)
        self._verified: dict[str, tuple[Identity, float]] = {}  # token -> (identity, exp)
        aud = settings.audience
        self._audience = [aud] if isinstance(aud, str) else list(aud)

    def cached(self, token: str) -> Identity | None:
        """A token verified before and not yet expired (the request path's fast lane)."""
        hit = self._verified.get(token)
        if hit is None:
            return None
        if hit[1] + self.settings.leeway_seconds < time.time():
            self._verified.pop(token, None)
            return None
        return hit[0]

    async def authenticate(self, token: str) -> Identity | None:
        """The identity of a valid JWT for our issuer and audience; None otherwise."""
        hit = self.cached(token)
        if hit is not None:
            return hit
        if len(token) > MAX_JWT_CHARS or token.count(".") != 2:
            return None
        jwt = _jwt()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        kid, alg = header.get("kid"), header.get("alg")
        if not isinstance(kid, str) or alg not in self.settings.algorithms:
            return None
        try:
            key = await self.jwks.key(kid)
        except BackendUnavailableError as exc:
            log.warning("OIDC: cannot refresh the issuer's keys: %s", exc)
            return None
        if key is None or (key.algorithm_name and key.algorithm_name != alg):
            return None
        try:
            claims = jwt.decode(
                token, key=key.key, algorithms=[alg], audience=self._audience,
                issuer=self.settings.issuer, leeway=self.settings.leeway_seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            log.info("OIDC token refused: %s", exc)
            return None
        ident = self.identity(claims)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.pop(next(iter(self._verified)))
        self._verified[token] = (ident, float(claims["exp"]))
        return ident

    def identity(self, claims: Mapping[str, Any]) -> Identity:
        s = self.settings
        roles = tuple(s.role_map.get(r, r) for r in _strings(claim(claims, s.role_claim)))
        projects = _strings(claim(claims, s.project_claim)) if s.project_claim else ()
        names = _strings(claim(claims, s.names_claim)) if s.names_claim else ()
        subject = claim(claims, s.subject_claim)
        return Identity(
            subject=str(subject if subject is not None else claims.get("sub", "?"))[:200],
            source="oidc", roles=roles, projects=projects, names=names,
            expires_at=datetime.fromtimestamp(float(claims["exp"]), UTC),
        )
