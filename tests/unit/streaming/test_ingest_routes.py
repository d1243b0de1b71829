"""The ingestion routes in the REST app: ``write_features`` is authorized on
``<project>/<source>`` by the service (a refused caller writes nothing, and learns nothing
about which sources exist), ``?wait=`` reaches the service on both entries of the app, and
the app closes the routes (flushing HTTP ingestion) when the server stops."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tureen import FeatureStore
from tureen.errors import PermissionDeniedError
from tureen.serving import DataPlane
from tureen.serving.context import RequestContext
from tureen.serving.guard import GuardChain
from tureen.transports.rest import build_app
from tureen.transports.rest.app import RestApp
from tureen.transports.rest.feast import feature_routes

FEATURES = """
from tureen import Entity, Field, FileSource, Float64, Int64, PushSource, StreamFeatureView

user = Entity(name="user", join_keys=["user_id"], dtype=Int64)
clicks = PushSource(name="clicks", batch_source=FileSource(path="data/clicks/"))
secret = PushSource(name="secret", batch_source=FileSource(path="data/secret/"))
last_click = StreamFeatureView(name="last_click", entities=[user], source=clicks,
                               schema=[Field("price", Float64)])
last_secret = StreamFeatureView(name="last_secret", entities=[user], source=secret,
                                schema=[Field("price", Float64)])
"""


class Writers:
    """Allows write_features on clicks only; records every decision it was asked for."""

    def __init__(self, project: str) -> None:
        self.allowed = f"{project}/clicks"
        self.asked: list[tuple[str, str]] = []

    def check(self, ctx: RequestContext, action: str, resource: str) -> None:
        self.asked.append((action, resource))
        if resource != self.allowed:
            raise PermissionDeniedError(f"may not {action} on this resource")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FeatureStore]:
    (tmp_path / "tureen.yaml").write_text("project: routes\n")
    (tmp_path / "features.py").write_text(textwrap.dedent(FEATURES))
    s = FeatureStore(tmp_path)
    s.apply()
    yield s
    s.close()


@pytest.fixture
def app(store: FeatureStore) -> Iterator[tuple[RestApp, Writers]]:
    auth = Writers(store.project)
    dp = DataPlane()
    yield build_app(dp, feature_routes(store), chain=GuardChain(authorizer=auth)), auth
    dp.close()


def events(price: float) -> bytes:
    return orjson.dumps([{"user_id": 1, "price": price,
                          "event_timestamp": datetime.now(UTC).isoformat()}])


def price(store: FeatureStore, view: str) -> Any:
    return store.get_online_features([f"{view}:price"], [{"user_id": 1}]).to_dict()["price"][0]


async def call(app: RestApp, path: str, body: bytes, query: bytes = b"") -> tuple[int, Any]:
    handler = app.resolve("POST", path, query)
    assert handler is not None
    status, out, _, _ = await handler({}, body)
    assert isinstance(out, bytes)
    return status, orjson.loads(out)


async def test_write_features_is_authorized_on_the_source(
        app: tuple[RestApp, Writers], store: FeatureStore) -> None:
    rest, auth = app
    status, body = await call(rest, "/ingest/clicks", events(1.5), b"wait=online")
    assert status == 200 and body["visible"] and price(store, "last_click") == 1.5
    assert auth.asked == [("write_features", "routes/clicks")]
    status, body = await call(rest, "/ingest/secret", events(2.5))
    assert status == 403 and "may not write_features" in body["error"]
    # refused before the store is touched: an unknown source is refused the same way
    status, body = await call(rest, "/ingest/no_such_source", events(2.5))
    assert status == 403
    push = orjson.dumps({"push_source_name": "secret", "df": {
        "user_id": [1], "price": [3.5], "event_timestamp": [datetime.now(UTC).isoformat()]}})
    status, body = await call(rest, "/push", push)
    assert status == 403
    assert auth.asked[-3:] == [("write_features", "routes/secret"),
                               ("write_features", "routes/no_such_source"),
                               ("write_features", "routes/secret")]
    assert price(store, "last_secret") is None


async def test_wait_from_the_query_on_both_entries(app: tuple[RestApp, Writers]) -> None:
    rest, _ = app
    status, body = await call(rest, "/ingest/clicks", events(1.0), b"wait=none&x=1")
    assert status == 202 and body["wait"] == "none"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=rest),
                                 base_url="http://t") as client:
        r = await client.post("/ingest/clicks?wait=durable", content=events(2.0))
        assert r.status_code == 200 and r.json()["durable"]
        r = await client.post("/push?wait=durable", content=orjson.dumps({
            "push_source_name": "clicks", "df": {"user_id": [1], "price": [3.0],
                                                 "event_timestamp": [
                                                     datetime.now(UTC).isoformat()]}}))
        assert r.status_code == 200 and r.json()["durable"] and r.json()["rows"] == 1


async def test_the_app_closes_the_routes_and_stops_ingestion(
        app: tuple[RestApp, Writers], store: FeatureStore) -> None:
    rest, _ = app
    await call(rest, "/ingest/clicks", events(1.0), b"wait=online")
    assert "streams" in vars(store)
    await rest.aclose()
    assert "streams" not in vars(store)
    assert list((store.repo_path / "data" / "clicks").glob("*.parquet"))
