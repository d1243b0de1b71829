"""Backends the OnlineStore contract suite runs against.

To add a backend, append a factory to ``STORE_FACTORIES``: a callable taking pytest's
``tmp_path`` and a unique project name and returning a fresh store (skip inside it, e.g.
with ``tests.services.require_redis()``, when its service is unreachable).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tureen.online.protocol import OnlineStore
from tureen.online.sqlite_store import SqliteOnlineStore

StoreFactory = Callable[[Path, str], Any]


def sqlite_store(tmp_path: Path, project: str) -> OnlineStore:
    return SqliteOnlineStore.from_config({"path": "data/online.db"}, tmp_path, project)


def redis_store(tmp_path: Path, project: str) -> OnlineStore:
    from tests.services import redis_project, require_redis

    from tureen.online.redis_store import RedisOnlineStore

    redis_project(project)

    return RedisOnlineStore.from_config({"url": require_redis()}, tmp_path, project)


STORE_FACTORIES: list[Any] = [
    pytest.param(sqlite_store, id="sqlite"),
    pytest.param(redis_store, id="redis", marks=pytest.mark.services),
]


@pytest.fixture(params=STORE_FACTORIES)
def store_factory(request: pytest.FixtureRequest) -> StoreFactory:
    factory: StoreFactory = request.param
    return factory


@pytest.fixture
def store(store_factory: StoreFactory, tmp_path: Path, request: pytest.FixtureRequest
          ) -> Iterator[OnlineStore]:
    project = f"contract_{uuid.uuid4().hex[:12]}"
    s: OnlineStore = store_factory(tmp_path, project)
    try:
        yield s
    finally:
        s.close()
