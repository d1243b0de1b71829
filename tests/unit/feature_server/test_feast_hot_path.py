"""The /get-online-features hot path (issue 11, "Performance must hold"): what depends only on
the app's routes or the registry snapshot is worked out once, not per request. Two such
per-request costs cost the feature server ~15% of its throughput: a runtime ``Protocol``
isinstance check choosing the route table's error renderer, and a walk over every entity of
the registry (building their key ``Field``s) to find String join keys. Checked by the
functions a warm request calls, not by timing."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import orjson
import pytest
from tests.feast_logins import tureen_repo

from tureen.serving import DataPlane, ModelRepository, VersionPolicy
from tureen.store import FeatureStore
from tureen.transports.rest import build_app
from tureen.transports.rest.feast import feature_routes

BODY = orjson.dumps(
    {"features": ["logins:score", "logins:last_login"], "entities": {"user_id": [1001, "1003"]}}
)  # a number for a String key


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FeatureStore]:
    with FeatureStore(tureen_repo(tmp_path)) as fs:
        yield fs


def called_during(fn: Any) -> set[str]:
    """Qualified names (``module:qualname``) of the Python functions ``fn()`` calls."""
    seen: set[str] = set()

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            seen.add(f"{frame.f_globals.get('__name__')}:{frame.f_code.co_qualname}")

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return seen


def test_a_warm_feast_read_repeats_no_per_snapshot_work(store: FeatureStore) -> None:
    dp = DataPlane(ModelRepository(None, VersionPolicy("latest")))
    app = build_app(dp, [*feature_routes(store)])
    loop = asyncio.new_event_loop()

    def one() -> Any:
        handler = app.resolve("POST", "/get-online-features")
        assert handler is not None
        return loop.run_until_complete(handler({"content-type": "application/json"}, BODY))

    try:
        first = one()  # caches fill here
        assert first[0] == 200, first
        answer = orjson.loads(first[1])
        assert answer["results"][0]["values"] == ["1001", "1003"]  # the number became text
        seen = called_during(one)
    finally:
        loop.close()
        dp.close()
    assert "tureen.transports.rest.feast:FeatureHandlers.online_features_reply" in seen
    assert not {s for s in seen if s.startswith("typing:_ProtocolMeta")}, seen
    assert "tureen.definitions.field:Entity.key_fields" not in seen
