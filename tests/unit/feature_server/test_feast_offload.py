"""Issue 11 #9 on the Feast routes: parsing a request is proportional to the client's input,
so a body over 1 MiB is parsed in a thread, a small one inline on the event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.feast_logins import NOW, tureen_repo

from tureen.feature_server import feast_json
from tureen.store import FeatureStore
from tureen.transports.rest.feast import FeatureHandlers


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FeatureStore]:
    with FeatureStore(tureen_repo(tmp_path)) as fs:
        yield fs


def test_large_bodies_are_parsed_off_the_event_loop(store: FeatureStore,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    where: list[tuple[str, bool]] = []

    def spy(name: str) -> None:
        real = getattr(feast_json, name)

        def run(*args: Any, **kw: Any) -> Any:
            where.append((name, threading.current_thread() is threading.main_thread()))
            return real(*args, **kw)
        monkeypatch.setattr(f"tureen.transports.rest.feast.{name}", run)

    for name in ("parse_online_request", "parse_write"):
        spy(name)
    h = FeatureHandlers(store)
    when = int(NOW.timestamp())

    def read(n: int) -> bytes:
        return orjson.dumps({"features": ["logins:score"],
                             "entities": {"user_id": [f"u{i:09d}" for i in range(n)]}})

    def write(n: int) -> bytes:
        return orjson.dumps({"feature_view_name": "logins", "df": {
            "user_id": [f"u{i:09d}" for i in range(n)], "last_login": [when - 60] * n,
            "score": [0.75] * n, "event_timestamp": [when] * n}})

    async def run() -> None:
        for body in (read(2), read(100_000)):
            status, *_ = await h.online_features_reply({}, body)
            assert status == 200
        for body in (write(2), write(30_000)):
            status, _ = await h.write_to_online_store(body)
            assert status == 200

    assert len(read(100_000)) > 1 << 20 and len(write(30_000)) > 1 << 20
    asyncio.run(run())
    assert where == [("parse_online_request", True), ("parse_online_request", False),
                     ("parse_write", True), ("parse_write", False)]
