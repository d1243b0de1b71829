"""What only the Redis online store does: layout, hash tags, expiry, async reads, failures."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
import redis
from redis.crc import key_slot
from tests.integration.redis.conftest import cluster_store, need_redis_server
from tests.integration.redis.local_cluster import LocalCluster, RedisProcess, spare_ports
from tests.services import redis_project, require_redis

from tureen.backends import load_backend
from tureen.config import BackendConfig
from tureen.definitions import Entity, FeatureView, Field, FileSource
from tureen.errors import BackendUnavailableError, ConfigError
from tureen.online.encoding import decode_row
from tureen.online.keys import IntKeys, encoder_for
from tureen.online.protocol import AsyncOnlineStore
from tureen.online.redis_store import RedisOnlineStore
from tureen.types import Float64, Int64, String

pytestmark = pytest.mark.services

ACCOUNT = Entity("account", join_keys=["account_id"])
T0 = datetime(2026, 3, 1, 12, 0, 0, 654321, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")


def view(name: str, entities: tuple[Entity, ...] = (ACCOUNT,)) -> FeatureView:
    return FeatureView(name=name, entities=list(entities),
                       schema=[Field("x", Float64), Field("n", Int64)],
                       source=FileSource(f"{name}.parquet"))


def rows(ids: list[int], x: float, event: datetime = T0) -> pa.Table:
    return pa.table({
        "account_id": pa.array(ids, pa.int64()),
        "x": pa.array([x + i for i in ids], pa.float64()),
        "n": pa.array(ids, pa.int64()),
        "event_timestamp": pa.array([event] * len(ids), TS),
    })


def put(store: RedisOnlineStore, v: FeatureView, ids: list[int], x: float,
        event: datetime = T0) -> int:
    t = rows(ids, x, event)
    return store.write(v, encoder_for(v.key_fields).encode_arrow(t), t)


def keys(v: FeatureView, ids: list[int]) -> list[bytes]:
    return [encoder_for(v.key_fields).encode_mapping({"account_id": i}) for i in ids]


def xs(store: RedisOnlineStore, v: FeatureView, ids: list[int]) -> list[float | None]:
    [got] = store.read([(v, keys(v, ids))])
    return [None if r is None else decode_row(r).values["x"] for r in got]


def project() -> str:
    return redis_project(f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def local() -> Iterator[RedisOnlineStore]:
    store = RedisOnlineStore.from_config({"url": require_redis()}, Path("."), project())
    try:
        yield store
    finally:
        store.delete_views([view("a"), view("b"), view("c")])
        store.close()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server only this test talks to (so it can be killed, restarted, inspected)."""
    need_redis_server()
    [port] = spare_ports(1)
    server = RedisProcess(port, tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.kill()


# ---- configuration ----------------------------------------------------------------------------
def test_backend_table_builds_it_and_options_are_validated(tmp_path: Path) -> None:
    store = load_backend("online_store", BackendConfig.model_validate(
        {"type": "redis", "url": "redis://127.0.0.1:6379/0", "key_ttl_seconds": 60}),
        tmp_path, "proj")
    assert isinstance(store, RedisOnlineStore)
    assert isinstance(store, AsyncOnlineStore)
    store.close()
    with pytest.raises(ConfigError, match="key_ttl"):
        load_backend("online_store", BackendConfig.model_validate(
            {"type": "redis", "key_ttl": 60}), tmp_path, "proj")
    with pytest.raises(ConfigError, match="not a redis://"):
        load_backend("online_store", BackendConfig.model_validate(
            {"type": "redis", "url": "http://x:1"}), tmp_path, "proj")


def test_describe_and_errors_never_show_the_password() -> None:
    store = RedisOnlineStore.from_config(
        {"url": f"redis://user:hunter2-pw@127.0.0.1:{spare_ports(1)[0]}/0"}, Path("."), "p")
    assert "hunter2-pw" not in store.describe()
    with pytest.raises(BackendUnavailableError) as info:
        store.read([(view("a"), keys(view("a"), [1]))])
    assert "hunter2-pw" not in str(info.value)
    store.close()


# ---- layout -------------------------------------------------------------------------------------
def test_one_hash_per_entity_holds_every_view_and_is_read_with_one_hmget(
    own_server: RedisProcess,
) -> None:
    store = RedisOnlineStore.from_config({"url": own_server.url}, Path("."), "layout")
    a, b, c = view("a"), view("b"), view("c")
    for v in (a, b, c):
        put(store, v, list(range(40)), 1.0)
    raw = redis.Redis.from_url(own_server.url)
    try:
        assert raw.dbsize() == 40
        k = store.key(keys(a, [7])[0])
        assert k.startswith(b"tureen:layout:{") and k.endswith(b"}")
        assert sorted(raw.hkeys(k)) == [b"a", b"b", b"c"]
        raw.config_resetstat()
        got = store.read([(a, keys(a, list(range(40)))), (b, keys(b, [3, 3, 99])),
                          (c, keys(c, [5]))])
        assert [len(g) for g in got] == [40, 3, 1]
        assert got[1][2] is None and got[1][0] == got[1][1]
        stats = raw.info("commandstats")
        # 41 distinct entities asked for (0..39 and 99): one HMGET each, for all their views,
        # packed into one write (one round trip); no script
        assert stats["cmdstat_hmget"]["calls"] == 41
        assert set(stats) - {"cmdstat_config|resetstat", "cmdstat_info"} == {"cmdstat_hmget"}
        # One view: one HGET per distinct entity (a repeated key is asked once).
        raw.config_resetstat()
        one = store.read([(a, keys(a, [1, 2, 1, 99]))])
        assert one[0][0] == one[0][2] and one[0][3] is None and one[0][1] is not None
        stats = raw.info("commandstats")
        assert stats["cmdstat_hget"]["calls"] == 3
        assert set(stats) - {"cmdstat_config|resetstat", "cmdstat_info"} == {"cmdstat_hget"}
    finally:
        raw.close()
        store.close()


def test_hash_tag_keeps_an_entity_in_one_slot(redis_cluster: LocalCluster) -> None:
    store = cluster_store(redis_cluster, project())
    entity = keys(view("a"), [42])[0]
    slot = key_slot(store.key(entity))
    assert slot == key_slot(b"{" + entity + b"}")
    other = cluster_store(redis_cluster, project())
    assert key_slot(other.key(entity)) == slot  # the project is outside the tag
    store.close()
    other.close()


def test_cluster_spreads_entities_over_nodes_and_deletes_everywhere(
    redis_cluster: LocalCluster,
) -> None:
    store = cluster_store(redis_cluster, project())
    a, b = view("a"), view("b")
    ids = list(range(300))
    put(store, a, ids, 1.0)
    put(store, b, ids, 2.0)
    per_node = [redis.Redis(port=n.port).dbsize() for n in redis_cluster.nodes]
    assert all(count > 0 for count in per_node), per_node
    assert xs(store, a, ids) == [1.0 + i for i in ids]
    store.delete_views([a])
    assert xs(store, a, ids) == [None] * len(ids)
    assert xs(store, b, ids) == [2.0 + i for i in ids]
    store.delete_views([b])
    store.close()


def test_key_ttl_sets_an_expiry_on_every_written_hash(own_server: RedisProcess) -> None:
    store = RedisOnlineStore.from_config(
        {"url": own_server.url, "key_ttl_seconds": 3600}, Path("."), "ttl")
    a = view("a")
    put(store, a, [1, 2], 1.0)
    raw = redis.Redis.from_url(own_server.url)
    for k in keys(a, [1, 2]):
        assert 0 < raw.ttl(store.key(k)) <= 3600
    plain = RedisOnlineStore.from_config({"url": own_server.url}, Path("."), "nottl")
    put(plain, a, [1], 1.0)
    assert raw.ttl(plain.key(keys(a, [1])[0])) == -1  # no expiry unless asked for
    raw.close()
    store.close()
    plain.close()


# ---- async --------------------------------------------------------------------------------------
async def test_async_read_matches_sync_read(local: RedisOnlineStore) -> None:
    a, b = view("a"), view("b")
    put(local, a, [1, 2, 3], 10.0)
    put(local, b, [2], 20.0)
    requests: list[tuple[FeatureView, list[bytes]]] = [
        (a, keys(a, [3, 9, 1, 3])), (b, keys(b, [2])), (b, keys(b, [1]))]
    try:
        assert await local.read_async(requests) == local.read(requests)
        assert await local.read_async([(a, keys(a, [2]))]) == local.read([(a, keys(a, [2]))])
        assert await local.read_async([]) == []
        # a batch large enough to be read in a worker thread, one view and two
        many = [(a, keys(a, [i % 5 for i in range(100)]))]
        assert await local.read_async(many) == local.read(many)
        assert await local.read_async([*many, (b, keys(b, list(range(40))))]) == local.read(
            [*many, (b, keys(b, list(range(40))))])
    finally:
        await local.aclose()


async def test_async_read_reloads_scripts_after_a_restart(own_server: RedisProcess) -> None:
    store = RedisOnlineStore.from_config({"url": own_server.url}, Path("."), "arestart")
    a = view("a")
    put(store, a, [1, 2], 1.0)
    try:
        assert len((await store.read_async([(a, keys(a, [1, 2]))]))[0]) == 2
        own_server.kill()
        with pytest.raises(BackendUnavailableError):
            await store.read_async([(a, keys(a, [1, 2]))])
        own_server.start()
        assert await store.read_async([(a, keys(a, [1, 2]))]) == [[None, None]]
        put(store, a, [1, 2], 1.0)
        got = await store.read_async([(a, keys(a, [1, 2, 3]))])
        assert [None if r is None else decode_row(r).values["x"] for r in got[0]] == [
            2.0, 3.0, None]
    finally:
        await store.aclose()
        store.close()


async def test_async_read_on_a_cluster(redis_cluster: LocalCluster) -> None:
    store = cluster_store(redis_cluster, project())
    a = view("a")
    ids = list(range(100))
    put(store, a, ids, 1.0)
    try:
        got = await store.read_async([(a, keys(a, ids))])
        assert got == store.read([(a, keys(a, ids))])
        assert all(r is not None for r in got[0])
    finally:
        store.delete_views([a])
        await store.aclose()
        store.close()


# ---- failures -----------------------------------------------------------------------------------
def test_connection_loss_is_reported_and_the_next_call_reconnects(
    own_server: RedisProcess,
) -> None:
    store = RedisOnlineStore.from_config(
        {"url": own_server.url, "connect_timeout_seconds": 1}, Path("."), "loss")
    a = view("a")
    put(store, a, [1], 1.0)
    assert xs(store, a, [1]) == [2.0]  # x is the value plus the id
    assert xs(store, a, [1, 5]) == [2.0, None]  # several keys: the read script is loaded

    own_server.kill()
    with pytest.raises(BackendUnavailableError) as info:
        xs(store, a, [1])
    assert f"127.0.0.1:{own_server.port}" in str(info.value)
    assert "TUREEN_ONLINE_STORE__URL" in str(info.value)
    with pytest.raises(BackendUnavailableError, match="did not complete"):
        put(store, a, [1, 2], 2.0, T0 + timedelta(hours=1))

    own_server.start()  # same port, empty data, no cached Lua scripts
    assert xs(store, a, [1]) == [None]
    assert xs(store, a, [1, 2]) == [None, None]  # reloads the read script
    assert put(store, a, [1, 2], 3.0) == 2  # reloads the script the new server lacks
    assert xs(store, a, [1, 2]) == [4.0, 5.0]
    store.close()


def test_a_dead_cluster_node_is_reported_and_its_return_picked_up(tmp_path: Path) -> None:
    need_redis_server()
    cluster = LocalCluster(tmp_path / "cluster").start()
    store = cluster_store(cluster, "nodeloss", connect_timeout_seconds=1,
                          socket_timeout_seconds=2)
    try:
        a = view("a")
        ids = list(range(60))
        put(store, a, ids, 1.0)
        victim = cluster.nodes[1]
        victim.kill()
        with pytest.raises(BackendUnavailableError, match="Redis Cluster"):
            xs(store, a, ids)  # 60 entities: some live on the dead node
        victim.start()  # same port and nodes.conf: it rejoins with its slots
        cluster.wait_ok(30.0)
        got = xs(store, a, ids)  # the restarted node kept no data (no persistence here)
        assert all(g in (None, 1.0 + i) for g, i in zip(got, ids, strict=True))
        assert None in got and any(g is not None for g in got)
        put(store, a, ids, 2.0)
        assert xs(store, a, ids) == [2.0 + i for i in ids]
    finally:
        store.close()
        cluster.stop()


def test_killed_client_connections_reconnect_transparently(own_server: RedisProcess) -> None:
    store = RedisOnlineStore.from_config({"url": own_server.url}, Path("."), "kick")
    a = view("a")
    put(store, a, [1, 2], 1.0)
    raw = redis.Redis.from_url(own_server.url)
    raw.client_setname("test-admin")
    for c in raw.client_list():
        if c["name"] != "test-admin":
            raw.client_kill_filter(_id=c["id"])
    assert xs(store, a, [1, 2]) == [2.0, 3.0]
    raw.close()
    store.close()


def test_a_write_the_server_refuses_half_way_is_not_reported_as_success(
    own_server: RedisProcess,
) -> None:
    raw = redis.Redis.from_url(own_server.url)
    raw.config_set("maxmemory", "3mb")
    raw.config_set("maxmemory-policy", "noeviction")
    store = RedisOnlineStore.from_config(
        {"url": own_server.url, "write_batch_size": 1000}, Path("."), "oom")
    a = view("a")
    with pytest.raises(BackendUnavailableError, match="did not complete"):
        put(store, a, list(range(100_000)), 1.0)
    stored = raw.dbsize()
    assert 0 < stored < 100_000  # it really failed part-way
    raw.close()
    store.close()


def test_lua_compare_is_bytewise_whatever_the_sign_and_size(local: RedisOnlineStore) -> None:
    a = view("a")
    before_epoch = datetime(1960, 1, 1, tzinfo=UTC)
    put(local, a, [1], 1.0, before_epoch)
    put(local, a, [1], 2.0, before_epoch - timedelta(microseconds=1))  # older: refused
    assert xs(local, a, [1]) == [2.0]  # x is the value plus the id
    put(local, a, [1], 5.0, T0)  # crosses the epoch: newer, accepted
    assert xs(local, a, [1]) == [6.0]
    put(local, a, [1], 7.0, T0 - timedelta(microseconds=1))
    assert xs(local, a, [1]) == [6.0]


def test_multi_key_entities_with_string_keys(local: RedisOnlineStore) -> None:
    user = Entity("user", join_keys=["user_id"], dtype=String)
    pair = FeatureView(name="c", entities=[ACCOUNT, user], schema=[Field("x", Float64)],
                       source=FileSource("c.parquet"))
    t = pa.table({"account_id": pa.array([1, 1], pa.int64()),
                  "user_id": ["{braces}", "a}b{"],
                  "x": pa.array([1.5, 2.5], pa.float64()),
                  "event_timestamp": pa.array([T0, T0], TS)})
    enc = encoder_for(pair.key_fields)
    local.write(pair, enc.encode_arrow(t), t)
    got = local.read([(pair, enc.encode_arrow(t))])
    assert [decode_row(r).values["x"] for r in got[0] if r is not None] == [1.5, 2.5]


def test_integer_keys_read_like_their_key_bytes(local: RedisOnlineStore) -> None:
    """A batch of integer keys (``IntKeys``, packed from the int64 array) reads exactly what
    the same keys as bytes read: distinct, repeated, missing, negative and extreme ids."""
    a = view("a")
    ids = [-(2**63), -5, 0, 7, 2**63 - 1, *range(100, 140)]
    put(local, a, ids, 1.0)
    enc = encoder_for(a.key_fields)
    for probe in (ids, [*ids, 9, 10, 11], [7, 0, 7, -5, 2**63 - 1, *range(95, 130), 0, 9],
                  list(range(100, 108))):
        int_keys = IntKeys.of(probe, enc)
        assert isinstance(int_keys, IntKeys)
        assert local.read([(a, int_keys)]) == local.read([(a, keys(a, probe))])
        assert xs(local, a, probe) == [1.0 + i if i in ids else None for i in probe]


def test_read_with_no_keys(local: RedisOnlineStore) -> None:
    assert local.read([(view("a"), [])]) == [[]]
    assert asyncio.iscoroutinefunction(local.read_async)


def test_a_flushed_script_cache_is_reloaded_and_error_replies_keep_their_type(
    own_server: RedisProcess,
) -> None:
    """Replies of a packed round trip are parsed apart from redis-py's own reader: an error
    reply still becomes the exception redis-py raises (NOSCRIPT -> NoScriptError, which the
    write answers by loading the script again)."""
    store = RedisOnlineStore.from_config({"url": own_server.url}, Path("."), "flushed")
    a = view("a")
    put(store, a, [1, 2], 1.0)
    raw = redis.Redis.from_url(own_server.url)
    raw.script_flush()
    put(store, a, [1, 2, 3], 5.0, T0 + timedelta(seconds=1))
    assert xs(store, a, [3, 1, 2, 4]) == [8.0, 6.0, 7.0, None]
    raw.close()
    store.close()
