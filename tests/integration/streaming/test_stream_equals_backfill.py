"""Through a real broker: the window rows the stream writes equal a backfill from the
offline log (hypothesis over random event sequences), on SQLite and on Redis."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.integration.streaming.broker import Broker
from tests.integration.streaming.repo import event, log_rows, make_repo, online_values
from tests.services import redis_project, require_redis

from tureen.definitions import KafkaSource, StreamFeatureView
from tureen.store import FeatureStore
from tureen.streaming.kafka import KafkaIngester
from tureen.streaming.maintenance import backfill
from tureen.streaming.processor import StreamProcessor

pytestmark = [pytest.mark.services, pytest.mark.slow]

events_st = st.lists(
    st.tuples(st.integers(1, 4), st.floats(0, 3600), st.floats(-1e6, 1e6, allow_nan=False),
              st.sampled_from("abcdef")),
    min_size=1, max_size=120)


def ingest_all(store: FeatureStore, n: int) -> None:
    views = [v for v in store.list_feature_views() if isinstance(v, StreamFeatureView)]
    source = views[0].source
    assert isinstance(source, KafkaSource)
    stop = threading.Event()
    ing = KafkaIngester(source, lambda: StreamProcessor(source, views, store.online,
                                                        store.repo_path),
                        store.config.streaming, f"g-{uuid.uuid4().hex[:6]}", stop)
    t = threading.Thread(target=ing.run)
    t.start()
    deadline = time.monotonic() + 60
    try:
        while True:
            c = ing.processor.counters["last_tx"]
            if c.rows + c.dead_letters >= n:
                break
            assert t.is_alive() and time.monotonic() < deadline, ing.error
            time.sleep(0.05)
    finally:
        stop.set()
        t.join(30)


def check(broker: Broker, root: Path, evs: list[tuple[int, float, float, str]],
          online: str = "") -> None:
    topic = f"eq-{uuid.uuid4().hex[:8]}"
    broker.create_topic(topic, 1)
    rows: list[dict[str, Any]] = [event(i, a, t, amt, m) for i, (a, t, amt, m) in
                                  enumerate(evs)]
    broker.produce(topic, rows)  # type: ignore[arg-type]
    repo = make_repo(root, broker.bootstrap, topic, online)
    with FeatureStore(repo) as store:
        if online:
            redis_project(store.project)
        ingest_all(store, len(rows))
        streamed = log_rows(repo, "_windows/tx_stats")
        served = online_values(repo, [1, 2, 3, 4])
        view = store.get_feature_view("tx_stats")
        assert isinstance(view, StreamFeatureView)
        backfill(view, store.online, repo)
    assert log_rows(repo, "_windows/tx_stats") == streamed
    assert online_values(repo, [1, 2, 3, 4]) == served
    shutil.rmtree(root)


@settings(max_examples=5, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(evs=events_st)
def test_stream_equals_backfill_sqlite(broker: Broker, tmp_path: Path,
                                       evs: list[tuple[int, float, float, str]]) -> None:
    check(broker, tmp_path / uuid.uuid4().hex, evs)


@settings(max_examples=3, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(evs=events_st)
def test_stream_equals_backfill_redis(broker: Broker, tmp_path: Path,
                                      evs: list[tuple[int, float, float, str]]) -> None:
    url = require_redis()
    check(broker, tmp_path / uuid.uuid4().hex, evs,
          f"online_store: {{type: redis, url: '{url}'}}")
