"""``POST /ingest/{source}`` and ``/push?wait=`` against a running ``tureen serve``: receipts
for every wait mode, read-after-write, dead-letter Parquet with the reason, the offline log,
bounded bodies, clear refusals, and what is buffered is written when the server stops."""

from __future__ import annotations

import json
import textwrap
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow.dataset as pads
import pytest
from tests.e2e.feature_server.servers import Server, start
from tests.unit.streaming.test_http_ingest import FEATURES as CLICKS

from tureen import FeatureStore

pytestmark = pytest.mark.slow

# the unit tests' push source "clicks" (a latest-value and a windowed stream view), and a
# push source "ratings" feeding a plain feature view
FEATURES = CLICKS + """
from tureen import FeatureView

ratings = PushSource(name="ratings", batch_source=FileSource(path="data/ratings/"))
last_rating = FeatureView(name="last_rating", entities=[user], source=ratings,
                          schema=[Field("stars", Float64)])
"""


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    # a long flush interval: only wait=durable and the server's stop write the offline log
    (path / "tureen.yaml").write_text(textwrap.dedent(f"""\
        project: i{uuid.uuid4().hex[:8]}
        streaming: {{max_request_rows: 50, max_request_bytes: 4096,
                     flush_interval_seconds: 3600}}
        """))
    (path / "features.py").write_text(textwrap.dedent(FEATURES))
    (path / "data" / "ratings").mkdir(parents=True)
    with FeatureStore(path) as store:
        store.apply()
    return path


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("ingest") / "repo")


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[Server]:
    s = start(["serve", "--repo", str(repo), "--host", "127.0.0.1", "--no-console"],
              repo / "server.log")
    yield s
    assert s.stop() == 0, s.log.read_text()


def ev(user: int, price: Any = 1.0, ago: float = 10.0) -> dict[str, Any]:
    ts = datetime.now(UTC) - timedelta(seconds=ago)
    return {"user_id": user, "price": price, "event_timestamp": ts.isoformat()}


def online(server: Server, feature: str, user: int) -> Any:
    r = httpx.post(f"{server.url}/get-online-features", timeout=10,
                   json={"features": [feature], "entities": {"user_id": [user]}})
    assert r.status_code == 200, r.text
    return r.json()["results"][1]["values"][0]


def offline_rows(repo: Path, sub: str = "clicks") -> list[dict[str, Any]]:
    path = repo / "data" / sub
    if not any(path.glob("*.parquet")):
        return []
    rows: list[dict[str, Any]] = pads.dataset(
        str(path), format="parquet", exclude_invalid_files=True).to_table().to_pylist()
    return rows


def test_wait_online_is_read_after_write(server: Server) -> None:
    r = httpx.post(f"{server.url}/ingest/clicks?wait=online", json=[ev(1, 2.5), ev(2, 3.5)],
                   timeout=10)
    assert r.status_code == 200, r.text
    receipt = r.json()
    assert receipt["accepted"] == 2 and receipt["visible"] and not receipt["durable"]
    assert len(receipt["ingestion_id"]) == 32 and receipt["wait"] == "online"
    # the events are 10 s old: the measured event -> visible lag says so
    assert 10_000 <= receipt["event_to_visible_ms"] < 60_000
    assert 0 <= receipt["received_to_visible_ms"] < 10_000
    assert r.headers["x-request-id"]
    assert online(server, "last_click:price", 1) == 2.5  # no sleep: read after write


def test_wait_none_answers_202_then_becomes_visible(server: Server) -> None:
    r = httpx.post(f"{server.url}/ingest/clicks", json={"events": [ev(3, 7.0)], "wait": "none"},
                   timeout=10)
    assert r.status_code == 202, r.text
    receipt = r.json()
    assert receipt["wait"] == "none" and receipt["accepted"] == 1 and not receipt["visible"]
    assert receipt["event_to_visible_ms"] is None
    deadline = time.monotonic() + 20
    while online(server, "last_click:price", 3) != 7.0:
        assert time.monotonic() < deadline, "the queued event never became visible"
        time.sleep(0.05)


def test_wait_durable_writes_the_offline_log(server: Server, repo: Path) -> None:
    before = {r["_tureen_event_id"] for r in offline_rows(repo)}
    r = httpx.post(f"{server.url}/ingest/clicks?wait=durable", timeout=10,
                   json={"df": {"user_id": [4, 5], "price": [1.5, 2.5],
                                "event_timestamp": [ev(4)["event_timestamp"]] * 2}})
    assert r.status_code == 200, r.text
    receipt = r.json()
    assert receipt["durable"] and receipt["visible"] and receipt["accepted"] == 2
    new = [row for row in offline_rows(repo) if row["_tureen_event_id"] not in before]
    assert sorted((row["user_id"], row["price"]) for row in new
                  if row["_tureen_event_id"].startswith(receipt["ingestion_id"])) == [
        (4, 1.5), (5, 2.5)]


