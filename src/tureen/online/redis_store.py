"""RedisOnlineStore: the online store for teams that outgrow one machine (Redis or Redis Cluster).

Layout: one hash per entity key and project, ``<prefix>:<project>:{<entity key>}``, with one
field per feature view holding the row bytes of :mod:`tureen.online.encoding`. The ``{...}``
hash tag puts everything about one entity in one cluster slot, so a read of every view of
an entity is one ``HMGET`` on one node. Keys are the canonical bytes of
:mod:`tureen.online.keys`; values are never re-encoded here.

- read: every (view, key) of one call goes out in one round trip, packed by hand
  (:mod:`tureen.online.redis_wire`): one ``HGET`` (one view) or ``HMGET`` (several) per entity;
  on a cluster, redis-py's pipeline sends them to each node together.
- write: batches of rows per round trip, each script call storing hundreds of rows, a row
  only when its ``(event_ts, created_ts)`` (bytes 1..16 of the row, which compare bytewise in
  that order) is not smaller than the stored one's, atomically on the server.
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
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import numpy as np
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
from tureen.online.keys import IntKeys
from tureen.online.protocol import ReadRequest, StoredRow
from tureen.online.redis_views import as_block, assemble_views, views_of_same_keys
from tureen.online.redis_wire import (
    Packed,
    pack,
    pack_keyed,
    pack_rows,
    roundtrip,
    roundtrip_async,
)

# KEYS: entity hashes; ARGV[1] key TTL in seconds (0: none); ARGV[2] view (hash field);
# ARGV[2 + i] the row for KEYS[i]. Stores each row unless the stored one is newer; returns how
# many were stored. Rows compare by bytes 2..17 (Lua is 1-based): (event_ts, created_ts),
# big-endian with the sign bit flipped. Bytes are compared one by one: Lua's string `<`
# follows the locale. An exact tie stores the new row (a later write wins).
_WRITE_SCRIPT = """
local ttl, field, stored = tonumber(ARGV[1]), ARGV[2], 0
for i = 1, #KEYS do
  local new = ARGV[i + 2]
  local old = redis.call('HGET', KEYS[i], field)
  local newer = true
  if old then
    for j = 2, 17 do
      local a, b = string.byte(new, j), string.byte(old, j)
      if a ~= b then
        newer = a > b
        break
      end
    end
  end
  if newer then
    redis.call('HSET', KEYS[i], field, new)
    if ttl > 0 then redis.call('EXPIRE', KEYS[i], ttl) end
    stored = stored + 1
  end
