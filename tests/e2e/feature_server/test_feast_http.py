"""The feature server against a plain HTTP client speaking Feast's request/response shapes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.feature_server.servers import Server, make_repo, start

from tureen.store import FeatureStore

PROFILE = ["account_profile:credit_score", "account_profile:account_age_days",
           "account_profile:has_2fa_installed"]


def post(server: Server, path: str, body: Any) -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(server.url + path, content=raw, timeout=30,
                      headers={"content-type": "application/json"})


def test_columnar_response_matches_the_store(server: Server, repo: Path) -> None:
    r = post(server, "/get-online-features",
             {"features": PROFILE, "entities": {"account_id": [1001, 1002, 987654]}})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["metadata"]["feature_names"] == [
        "account_id", "credit_score", "account_age_days", "has_2fa_installed"]
    keys, *feats = doc["results"]
    assert keys["values"] == [1001, 1002, 987654]
    with FeatureStore(repo) as fs:
        want = fs.get_online_features(PROFILE, [{"account_id": a} for a in (1001, 1002, 987654)])
        expected = want.to_dict()
    for name, res in zip(doc["metadata"]["feature_names"][1:], feats, strict=True):
        assert res["values"] == expected[name]
        assert res["statuses"] == ["PRESENT", "PRESENT", "NOT_FOUND"]
        assert len(res["event_timestamps"]) == 3
        assert res["event_timestamps"][2] == "1970-01-01T00:00:00Z"
        assert res["event_timestamps"][0].endswith("Z")
        assert res["event_timestamps"][0] != "1970-01-01T00:00:00Z"
    assert feats[0]["values"][2] is None


def test_feature_service_full_names_and_request_data(server: Server) -> None:
    r = post(server, "/get-online-features", {
        "feature_service": "fraud_detection_v2", "full_feature_names": True,
        "entities": {"account_id": [1001, 1003], "amount": [10.0, 500.0]}})
    assert r.status_code == 200, r.text
    doc = r.json()
    names = doc["metadata"]["feature_names"]
    assert names[0] == "account_id"
    assert "account_profile__credit_score" in names
    assert names[-1] == "transaction_risk__amount_vs_avg_7d"
    total = doc["results"][names.index("transaction_stats__total_amount_7d")]["values"]
    count = doc["results"][names.index("transaction_stats__num_transactions_7d")]["values"]
    ratio = doc["results"][-1]["values"]
    for amount, t, c, got in zip([10.0, 500.0], total, count, ratio, strict=True):
        assert got == pytest.approx(amount / (t / c))


def feast_error(r: httpx.Response) -> dict[str, str]:
    """The error body Feast's server writes: a JSON string of {module, class, message}."""
    text = r.json()
    assert isinstance(text, str), r.text
    detail: dict[str, str] = json.loads(text)
    assert detail["module"] == "feast.errors"
    return detail


@pytest.mark.parametrize(("body", "feast_class"), [
    ({"feature_service": "fraud_detection_v9", "entities": {"account_id": [1]}},
     "FeatureServiceNotFoundException"),
    ({"features": ["no_view:x"], "entities": {"account_id": [1]}},
     "FeatureViewNotFoundException"),
    ({"features": ["account_profile:credit_scor"], "entities": {"account_id": [1]}},
     "FeastObjectNotFoundException"),
    ({"features": ["account_profile:credit_score"], "entities": {"account_id": ["x"]}},
     "FeastError"),
])
def test_errors_have_feasts_shape(server: Server, body: Any, feast_class: str) -> None:
    r = post(server, "/get-online-features", body)
    assert feast_error(r)["class"] == feast_class


def test_push_to_an_unknown_source_names_feasts_exception(server: Server) -> None:
    r = post(server, "/push", {"push_source_name": "nope", "df": {"account_id": [1]}})
    assert r.status_code == 404
    assert feast_error(r)["class"] == "PushSourceNotFoundException"


@pytest.mark.parametrize(("body", "status", "needle"), [
    ({"feature_service": "fraud_detection_v9", "entities": {"account_id": [1]}}, 404,
     "fraud_detection_v9"),
    ({"features": ["account_profile:credit_scor"], "entities": {"account_id": [1]}}, 404,
     "credit_scor"),
    ({"features": ["no_view:x"], "entities": {"account_id": [1]}}, 404, "no_view"),
    ({"features": PROFILE, "entities": {"account_id": ["abc"]}}, 400, "account_id"),
    ({"features": PROFILE, "entities": {"account_id": [1.5]}}, 400, "account_id"),
    ({"features": PROFILE, "entities": {"user": [1]}}, 400, "account_id"),
    ({"features": PROFILE, "entities": {"account_id": 1001}}, 400, "list"),
    ({"features": PROFILE}, 400, "entities"),
    ({"entities": {"account_id": [1]}}, 400, "feature_service"),
    ({"features": "account_profile:credit_score", "entities": {"account_id": [1]}}, 400,
     "features"),
    ({"feature_service": "fraud_detection_v2", "entities": {"account_id": [1]}}, 400, "amount"),
    (b"{not json", 400, "JSON"),
    (b"[1, 2]", 400, "object"),
])
def test_client_mistakes_are_4xx_with_the_name(
    server: Server, body: Any, status: int, needle: str
) -> None:
    r = post(server, "/get-online-features", body)
    assert r.status_code == status, r.text
    assert needle in feast_error(r)["message"]


