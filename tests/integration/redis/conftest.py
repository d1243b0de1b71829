"""A local 3-node Redis Cluster for this folder, started once and stopped at the end."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.redis.local_cluster import LocalCluster, redis_server_binary
from tests.services import REQUIRED

from tureen.online.redis_store import RedisOnlineStore


def need_redis_server() -> None:
    if redis_server_binary() is None:
        msg = "redis-server is not installed (apt-get install redis-server)"
        if REQUIRED:
            pytest.fail(msg + " (TUREEN_REQUIRE_SERVICES=1, so this is a failure)")
        pytest.skip(msg)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    need_redis_server()
    cluster = LocalCluster(tmp_path_factory.mktemp("redis-cluster")).start()
    try:
        yield cluster
    finally:
        cluster.stop()


def cluster_store(cluster: LocalCluster, project: str, **options: object) -> RedisOnlineStore:
    return RedisOnlineStore.from_config({"url": cluster.urls, **options}, Path("."), project)


@pytest.fixture
def store_factory(redis_cluster: LocalCluster) -> object:
    """The contract suite's factory signature: (tmp_path, project) -> store."""
    return lambda tmp_path, project: cluster_store(redis_cluster, project)


@pytest.fixture
def store(redis_cluster: LocalCluster) -> Iterator[RedisOnlineStore]:
    s = cluster_store(redis_cluster, f"contract_{uuid.uuid4().hex[:12]}")
    try:
        yield s
    finally:
        s.close()
