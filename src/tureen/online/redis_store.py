"""RedisOnlineStore: the online store for teams that outgrow one machine (Redis or Redis Cluster).

Layout: one hash per entity key and project, ``<prefix>:<project>:{<entity key>}``, with one
field per feature view holding the row bytes of :mod:`tureen.online.encoding`. The ``{...}``
hash tag puts everything about one entity in one cluster slot, so a read of every view of
an entity is one ``HMGET`` on one node. Keys are the canonical bytes of
:mod:`tureen.online.keys`; values are never re-encoded here.

- read: every (view, key) of one call goes out in a single pipeline (one round trip; on a
  cluster, one per node, sent together).
- write: pipelined batches of a Lua script that stores a row only when its
  ``(event_ts, created_ts)`` (bytes 1..16 of the row, which compare bytewise in that order)
  is not smaller than the stored one's, atomically on the server.
- errors: a lost connection raises BackendUnavailableError; redis-py reconnects on the next
  call. A write that fails part-way is reported as failed, never as success (re-running it
  is safe: rows never replace newer ones).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa
import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import (
    ClusterError,
    NoScriptError,
    RedisClusterException,
    ResponseError,
)
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)
from redis.retry import Retry

from tureen.backend_options import RedisOptions
from tureen.definitions import FeatureView
from tureen.errors import BackendUnavailableError, InvalidRequestError
from tureen.online.encoding import encode_rows
from tureen.online.protocol import ReadRequest, StoredRow

# KEYS[1] the entity hash; ARGV[1] key TTL in seconds (0: none); ARGV[2] view; ARGV[3] row.
# Rows compare by bytes 2..17 (Lua is 1-based): (event_ts, created_ts), big-endian with the
# sign bit flipped. Bytes are compared one by one: Lua's string `<` follows the locale.
_WRITE_SCRIPT = """
local old = redis.call('HGET', KEYS[1], ARGV[2])
local new = ARGV[3]
if old then
  for i = 2, 17 do
    local a, b = string.byte(new, i), string.byte(old, i)
    if a ~= b then
      if a < b then return 0 end
      break
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[2], new)
local ttl = tonumber(ARGV[1])
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
return 1
"""

# KEYS: entity hashes; ARGV: for each key, a field count then its fields. Returns every
# HMGET reply, flattened (false where a field is absent): many entities in one command.
_READ_SCRIPT = """
local out, a = {}, 1
for i = 1, #KEYS do
  local n = tonumber(ARGV[a])
  local r = redis.call('HMGET', KEYS[i], unpack(ARGV, a + 1, a + n))
  for j = 1, n do out[#out + 1] = r[j] end
  a = a + n + 1
end
return out
"""
_SCRIPTS = {"write": _WRITE_SCRIPT, "read": _READ_SCRIPT}

_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ClusterError, RedisClusterException)
Command = tuple[Any, ...]
_Assemble = Callable[[list[Any]], list[list[StoredRow | None]]]


def redact(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    user = f"{parts.username}:***@" if parts.username else ":***@"
    netloc = f"{user}{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RedisOnlineStore:
    def __init__(self, options: RedisOptions, project: str) -> None:
        self.options = options
        self.project = project
        self.urls = [options.url] if isinstance(options.url, str) else list(options.url)
        self.cluster = options.cluster or isinstance(options.url, list)
        self._prefix = f"{options.key_prefix}:{project}:".encode()
        self._ttl = options.key_ttl_seconds or 0
        self._client: Any = self._make_client()
        self._shas: dict[str, str] = {}
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )

    @classmethod
    def from_config(
        cls, options: Mapping[str, Any], repo_path: Path, project: str
    ) -> RedisOnlineStore:
        return cls(RedisOptions.model_validate(dict(options)), project)

    def describe(self) -> str:
        kind = "Redis Cluster" if self.cluster else "Redis"
        return f"{kind} at {', '.join(redact(u) for u in self.urls)}"

    # ---- materialization markers (KeepsMarkers) ------------------------------------------
    def location(self) -> str:
        return f"{self.describe()} (key prefix {self.options.key_prefix!r})"

    @property
    def _marker_key(self) -> bytes:
        # entity keys carry a {hash tag}; this one cannot collide with them, and the
        # project scan of delete_views drops a view's field here too
        return self._prefix + b"__markers__"

    def markers(self) -> dict[str, str]:
        with self._guard("reading materialization markers"):
            raw = self._client.hgetall(self._marker_key)
        return {k.decode(): v.decode() for k, v in raw.items()}

    def set_marker(self, view: str, token: str) -> None:
        with self._guard("writing a materialization marker"):
            self._client.hset(self._marker_key, view, token)

    # ---- clients ------------------------------------------------------------------------
    def _common(self) -> dict[str, Any]:
        o = self.options
        kw: dict[str, Any] = {
            "socket_connect_timeout": o.connect_timeout_seconds,
            "socket_timeout": o.socket_timeout_seconds,
        }
        if o.max_connections is not None:
            kw["max_connections"] = o.max_connections
        return kw

    def _node_addresses(self) -> list[tuple[str, int]]:
        return [(urlsplit(u).hostname or "localhost", urlsplit(u).port or 6379) for u in self.urls]

    def _make_client(self) -> Any:
        kw = self._common()
        if not self.cluster:
            return redis.Redis.from_url(
                self.urls[0], retry=Retry(ExponentialBackoff(cap=0.2, base=0.01), 2), **kw
            )
        first = urlsplit(self.urls[0])
        nodes = [
            ClusterNode(host, port)  # type: ignore[no-untyped-call]
            for host, port in self._node_addresses()
        ]
        return RedisCluster(
            startup_nodes=nodes, username=first.username, password=first.password,
            ssl=first.scheme == "rediss", **kw,
        )

    def _make_async_client(self) -> Any:
        kw = self._common()
        if not self.cluster:
            # redis.asyncio needs its own Retry (a sync one warns and is not awaited).
            return aioredis.Redis.from_url(
                self.urls[0], retry=AsyncRetry(ExponentialBackoff(cap=0.2, base=0.01), 2), **kw
            )
        first = urlsplit(self.urls[0])
        kw.pop("max_connections", None)
        nodes = [aiocluster.ClusterNode(host, port) for host, port in self._node_addresses()]
        return aiocluster.RedisCluster(
            startup_nodes=nodes, username=first.username, password=first.password,
            ssl=first.scheme == "rediss", **kw,
        )

    def _async_client(self) -> Any:
        # redis.asyncio connections belong to the event loop that opened them.
        loop = asyncio.get_running_loop()
        client = self._aclients.get(loop)
        if client is None:
            client = self._aclients[loop] = self._make_async_client()
        return client

    @contextmanager
    def _guard(self, doing: str, after: str = "") -> Iterator[None]:
        try:
            yield
        except _UNAVAILABLE as exc:
            raise BackendUnavailableError(
                f"{doing} failed: cannot reach {self.describe()} ({type(exc).__name__}: {exc})."
                f"{after} Check that Redis is running and that online_store.url in tureen.yaml "
                "(or TUREEN_ONLINE_STORE__URL) points at it; the next call reconnects."
            ) from exc

    def key(self, entity_key: bytes) -> bytes:
        """The Redis key of one entity's hash."""
        return self._prefix + b"{" + entity_key + b"}"

    # ---- writes -------------------------------------------------------------------------
    def write(self, view: FeatureView, keys: Sequence[bytes], rows: pa.Table) -> int:
        self.write_counted(view, keys, rows)
        return len(keys)

    def write_counted(self, view: FeatureView, keys: Sequence[bytes], rows: pa.Table) -> int:
        """``write``; returns how many rows were stored (the script answers 0 for a row
        older than the stored one)."""
        if len(keys) != rows.num_rows:
            raise InvalidRequestError(
                f"write to {view.name!r}: {len(keys)} keys for {rows.num_rows} rows."
            )
        if not keys:
            return 0
        values = encode_rows(view.features, rows).values
        field, ttl, prefix = view.name.encode(), self._ttl, self._prefix
        size = self.options.write_batch_size
        after = (f" The write of {len(keys)} rows of {view.name!r} did not complete (some rows "
                 "may be stored; re-running it is safe, as rows never replace newer ones).")
        stored = 0
        with self._guard(f"writing {view.name!r} to the online store", after):
            sha = self._script_sha()
            for start in range(0, len(keys), size):
                commands = [
                    ("EVALSHA", sha, 1, prefix + b"{" + k + b"}", ttl, field, v)
                    for k, v in zip(keys[start:start + size], values[start:start + size],
                                    strict=True)
                ]
                try:
                    answers = self._pipeline(commands)
                except NoScriptError:  # the server restarted or its script cache was flushed
                    sha = self._script_sha(reload=True)
                    answers = self._pipeline([(c[0], sha, *c[2:]) for c in commands])
                except ResponseError as exc:  # e.g. OOM (maxmemory) or a read-only replica
                    raise BackendUnavailableError(
                        f"{self.describe()} refused part of the write of {view.name!r}: {exc}."
                        f"{after} Free memory on the server (maxmemory) or point "
                        "online_store.url at a writable primary."
                    ) from exc
                stored += sum(1 for a in answers if a == 1)
        return stored

    def _script_sha(self, script: str = "write", reload: bool = False) -> str:
        sha = None if reload else self._shas.get(script)
        if sha is None:
            loaded = self._client.script_load(_SCRIPTS[script])
            sha = self._shas[script] = loaded if isinstance(loaded, str) else loaded.decode()
        return sha

    def _pipeline(self, commands: Sequence[Command]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for c in commands:
            pipe.execute_command(*c)
        result: list[Any] = pipe.execute()
        return result

    # ---- reads --------------------------------------------------------------------------
    def _plan(self, requests: Sequence[ReadRequest]) -> tuple[list[Command], _Assemble]:
        """One HMGET per distinct entity key (all its views at once), and how to place the
        answers; with several keys on one server, the HMGETs become a single script call."""
        fields_of: dict[bytes, dict[bytes, int]] = {}
        places: list[tuple[bytes, int, int, bytes]] = []
        for i, (view, keys) in enumerate(requests):
            f = view.name.encode()
            for j, k in enumerate(keys):
                slot = fields_of.get(k)
                if slot is None:
                    slot = fields_of[k] = {}
                if f not in slot:
                    slot[f] = len(slot)
                places.append((k, i, j, f))
        prefix = self._prefix
        order = {k: n for n, k in enumerate(fields_of)}
        commands: list[Command] = [
            ("HMGET", prefix + b"{" + k + b"}", *fs) for k, fs in fields_of.items()
        ]

        def assemble(replies: list[Any]) -> list[list[StoredRow | None]]:
            out: list[list[StoredRow | None]] = [[None] * len(keys) for _, keys in requests]
            for k, i, j, f in places:
                out[i][j] = replies[order[k]][fields_of[k][f]]
            return out

        return commands, assemble

    def _multi_get(self, commands: Sequence[Command], sha: str) -> Command:
        argv: list[Any] = []
        for c in commands:
            argv.append(len(c) - 2)
            argv.extend(c[2:])
        return ("EVALSHA", sha, len(commands), *[c[1] for c in commands], *argv)

    def read(self, requests: Sequence[ReadRequest]) -> list[list[StoredRow | None]]:
        commands, assemble = self._plan(requests)
        if not commands:
            return [[] for _ in requests]
        with self._guard("reading from the online store"):
            if len(commands) == 1:
                return assemble([self._client.execute_command(*commands[0])])
            if self.cluster:  # keys live on several nodes: one pipeline, split per node
                return assemble(self._pipeline(commands))
            try:
                flat = self._client.execute_command(
                    *self._multi_get(commands, self._script_sha("read")))
            except NoScriptError:
                flat = self._client.execute_command(
                    *self._multi_get(commands, self._script_sha("read", reload=True)))
            return assemble(_regroup(flat, commands))

    async def read_async(self, requests: Sequence[ReadRequest]) -> list[list[StoredRow | None]]:
        commands, assemble = self._plan(requests)
        if not commands:
            return [[] for _ in requests]
        client = self._async_client()
        with self._guard("reading from the online store"):
            if len(commands) == 1:
                return assemble([await client.execute_command(*commands[0])])
            if self.cluster:
                pipe = client.pipeline(transaction=False)
                for c in commands:
                    pipe.execute_command(*c)
                return assemble(await pipe.execute())
            sha = self._shas.get("read")
            try:
                if sha is None:
                    raise NoScriptError("not loaded yet")
                flat = await client.execute_command(*self._multi_get(commands, sha))
            except NoScriptError:
                loaded = await client.script_load(_SCRIPTS["read"])
                sha = self._shas["read"] = loaded if isinstance(loaded, str) else loaded.decode()
                flat = await client.execute_command(*self._multi_get(commands, sha))
            return assemble(_regroup(flat, commands))

    # ---- maintenance --------------------------------------------------------------------
    def _project_keys(self) -> Iterator[bytes]:
        pattern = _glob_escape(self._prefix) + b"*"
        yield from self._client.scan_iter(match=pattern, count=1000)

    def delete_views(self, views: Sequence[FeatureView]) -> None:
        fields = [v.name.encode() for v in views]
        if not fields:
            return
        with self._guard("deleting views from the online store"):
            batch: list[Command] = []
            for k in self._project_keys():
                batch.append(("HDEL", k, *fields))
                if len(batch) >= self.options.write_batch_size:
                    self._pipeline(batch)
                    batch = []
            if batch:
                self._pipeline(batch)

    def ping(self) -> bool:
        with self._guard("pinging the online store"):
            return bool(self._client.ping())

    async def aclose(self) -> None:
        """Close the async client of the running event loop (servers call it on shutdown)."""
        client = self._aclients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    def close(self) -> None:
        self._client.close()
        for loop, client in list(self._aclients.items()):
            if loop.is_closed():
                continue
            if loop.is_running():
                asyncio.run_coroutine_threadsafe(client.aclose(), loop)
            else:
                loop.run_until_complete(client.aclose())
        self._aclients.clear()

    def __enter__(self) -> RedisOnlineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _regroup(flat: list[Any], commands: Sequence[Command]) -> list[list[Any]]:
    """The multi-get script's flat reply cut back into one list per HMGET."""
    out, pos = [], 0
    for c in commands:
        n = len(c) - 2
        out.append(flat[pos:pos + n])
        pos += n
    return out


def _glob_escape(raw: bytes) -> bytes:
    out = bytearray()
    for b in raw:
        if b in b"*?[]\\":
            out += b"\\"
        out.append(b)
    return bytes(out)