def test_wrong_method_and_route(server: Server) -> None:
    assert httpx.get(server.url + "/get-online-features").status_code == 405
    assert httpx.post(server.url + "/get-online-feature", content=b"{}").status_code == 404


def test_push_and_write_to_online_store(server: Server) -> None:
    ts = datetime.now(UTC).isoformat()
    r = post(server, "/push", {
        "push_source_name": "transaction_stats_push", "to": "online",
        "df": {"account_id": [1001], "num_transactions_7d": [4242],
               "total_amount_7d": [1.5], "has_fraud_7d": [True],
               "event_timestamp": [ts], "created": [ts]}})
    assert r.status_code == 200, r.text
    r = post(server, "/write-to-online-store", {
        "feature_view_name": "account_profile",
        "df": {"account_id": [555555], "credit_score": [512], "account_age_days": [3],
               "has_2fa_installed": [False], "event_timestamp": [ts], "created": [ts]}})
    assert r.status_code == 200, r.text
    r = post(server, "/get-online-features", {
        "features": ["transaction_stats:num_transactions_7d", "account_profile:credit_score"],
        "entities": {"account_id": [1001, 555555]}})
    res = r.json()["results"]
    assert res[1]["values"][0] == 4242
    assert res[2]["values"] == [res[2]["values"][0], 512]
    assert res[2]["statuses"] == ["PRESENT", "PRESENT"]


def test_push_dated_2099_is_refused_and_older_rows_are_reported(server: Server) -> None:
    """Issue 11 #13: one push dated 2099 used to pin a value; later pushes answered
    {"rows": 1} and were silently dropped."""
    now = datetime.now(UTC)

    def stats(n: int, when: datetime) -> dict[str, Any]:
        ts = when.isoformat()
        return {"push_source_name": "transaction_stats_push", "to": "online",
                "df": {"account_id": [1007], "num_transactions_7d": [n],
                       "total_amount_7d": [1.0], "has_fraud_7d": [False],
                       "event_timestamp": [ts], "created": [ts]}}

    r = post(server, "/push", stats(1, datetime(2099, 1, 1, tzinfo=UTC)))
    assert r.status_code == 400
    assert "row 0" in feast_error(r)["message"] and "2099-01-01" in feast_error(r)["message"]
    r = post(server, "/push", stats(7, now))
    assert r.status_code == 200 and r.json()["ignored_older"] == {}
    r = post(server, "/push", stats(3, now - timedelta(hours=1)))
    assert r.status_code == 200
    assert r.json()["ignored_older"] == {"transaction_stats": 1} and "older" in r.json()["note"]
    got = post(server, "/get-online-features", {
        "features": ["transaction_stats:num_transactions_7d"],
        "entities": {"account_id": [1007]}}).json()["results"][1]["values"]
    assert got == [7]


@pytest.mark.parametrize(("path", "body", "needle"), [
    ("/push", {"push_source_name": "nope", "df": {"account_id": [1]}}, "nope"),
    ("/push", {"push_source_name": "transaction_stats_push", "df": {"account_id": [1]},
               "to": "sideways"}, "to"),
    ("/write-to-online-store", {"feature_view_name": "nope", "df": {"a": [1]}}, "nope"),
    ("/materialize", {"start_ts": "yesterday", "end_ts": "2024-01-01T00:00:00Z"}, "start_ts"),
    ("/materialize-incremental", {"end_ts": "2024-01-01", "feature_views": ["nope"]}, "nope"),
])
def test_write_route_mistakes(server: Server, path: str, body: Any, needle: str) -> None:
    r = post(server, path, body)
    assert 400 <= r.status_code < 500, r.text
    assert needle in feast_error(r)["message"]


def test_health(server: Server) -> None:
    r = httpx.get(server.url + "/health")
    assert r.status_code == 200
    doc = r.json()
    assert doc["registry"]["ok"] and doc["online_store"]["ok"]
    assert doc["registry"]["feature_services"] == 2


def test_materialize_routes_and_unhealthy_registry(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "fresh", materialize=False)
    s = start(["serve-features", "--repo", str(repo), "--host", "127.0.0.1"],
              tmp_path / "server.log")
    try:
        body = {"features": PROFILE, "entities": {"account_id": [1001]}}
        before = post(s, "/get-online-features", body).json()
        assert before["results"][1]["statuses"] == ["NOT_FOUND"]
        now = datetime.now(UTC)
        r = post(s, "/materialize", {"start_ts": (now - timedelta(days=11)).isoformat(),
                                     "end_ts": now.isoformat(),
                                     "feature_views": ["account_profile"]})
        assert r.status_code == 200, r.text
        assert [m["feature_view"] for m in r.json()["materialized"]] == ["account_profile"]
        after = post(s, "/get-online-features", body).json()
        assert after["results"][1]["statuses"] == ["PRESENT"]
        r = post(s, "/materialize-incremental", {"end_ts": now.timestamp()})
        assert r.status_code == 200, r.text
        stats = post(s, "/get-online-features", {
            "features": ["transaction_stats:total_amount_7d"],
            "entities": {"account_id": [1001]}}).json()
        assert stats["results"][1]["statuses"] == ["PRESENT"]
        (repo / "data" / "registry.json").write_text("{broken")
        r = httpx.get(s.url + "/health")
        assert r.status_code == 503
        assert r.json()["registry"]["ok"] is False
    finally:
        assert s.stop() == 0
