"""Events through ``FeatureStore.ingest`` / ``push`` (what POST /ingest/{source} and /push
call): receipts, read-after-write, durability, dead-letter Parquet, limits."""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.dataset as pads
import pytest

from tureen import FeatureStore
from tureen.errors import InvalidRequestError, NotFoundError

T0 = datetime(2026, 3, 1, tzinfo=UTC)
FEATURES = """
from datetime import timedelta
from tureen import (Aggregation, Entity, Field, FileSource, Float64, Int64, PushSource,
                    StreamFeatureView)

user = Entity(name="user", join_keys=["user_id"], dtype=Int64)
clicks = PushSource(name="clicks", batch_source=FileSource(path="data/clicks/"))
last_click = StreamFeatureView(name="last_click", entities=[user], source=clicks,
                               schema=[Field("price", Float64)])
click_stats = StreamFeatureView(name="click_stats", entities=[user], source=clicks,
    schema=[Field("price", Float64)],
    aggregations=[Aggregation("price", "count", timedelta(minutes=5), timedelta(minutes=1))])
"""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FeatureStore]:
    (tmp_path / "tureen.yaml").write_text("project: http\nstreaming: {max_request_rows: 100}\n")
    (tmp_path / "features.py").write_text(textwrap.dedent(FEATURES))
    s = FeatureStore(tmp_path)
    s.apply()
    yield s
    s.close()


def ev(user: int, seconds: float, price: object = 1.0) -> dict[str, object]:
    return {"user_id": user, "price": price,
            "event_timestamp": (T0 + timedelta(seconds=seconds)).isoformat()}


def price(store: FeatureStore, user: int) -> object:
    resp = store.get_online_features(["last_click:price"], [{"user_id": user}])
    return resp.to_dict()["price"][0]


def test_wait_online_is_read_after_write_with_a_receipt(store: FeatureStore) -> None:
    r = store.ingest("clicks", [ev(1, 0, 2.5), ev(2, 1, 3.5)], wait="online")
    assert r.accepted == 2 and r.visible and not r.durable and len(r.ingestion_id) == 32
    assert r.received_to_visible_ms is not None and r.received_to_visible_ms >= 0
    assert r.event_to_visible_ms is not None and r.event_to_visible_ms > 0
    assert price(store, 1) == 2.5


def test_wait_durable_writes_the_offline_log(store: FeatureStore) -> None:
    r = store.ingest("clicks", [ev(1, 0)], wait="durable")
    assert r.durable
    log = pads.dataset(str(store.repo_path / "data" / "clicks")).to_table()
    assert log.num_rows == 1


def test_wait_none_is_written_soon(store: FeatureStore) -> None:
    r = store.ingest("clicks", [ev(3, 0, 9.0)], wait="none")
    assert not r.visible
    deadline = time.monotonic() + 10
    while price(store, 3) != 9.0:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_bad_events_go_to_dead_letter_parquet_and_the_rest_flows(store: FeatureStore) -> None:
    r = store.ingest("clicks", [ev(1, 0), {"user_id": 2, "price": 1.0}, "junk",
                                ev(4, 1, "expensive")], wait="durable")
    assert (r.accepted, r.dead_letters) == (1, 3)
    assert [d.row for d in r.dead_letter_reasons] == [2, 1, 3]
    dead = pads.dataset(str(store.repo_path / "data" / "clicks" / "_dead_letters")).to_table()
    assert sorted(dead.column("row").to_pylist()) == [1, 2, 3]
    assert any("event_timestamp" in x for x in dead.column("reason").to_pylist())


def test_windows_see_pushed_events_and_push_routes_through_the_stream(store: FeatureStore
                                                                      ) -> None:
    assert store.push("clicks", [ev(7, 0), ev(7, 10), ev(7, 130)]) == 3
    got = store.get_online_features(["click_stats:count_price_5m"], [{"user_id": 7}]).to_dict()
    assert got["count_price_5m"] == [2]  # the window ending 00:02 (watermark 130 s)


def test_limits_and_unknown_sources(store: FeatureStore) -> None:
    with pytest.raises(InvalidRequestError, match="limit is 100"):
        store.ingest("clicks", [ev(1, i) for i in range(101)])
    with pytest.raises(InvalidRequestError, match="wait"):
        store.ingest("clicks", [ev(1, 0)], wait="eventually")
    with pytest.raises(NotFoundError, match="clicks"):
        store.ingest("click", [ev(1, 0)])


def test_materialize_before_the_first_event_loads_nothing_and_says_why(
        store: FeatureStore) -> None:
    """A stream view's offline log does not exist until its first event: materializing every
    view (which includes it) must not fail on it."""
    end = datetime.now(UTC)
    done = {r.view: r for r in store.materialize(end - timedelta(days=1), end)}
    assert done["last_click"].rows == 0 and "no events logged yet" in str(done["last_click"].note)
    done = {r.view: r for r in store.materialize_incremental(end + timedelta(seconds=1))}
    assert done["click_stats"].rows == 0
    store.ingest("clicks", [ev(1, 0, 2.5)], wait="durable")
    done = {r.view: r for r in store.materialize(T0, end)}
    assert done["last_click"].rows == 1 and done["last_click"].note is None


def test_ingest_status_shows_late_events_that_updated_windows(store: FeatureStore) -> None:
    from click.testing import CliRunner

    from tureen.cli.main import cli
    from tureen.streaming.status import ViewStatus, write_status

    write_status(store.repo_path, "clicks", [
        ViewStatus(view="click_stats", source="clicks", source_kind="push", state="running",
                   rows_total=10, late_total=3, late_updated_total=2),
        ViewStatus(view="last_click", source="clicks", source_kind="push", state="running",
                   rows_total=10, late_total=3)])
    repo = str(store.repo_path)
    as_json = CliRunner().invoke(cli, ["ingest", "status", "--repo", repo, "--json"])
    assert as_json.exit_code == 0, as_json.output
    got = {s["view"]: (s["late_total"], s["late_updated_total"])
           for s in json.loads(as_json.output)}
    assert got == {"click_stats": (3, 2), "last_click": (3, 0)}
    table = CliRunner().invoke(cli, ["ingest", "status", "--repo", repo], env={"COLUMNS": "300"})
    assert table.exit_code == 0, table.output
    assert "3 (2 updated windows)" in table.output