def test_a_bad_event_goes_to_dead_letter_parquet_with_the_reason(
        server: Server, repo: Path) -> None:
    events = [ev(6, 1.0), ev(7, "not a price"), ev(8, 2.0), {"price": 1.0}, "junk"]
    r = httpx.post(f"{server.url}/ingest/clicks?wait=durable", json=events, timeout=10)
    assert r.status_code == 200, r.text
    receipt = r.json()
    assert receipt["accepted"] == 2 and receipt["dead_letters"] == 3
    reasons = {d["row"]: d["reason"] for d in receipt["dead_letter_reasons"]}
    assert set(reasons) == {1, 3, 4}
    assert "price" in reasons[1] and "user_id" in reasons[3] and "object" in reasons[4]
    dead = [row for row in offline_rows(repo, "clicks/_dead_letters")
            if row["ingestion_id"] == receipt["ingestion_id"]]
    assert sorted(row["row"] for row in dead) == [1, 3, 4]
    by_row = {row["row"]: row for row in dead}
    assert by_row[1]["reason"] == reasons[1] and '"not a price"' in by_row[1]["event"]
    assert by_row[4]["event"] is None
    # the good ones went on
    assert online(server, "last_click:price", 6) == 1.0
    assert online(server, "last_click:price", 8) == 2.0


def test_push_takes_wait_and_answers_feast_plus_a_receipt(server: Server) -> None:
    body = {"push_source_name": "clicks", "to": "online",
            "df": {"user_id": [9], "price": [4.5], "event_timestamp": [ev(9)["event_timestamp"]]}}
    r = httpx.post(f"{server.url}/push?wait=none", json=body, timeout=10)
    assert r.status_code == 202, r.text
    answer = r.json()
    assert answer["status"] == "ok" and answer["rows"] == 1 and answer["wait"] == "none"
    r = httpx.post(f"{server.url}/push", json={**body, "wait": "online"}, timeout=10)
    assert r.status_code == 200 and r.json()["visible"] and r.json()["ingestion_id"]
    # a push source without stream views: written before the answer, whatever wait says
    plain = {"push_source_name": "ratings", "to": "online",
             "df": {"user_id": [9], "stars": [4.0], "event_timestamp": [ev(9)["event_timestamp"]]}}
    r = httpx.post(f"{server.url}/push?wait=none", json=plain, timeout=10)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["rows"] == 1 and answer["visible"] and answer["event_to_visible_ms"] >= 10_000
    assert online(server, "last_rating:stars", 9) == 4.0


@pytest.mark.parametrize(("method", "path", "body", "status", "says"), [
    ("POST", "/ingest/clicks?wait=soon", b"[]", 400, "wait must be one of"),
    ("POST", "/ingest/clicks", b"{not json", 400, "not JSON"),
    ("POST", "/ingest/clicks", b'{"events": 5}', 400, "JSON array"),
    ("POST", "/ingest/clicks", b"[" + b"{}," * 50 + b"{}]", 400, "the limit is 50"),
    ("POST", "/ingest/clicks", b"[" + b" " * 5000 + b"]", 413, "streaming.max_request_bytes"),
    ("POST", "/ingest/nope", b"[]", 404, "no push source named 'nope'"),
    ("POST", "/ingest/last_rating", b"[]", 404, "no push source named"),
    ("POST", "/ingest/ratings", b"[]", 404, "feeds a stream feature view"),
    ("POST", "/ingest/..%2F..%2Fetc", b"[]", 404, "letters, digits"),
    ("POST", "/ingest/", b"[]", 404, "letters, digits"),
    ("GET", "/ingest/clicks", b"", 405, "accepts POST"),
    ("POST", "/push", b'{"push_source_name": "clicks", "df": {"user_id": [1]}, "wait": 3}',
     400, '"wait" must be one of'),
])
def test_refusals_are_clear(server: Server, method: str, path: str, body: bytes, status: int,
                            says: str) -> None:
    r = httpx.request(method, server.url + path, content=body, timeout=10,
                      headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    answer = r.json()  # /push errors have Feast's body: the JSON text of {..., "message"}
    message = json.loads(answer)["message"] if isinstance(answer, str) else answer["error"]
    assert says in message and "Traceback" not in r.text
    assert "etc" not in message


def test_a_compressed_body_is_refused_clearly(server: Server) -> None:
    r = httpx.post(f"{server.url}/ingest/clicks", content=b"\x1f\x8b", timeout=10,
                   headers={"content-encoding": "gzip"})
    assert r.status_code == 400 and "send plain JSON" in r.json()["error"]


def test_the_server_writes_what_it_buffered_when_it_stops(tmp_path: Path) -> None:
    """flush_interval_seconds is an hour: only the stop can write these to the offline log."""
    repo = make_repo(tmp_path / "repo")
    s = start(["serve", "--repo", str(repo), "--host", "127.0.0.1", "--no-console"],
              tmp_path / "server.log")
    try:
        r = httpx.post(f"{s.url}/ingest/clicks?wait=online", json=[ev(42, 9.5)], timeout=10)
        assert r.status_code == 200, r.text
        iid = r.json()["ingestion_id"]
        assert not [row for row in offline_rows(repo)
                    if row["_tureen_event_id"].startswith(iid)]
    finally:
        assert s.stop() == 0, s.log.read_text()
    rows = [row for row in offline_rows(repo) if row["_tureen_event_id"].startswith(iid)]
    assert [(row["user_id"], row["price"]) for row in rows] == [(42, 9.5)]
