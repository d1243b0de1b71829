"""Feast wire compatibility of the feature routes (issue 10), without a Feast install: the
same behaviour is checked against Feast's own SDK and `feast serve` in
tests/e2e/feature_server/test_feast_compat.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from tests.feast_logins import LAST_LOGIN, NOW, tureen_repo

from tureen.store import FeatureStore
from tureen.transports.rest.feast import FeatureHandlers


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FeatureStore]:
    with FeatureStore(tureen_repo(tmp_path)) as fs:
        yield fs


def read(handlers: FeatureHandlers, ids: list[object]) -> dict[str, object]:
    import asyncio

    body = orjson.dumps({"features": ["logins:last_login", "logins:score"],
                         "entities": {"user_id": ids}})
    status, out, _, _ = asyncio.run(handlers.online_features_reply({}, body))
    assert status == 200
    doc: dict[str, object] = orjson.loads(out)
    return doc


def test_timestamps_are_epoch_seconds_and_numeric_ids_find_string_keys(
    store: FeatureStore
) -> None:
    doc = read(FeatureHandlers(store), [1001, "1002"])  # a number for a String key
    last_login, score = doc["results"][1], doc["results"][2]  # type: ignore[index]
    assert last_login["values"] == [int(LAST_LOGIN.timestamp())] * 2  # was ISO strings
    assert last_login["statuses"] == ["PRESENT", "PRESENT"]
    assert score["values"] == [0.5, None]


def test_exact_and_feast_compat_statuses(store: FeatureStore) -> None:
    exact = read(FeatureHandlers(store), ["1002", "1003"])["results"]
    assert exact[2]["statuses"] == ["NULL_VALUE", "OUTSIDE_MAX_AGE"]  # type: ignore[index]
    assert exact[2]["values"] == [None, None]  # type: ignore[index]
    compat = read(FeatureHandlers(store, feast_compat=True), ["1002", "1003"])["results"]
    assert compat[2]["statuses"] == ["PRESENT", "PRESENT"]  # type: ignore[index]
    assert compat[2]["values"] == [None, 0.25]  # type: ignore[index]  # the stale value


def test_epoch_seconds_are_accepted_on_writes(store: FeatureStore) -> None:
    import asyncio

    h = FeatureHandlers(store)
    when = int(NOW.timestamp())
    body = orjson.dumps({"feature_view_name": "logins", "df": {
        "user_id": [2001], "last_login": [when - 60], "score": [0.75],  # a number: its text
        "event_timestamp": [when]}})
    status, out = asyncio.run(h.write_to_online_store(body))  # was a 400
    assert status == 200 and out["rows"] == 1
    doc = read(h, ["2001"])
    assert doc["results"][1]["values"] == [when - 60]  # type: ignore[index]


def test_feast_error_body() -> None:
    from tureen.errors import NotFoundError
    from tureen.feature_server.feast_compat import error_body

    detail = json.loads(orjson.loads(error_body("no view", NotFoundError("x", "feature view"))))
    assert detail == {"module": "feast.errors", "class": "FeatureViewNotFoundException",
                      "message": "no view"}


def test_a_transformer_reads_the_same_timestamps_locally_and_from_the_feature_server(
    store: FeatureStore
) -> None:
    """Epoch seconds on the wire are datetimes again in a remote transformer's table."""
    from tureen.transformer.features import RemoteFeatures, table_from_response

    resp = store.get_online_features(["logins:last_login"], {"user_id": ["1001"]})
    local = table_from_response(resp, [True])
    remote = RemoteFeatures("http://127.0.0.1:1", "svc", None, timeout=1, retries=0, backoff=0,
                            max_connections=1)
    remote.fields, remote.stored = local.fields, [True]
    doc = orjson.loads(resp.feast_json_bytes())
    assert remote._table(doc).values == local.values == [[LAST_LOGIN]]