end
return stored
"""
# Rows per script call: large enough that the call's overhead vanishes, small enough that
# one call never blocks the server for long (about a millisecond).
_SCRIPT_ROWS = 500
# From this many integer keys on, a one-view read packs its commands with numpy (pack_rows).
_ROWS_FROM = 16
# From this many keys on, an async read runs the sync one in a worker thread (read_async).
_ASYNC_IN_THREAD = 32

_SCRIPTS = {"write": _WRITE_SCRIPT}

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
            # RESP2 (unless the URL asks for ?protocol=3): replies of a packed round trip
            # are then parsed by one hiredis reader (redis_wire), with no push messages.
            return redis.Redis.from_url(
                self.urls[0], retry=Retry(ExponentialBackoff(cap=0.2, base=0.01), 2),
                protocol=2, **kw
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
                batch = [prefix + b"{" + k + b"}" for k in keys[start:start + size]]
                rows_ = values[start:start + size]
                try:
                    answers = self._write_batch(sha, batch, rows_, field, ttl)
                except NoScriptError:  # the server restarted or its script cache was flushed
                    sha = self._script_sha(reload=True)
                    answers = self._write_batch(sha, batch, rows_, field, ttl)
                except ResponseError as exc:  # e.g. OOM (maxmemory) or a read-only replica
                    raise BackendUnavailableError(
                        f"{self.describe()} refused part of the write of {view.name!r}: {exc}."
                        f"{after} Free memory on the server (maxmemory) or point "
                        "online_store.url at a writable primary."
                    ) from exc
                stored += sum(int(a) for a in answers)
        return stored

    def _write_batch(self, sha: str, keys: Sequence[bytes], rows: Sequence[bytes],
                     field: bytes, ttl: int) -> list[Any]:
        """One round trip storing ``rows`` under ``keys``: script calls of ``_SCRIPT_ROWS``
        keys each (on a cluster one key per call, as a call's keys must share a slot)."""
        if self.cluster:
            return self._pipeline([("EVALSHA", sha, 1, k, ttl, field, v)
                                   for k, v in zip(keys, rows, strict=True)])
        head = [b"EVALSHA", sha.encode()]
        tail = [str(ttl).encode(), field]
        commands = [
            [*head, str(len(keys[i:i + _SCRIPT_ROWS])).encode(), *keys[i:i + _SCRIPT_ROWS],
             *tail, *rows[i:i + _SCRIPT_ROWS]]
            for i in range(0, len(keys), _SCRIPT_ROWS)
        ]
        return roundtrip(self._client, pack(commands))

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
        """One command per distinct entity key (an ``HGET`` when one view is read, else an
        ``HMGET`` of all its views at once), and how to place the answers."""
        prefix = self._prefix
        if len(requests) == 1:
            view, keys = requests[0]
            unique = list(dict.fromkeys(keys))
            f = view.name.encode()
            return ([(b"HGET", prefix + b"{" + k + b"}", f) for k in unique],
                    _assemble_one(keys, unique))
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
        order = {k: n for n, k in enumerate(fields_of)}
        commands: list[Command] = [
            (b"HMGET", prefix + b"{" + k + b"}", *fs) for k, fs in fields_of.items()]

        def assemble(replies: list[Any]) -> list[list[StoredRow | None]]:
            out: list[list[StoredRow | None]] = [[None] * len(keys) for _, keys in requests]
            for k, i, j, f in places:
                out[i][j] = replies[order[k]][fields_of[k][f]]
            return out

        return commands, assemble

    def _packed(self, requests: Sequence[ReadRequest]) -> tuple[Packed, _Assemble]:
        """``_plan``'s commands packed for one round trip (one view: packed in one join)."""
        if len(requests) == 1:
            view, keys = requests[0]
            around, tail = (self._prefix + b"{", b"}"), (view.name.encode(),)
            split = keys.split() if isinstance(keys, IntKeys) and len(keys) >= _ROWS_FROM else None
            if split is not None:  # keys of one integer: packed from the int64 array
                lead, values = split
                around = (around[0] + lead, around[1])
                ints = cast(IntKeys, keys).array
                ordered = np.sort(ints)
                if bool((ordered[1:] != ordered[:-1]).all()):  # distinct (the usual case)
                    return pack_rows(b"HGET", values, around, tail), _as_read
                _, first, inverse = np.unique(ints, return_index=True, return_inverse=True)
                return (pack_rows(b"HGET", values[first], around, tail),
                        _spread(inverse.tolist()))
            unique = list(dict.fromkeys(keys))
            packed = pack_keyed(b"HGET", unique, around, tail)
            return packed, _assemble_one(keys, unique)
        if views_of_same_keys(requests):
            # a feature service: one HMGET of every view per distinct key, packed in one join
            keys = requests[0][1]
            fields = tuple(view.name.encode() for view, _ in requests)
            unique = list(dict.fromkeys(keys))
            return (pack_keyed(b"HMGET", unique, (self._prefix + b"{", b"}"), fields),
                    assemble_views(keys, unique, len(fields)))
        commands, assemble = self._plan(requests)
        return pack(commands), assemble

    def read(self, requests: Sequence[ReadRequest]) -> Sequence[Sequence[StoredRow | None]]:
        """Every (view, key) of the call in one round trip: the commands are packed into one
        buffer (``redis_wire``); on a cluster, redis-py's pipeline splits them per node."""
        if not any(keys for _, keys in requests):
            return [[] for _ in requests]
        with self._guard("reading from the online store"):
            if self.cluster:
                commands, assemble = self._plan(requests)
                return assemble(self._pipeline([(c[0].decode(), *c[1:]) for c in commands]))
            packed, assemble = self._packed(requests)
            replies = roundtrip(self._client, packed)
            return as_block(requests, replies) or assemble(replies)

    async def read_async(
        self, requests: Sequence[ReadRequest]
    ) -> Sequence[Sequence[StoredRow | None]]:
        """``read`` for an event loop. A batch of many keys runs the sync ``read`` in a worker
        thread: redis.asyncio awaits each reply apart (~2-3 µs each), which costs more than
        the thread hop from about 32 replies on."""
        if not any(keys for _, keys in requests):
            return [[] for _ in requests]
        if not self.cluster and sum(len(keys) for _, keys in requests) >= _ASYNC_IN_THREAD:
            return await asyncio.to_thread(self.read, requests)
        client = self._async_client()
        with self._guard("reading from the online store"):
            if self.cluster:
                commands, assemble = self._plan(requests)
                pipe = client.pipeline(transaction=False)
                for c in commands:
                    pipe.execute_command(c[0].decode(), *c[1:])
                return assemble(await pipe.execute())
            packed, assemble = self._packed(requests)
            replies = await roundtrip_async(client, packed)
            return as_block(requests, replies) or assemble(replies)

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


def _assemble_one(keys: Sequence[bytes], unique: list[bytes]) -> _Assemble:
    """Placing the replies of one view's distinct keys back in request order."""

    def assemble(replies: list[Any]) -> list[list[StoredRow | None]]:
        if len(unique) == len(keys):
            return [replies]
        found = dict(zip(unique, replies, strict=True))
        return [[found[k] for k in keys]]

    return assemble


def _as_read(replies: list[Any]) -> list[list[StoredRow | None]]:
    return [replies]


def _spread(where: list[int]) -> _Assemble:
    """Placing the replies of distinct keys back in request order: key ``i``'s reply is
    reply ``where[i]``."""

    def assemble(replies: list[Any]) -> list[list[StoredRow | None]]:
        return [[replies[j] for j in where]]

    return assemble


def _glob_escape(raw: bytes) -> bytes:
    out = bytearray()
    for b in raw:
        if b in b"*?[]\\":
            out += b"\\"
        out.append(b)
    return bytes(out)
