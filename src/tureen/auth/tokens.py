"""API tokens: created once, stored hashed in the registry, checked without a network call.

A token is ``tureen_<id>_<secret>``: 12 hex characters of id (shown by ``token list``, used to
revoke) and 32 random bytes of secret (base64url). The registry keeps only the SHA-256 of the
secret (the secret has 256 bits of entropy, so a slow password hash would add nothing), with
the roles and scope, in its ``tokens`` section — so tokens live wherever the registry lives
(the file or the SQL backend) and every change is one atomic registry write.

Servers check a token against the cached registry snapshot (re-read at most every registry
cache TTL), so a revocation takes effect on running servers within that TTL; an unknown id
re-reads the registry at most once a second, so a freshly created token works at once. The
time a token was last used is kept in memory and written beside the registry once a minute.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol, runtime_checkable

from tureen.auth.access import authorize
from tureen.auth.policy import Action, Identity, Policy
from tureen.errors import InvalidRequestError, NotFoundError, suggest
from tureen.registry.service import Registry
from tureen.registry.snapshot import RegistrySnapshot

log = logging.getLogger(__name__)

SECTION = "tokens"
PREFIX = "tureen_"
MAX_TOKEN_CHARS = 256
_TOKEN = re.compile(r"^tureen_([0-9a-f]{12})_([A-Za-z0-9_\-]{43})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{0,99}$")
_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@runtime_checkable
class TokenUseStore(Protocol):
    """A registry store that can also keep when each token was last used."""

    def record_token_uses(self, uses: Mapping[str, str]) -> None: ...

    def token_uses(self) -> dict[str, str]: ...


def parse_duration(text: str) -> timedelta:
    m = _DURATION.match(text.strip().lower())
    if not m or int(m.group(1)) == 0:
        raise InvalidRequestError(
            f"--expires {text!r} is not a duration; use a number and a unit, e.g. 12h, 30d, 8w."
        )
    return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class TokenRecord:
    id: str
    name: str
    roles: tuple[str, ...]
    projects: tuple[str, ...]
    names: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    created_by: str
    secret_sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "roles": list(self.roles),
            "projects": list(self.projects), "names": list(self.names),
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "created_by": self.created_by, "secret_sha256": self.secret_sha256,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TokenRecord:
        def ts(v: Any) -> datetime | None:
            return datetime.fromisoformat(v) if v else None

        return cls(
            id=str(d["id"]), name=str(d.get("name") or d["id"]),
            roles=tuple(d.get("roles") or ()), projects=tuple(d.get("projects") or ()),
            names=tuple(d.get("names") or ()), created_at=datetime.fromisoformat(d["created_at"]),
            expires_at=ts(d.get("expires_at")), revoked_at=ts(d.get("revoked_at")),
            created_by=str(d.get("created_by") or ""), secret_sha256=str(d["secret_sha256"]),
        )

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def public(self) -> dict[str, Any]:
        """Everything but the hash (for `token list --json`)."""
        d = self.to_dict()
        d.pop("secret_sha256")
        return d


def _records(snap: RegistrySnapshot) -> dict[str, TokenRecord]:
    raw = snap.extra.get(SECTION) or {}
    return {k: TokenRecord.from_dict(v) for k, v in raw.items()}


class Tokens:
    """Create, list and revoke the tokens of one registry (admin actions)."""

    def __init__(self, registry: Registry, policy: Policy | None = None) -> None:
        self.registry = registry
        self.policy = policy or Policy()

    def create(
        self,
        roles: Sequence[str],
        *,
        projects: Sequence[str] = (),
        names: Sequence[str] = (),
        expires_in: timedelta | None = None,
        name: str | None = None,
        created_by: str = "",
    ) -> tuple[str, TokenRecord]:
        """Store a new token; returns (the token, shown only now, and its record)."""
        authorize(Action.ADMIN, self.registry.project)
        if not roles:
            raise InvalidRequestError("a token needs at least one role: pass --role ROLE.")
        for r in roles:
            self.policy.check_role(r)
        if name is not None and not _NAME.match(name):
            raise InvalidRequestError(
                f"token name {name!r} is not valid: use up to 100 letters, digits, '_', '.', "
                "'@' or '-'."
            )
        token_id = secrets.token_hex(6)
        secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        now = datetime.now(UTC)
        record = TokenRecord(
            id=token_id, name=name or token_id, roles=tuple(roles), projects=tuple(projects),
            names=tuple(names), created_at=now,
            expires_at=now + expires_in if expires_in is not None else None, revoked_at=None,
            created_by=created_by, secret_sha256=hash_secret(secret),
        )

        def add(section: Any) -> Any:
            current = dict(section or {})
            if name is not None and any(
                    v.get("name") == name and not v.get("revoked_at") for v in current.values()):
                raise InvalidRequestError(
                    f"an active token named {name!r} exists; revoke it first or pick another "
                    "--name.")
            current[token_id] = record.to_dict()
            return current

        self.registry.update_extra(SECTION, add, f"created token {record.name} ({token_id})")
        return f"{PREFIX}{token_id}_{secret}", record

    def list(self) -> list[TokenRecord]:
        authorize(Action.ADMIN, self.registry.project)
        return sorted(_records(self.registry.snapshot(fresh=True)).values(),
                      key=lambda r: r.created_at)

    def last_used(self) -> dict[str, str]:
        store = self.registry.store
        return store.token_uses() if isinstance(store, TokenUseStore) else {}

    def revoke(self, ref: str) -> TokenRecord:
        """Revoke by id or name; revoking twice is not an error."""
        authorize(Action.ADMIN, self.registry.project)
        found: dict[str, TokenRecord] = {}

        def change(section: Any) -> Any:
            current = dict(section or {})
            recs = {k: TokenRecord.from_dict(v) for k, v in current.items()}
            hits = [r for r in recs.values() if r.id == ref] or [
                r for r in recs.values() if r.name == ref and r.revoked_at is None]
            if not hits:
                names = [r.name for r in recs.values()] + list(recs)
                raise NotFoundError(
                    f"no token with id or name {ref!r}.{suggest(ref, names)} See `tureen token "
                    "list`.")
            if len(hits) > 1:
                raise InvalidRequestError(
                    f"{len(hits)} active tokens are named {ref!r}; revoke by id "
                    f"({', '.join(h.id for h in hits)}).")
            rec = hits[0]
            if rec.revoked_at is None:
                rec = TokenRecord.from_dict({**rec.to_dict(),
                                             "revoked_at": datetime.now(UTC).isoformat()})
                current[rec.id] = rec.to_dict()
            found["rec"] = rec
            return current

        self.registry.update_extra(SECTION, change, f"revoked token {ref}")
        return found["rec"]


@dataclass(frozen=True)
class _Entry:
    digest: bytes
    identity: Identity
    expires_at: float  # epoch seconds; inf: never
    revoked: bool
    #: the key of ``TokenAuthenticator._uses`` (the token id)
    use_key: str


class Unknown:
    pass


#: ``TokenAuthenticator.by_header``: a value not verified against the current snapshot
UNKNOWN: Final = Unknown()


class TokenAuthenticator:
    """Checks bearer tokens against the registry snapshot; no network call per request."""

    def __init__(self, registry: Registry, flush_seconds: float = 60.0) -> None:
        self.registry = registry
        self.flush_seconds = flush_seconds
        self._snap: RegistrySnapshot | None = None
        self._index: dict[str, _Entry] = {}
        self._last_forced = 0.0
        self._uses: dict[str, float] = {}
        self._uses_lock = threading.Lock()
        self._last_flush = time.time()
        #: tokens already checked against the current index: token -> its entry (the secret's
        #: hash is not recomputed per request; a new snapshot empties it)
        self._verified: dict[str, _Entry] = {}
        #: the same per full ``Authorization`` value (``by_header``; exact match, emptied with
        #: ``_verified``)
        self._headers: dict[str, _Entry] = {}

    @staticmethod
    def looks_like(token: str) -> bool:
        return token.startswith(PREFIX)

    def _entries(self, fresh: bool = False) -> dict[str, _Entry]:
        snap = self.registry.snapshot(fresh=fresh)
        if snap is not self._snap:
            index: dict[str, _Entry] = {}
            for rec in _records(snap).values():
                ident = Identity(
                    subject=rec.name, source="token", roles=rec.roles, projects=rec.projects,
                    names=rec.names, expires_at=rec.expires_at, token_id=rec.id)
                expires = rec.expires_at.timestamp() if rec.expires_at else float("inf")
                index[rec.id] = _Entry(bytes.fromhex(rec.secret_sha256), ident, expires,
                                       rec.revoked_at is not None, rec.id)
            self._index, self._snap, self._verified, self._headers = index, snap, {}, {}
        return self._index

    def by_header(self, authorization: str) -> Identity | Unknown | None:
        """``authenticate`` for an ``Authorization`` value whose token ``authenticate`` verified
        against the current snapshot (``header=``): its identity, or None when it is revoked or
        expired now; ``UNKNOWN`` for any other value (parse it and call ``authenticate``).

        The per-request path of every token request: the registry test is
        ``Registry.snapshot()``'s own, inline (a snapshot re-read past the cache TTL or by
        anyone else is noticed)."""
        hit = self._headers.get(authorization)
        if hit is None:
            return UNKNOWN
        registry = self.registry
        if (
            registry.cached is not self._snap
            or time.monotonic() - registry.loaded_at >= registry.cache_ttl_seconds
        ) and registry.snapshot() is not self._snap:
            return UNKNOWN
        return self._accept(hit)

    def authenticate(self, token: str, header: str | None = None) -> Identity | None:
        """The identity of a valid, unexpired, unrevoked token; None otherwise. ``header``: the
        ``Authorization`` value ``token`` came from, for ``by_header`` to know it once the
        token is verified."""
        index = self._index if self.registry.snapshot() is self._snap else self._entries()
        hit = self._verified.get(token)
        if hit is not None:
            if header is not None and len(self._headers) < 10_000:
                self._headers[header] = hit
            return self._accept(hit)
        if len(token) > MAX_TOKEN_CHARS:
            return None
        m = _TOKEN.match(token)
        if m is None:
            return None
        token_id, secret = m.group(1), m.group(2)
        entry = index.get(token_id)
        if entry is None:
            now = time.monotonic()
            if now - self._last_forced < 1.0:
                return None
            self._last_forced = now
            entry = self._entries(fresh=True).get(token_id)
            if entry is None:
                return None
        digest = hashlib.sha256(secret.encode()).digest()
        if not hmac.compare_digest(digest, entry.digest):
            return None
        if len(self._verified) < 10_000:
            self._verified[token] = entry
        if header is not None and len(self._headers) < 10_000:
            self._headers[header] = entry
        return self._accept(entry)

    def _accept(self, entry: _Entry) -> Identity | None:
        if entry.revoked:
            return None
        now = time.time()
        if entry.expires_at <= now:
            return None
        self._uses[entry.use_key] = now  # atomic under the GIL
        if now - self._last_flush >= self.flush_seconds:
            self._start_flush(now)
        return entry.identity

    def _start_flush(self, now: float) -> None:
        self._last_flush = now
        threading.Thread(target=self.flush, name="tureen-token-uses", daemon=True).start()

    def flush(self) -> None:
        """Write the last-used times gathered since the last flush beside the registry."""
        store = self.registry.store
        with self._uses_lock:
            uses, self._uses = self._uses, {}
            if not uses or not isinstance(store, TokenUseStore):
                return
            try:
                store.record_token_uses({k: datetime.fromtimestamp(v, UTC).isoformat()
                                         for k, v in uses.items()})
            except Exception as exc:  # usage times are best effort; never fail a request
                log.warning("could not record token last-used times: %s", exc)
