"""``tureen ingest`` against a real Kafka-protocol broker (Tansu, see broker.py)."""

from __future__ import annotations

import random
import sqlite3
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow.dataset as pads
import pytest
from tests.integration.streaming.broker import Broker, DurableBroker
from tests.integration.streaming.repo import (
    FEATURES,
    T0,
    Ingester,
    caught_up,
    event,
    log_rows,
    make_repo,
    online_values,
    statuses,
    wait_for,
)

from tureen.store import FeatureStore
from tureen.streaming.event_log import EVENT_ID

pytestmark = [pytest.mark.services, pytest.mark.slow]


def events(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out, t = [], 0.0
    for i in range(n):
        t += rng.uniform(0, 6)
        out.append(event(i, rng.randint(1, 8), t - rng.uniform(0, 45),
                         round(rng.uniform(1, 500), 2), rng.choice("abcdefg")))
    return out


def run_to_end(repo: Path, total: int) -> None:
    ing = Ingester(repo)
    try:
        wait_for(lambda: caught_up(repo, total, ing.proc.pid), 180, "the ingester to catch up")
    finally:
        ing.stop()


UPDATE_LATE = FEATURES.replace(
    "timedelta(minutes=1)),\n    ])", "timedelta(minutes=1)),\n    ], late_events='update', "
    "allowed_lateness=timedelta(minutes=2))")


@pytest.mark.parametrize("late", ["drop", "update"])
def test_kill_9_mid_batch_loses_and_doubles_nothing(broker: Broker, tmp_path: Path,
                                                    late: str) -> None:
    evs = events(20_000, 7)
    clean_topic, crash_topic = f"clean-{uuid.uuid4().hex[:6]}", f"crash-{uuid.uuid4().hex[:6]}"
    broker.create_topic(clean_topic, 1)
    broker.create_topic(crash_topic, 1)
    broker.produce(clean_topic, evs)
    features = UPDATE_LATE if late == "update" else FEATURES
    clean = make_repo(tmp_path / "clean", broker.bootstrap, clean_topic, features=features)
    crashed = make_repo(tmp_path / "crashed", broker.bootstrap, crash_topic, features=features)
    run_to_end(clean, len(evs))

    def produce_slowly() -> None:  # events keep arriving while the ingester is killed
        for i in range(0, len(evs), 500):
            broker.produce(crash_topic, evs[i:i + 500])
            time.sleep(0.15)

    producer = threading.Thread(target=produce_slowly)
    producer.start()
    killed_at = []
    try:
        for pause in (1.5, 1.0):  # kill -9 twice while it is busy
            ing = Ingester(crashed)
            try:
                wait_for(lambda: (st := statuses(crashed).get("last_tx")) is not None
                         and st.pid == ing.proc.pid and st.rows_total > 0, 60,  # noqa: B023
                         "the ingester to get going")
                time.sleep(pause + random.uniform(0.0, 0.3))
            finally:
                ing.kill9()
            killed_at.append(statuses(crashed)["last_tx"].rows_total)
    finally:
        producer.join()
    assert 0 < sum(killed_at) < len(evs), killed_at
    run_to_end(crashed, 0)
    accounts = list(range(1, 9))
    assert online_values(crashed, accounts) == online_values(clean, accounts)
    assert log_rows(crashed) == log_rows(clean)
    assert len(log_rows(clean)) == len(evs)
    assert log_rows(crashed, "_windows/tx_stats") == log_rows(clean, "_windows/tx_stats")
    assert log_rows(clean, "_windows/tx_stats")
    if late == "update":  # late events rewrote windows (created after the window end)
        assert statuses(clean)["tx_stats"].late_updated_total > 0
        assert any(r["created_timestamp"] > r["event_timestamp"]
                   for r in log_rows(clean, "_windows/tx_stats"))


def test_poison_messages_go_to_the_dead_letter_topic(broker: Broker, tmp_path: Path) -> None:
    topic = f"poison-{uuid.uuid4().hex[:6]}"
    broker.create_topic(topic, 1)
    good = events(50, 3)
    bad: list[dict[str, Any] | bytes] = [
        b"{not json", b"[1, 2]", {"account_id": 1, "amount": "lots", "ts": good[0]["ts"]},
        {"account_id": 2, "amount": 1.0, "merchant": "a"},  # no event time
    ]
    mixed: list[dict[str, Any] | bytes] = [*good[:25], *bad, *good[25:]]
    broker.produce(topic, mixed)
    repo = make_repo(tmp_path / "r", broker.bootstrap, topic)
    run_to_end(repo, len(mixed))
    st = statuses(repo)["last_tx"]
    assert st.rows_total == 50 and st.dead_letters_total == 4
    dead = broker.consume_all(topic + ".dlq", 4)
    assert sorted(m.value() for m in dead if isinstance(m.value(), bytes))[0] == b"[1, 2]"
    reasons = [dict(m.headers())["tureen.reason"].decode() for m in dead]
    assert any("JSON" in r for r in reasons) and any("ts" in r for r in reasons)
    assert len(log_rows(repo)) == 50


def test_late_and_out_of_order_events(broker: Broker, tmp_path: Path) -> None:
    topic = f"late-{uuid.uuid4().hex[:6]}"
    broker.create_topic(topic, 1)
    # watermark_delay is 30 s: 100 s then 80 s (out of order, on time) then 10 s (late)
    evs = [event(0, 1, 100, 1.0, "a"), event(1, 1, 80, 2.0, "b"), event(2, 1, 10, 4.0, "c"),
           event(3, 1, 400, 8.0, "d")]
    broker.produce(topic, evs)
    repo = make_repo(tmp_path / "r", broker.bootstrap, topic)
    run_to_end(repo, len(evs))
    st = statuses(repo)["tx_stats"]
    assert st.late_total == 1 and st.rows_total == 4
    windows = log_rows(repo, "_windows/tx_stats")
    assert windows[0]["sum_amount_10m"] == 3.0  # the late 4.0 is in no window
    assert [r["_tureen_late"] for r in log_rows(repo)] == [True, False, False, False]
    last = online_values(repo, [1])["last_tx"]
    assert last["amount"] == [8.0]


def test_late_events_update_their_windows_when_the_view_says_so(broker: Broker,
                                                                tmp_path: Path) -> None:
    topic = f"lateup-{uuid.uuid4().hex[:6]}"
    broker.create_topic(topic, 1)
    # as above; 10 s arrives 60 s behind the watermark (70 s), within allowed_lateness
    evs = [event(0, 1, 100, 1.0, "a"), event(1, 1, 80, 2.0, "b"), event(2, 1, 10, 4.0, "c"),
           event(3, 1, 400, 8.0, "d")]
    broker.produce(topic, evs)
    assert "late_events" in UPDATE_LATE
    repo = make_repo(tmp_path / "r", broker.bootstrap, topic, features=UPDATE_LATE)
    run_to_end(repo, len(evs))
    st = statuses(repo)["tx_stats"]
    assert (st.late_total, st.late_updated_total, st.rows_total) == (1, 1, 4)
    windows = {r["event_timestamp"]: r for r in log_rows(repo, "_windows/tx_stats")}
    one, two = T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)
    assert windows[one]["sum_amount_10m"] == 4.0  # the late event's own window, now closed
    assert windows[one]["created_timestamp"] == one + timedelta(microseconds=1)
    assert windows[two]["sum_amount_10m"] == 7.0  # 100 s, 80 s and the late 10 s
    assert online_values(repo, [1])["tx_stats"]["sum_amount_10m"] == [7.0]


def test_lag_is_known_after_a_restart_with_nothing_new_and_before_the_first_fetch(
        broker: Broker, tmp_path: Path) -> None:
    """A restarted ingester knows its lag without having fetched anything: 0 when the
    topic holds nothing new (its consumer has no position until a message arrives, which
    left the lag unknown for good: CI's durable-broker test waited 60 s for 'caught up'),
    and the backlog behind the committed offset while it has not read it yet."""
    topic = f"lag-{uuid.uuid4().hex[:6]}"
    broker.create_topic(topic, 1)
    repo = make_repo(tmp_path / "r", broker.bootstrap, topic)
    broker.produce(topic, events(20, 5))
    run_to_end(repo, 20)
    ing = Ingester(repo)  # nothing new: caught up at once
    try:
        wait_for(lambda: caught_up(repo, 0, ing.proc.pid), 60, "the restarted ingester's lag")
    finally:
        ing.stop()


def test_online_store_down_pauses_and_loses_nothing(broker: Broker, tmp_path: Path) -> None:
    topic = f"bp-{uuid.uuid4().hex[:6]}"
    broker.create_topic(topic, 1)
    repo = make_repo(tmp_path / "r", broker.bootstrap, topic)
    ing = Ingester(repo)
    try:
        broker.produce(topic, events(20, 1))
        wait_for(lambda: caught_up(repo, 20, ing.proc.pid), 120, "first batch")
        lock = sqlite3.connect(repo / "data" / "online.db", isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")  # the online store is now unavailable to writers
        more = events(200, 2)
        broker.produce(topic, more)
        wait_for(lambda: statuses(repo)["last_tx"].state == "backpressure", 60, "backpressure")
        st = statuses(repo)["last_tx"]
        assert st.error and "BackendUnavailable" in st.error
        assert st.lag_messages and st.lag_messages > 0, st
        lock.execute("ROLLBACK")
        lock.close()
        wait_for(lambda: caught_up(repo, 220, ing.proc.pid), 120, "catching up")
        assert statuses(repo)["last_tx"].state == "running"
    finally:
        ing.stop()
    assert len(log_rows(repo)) == 220


def test_offline_log_unwritable_pauses_then_resumes_and_loses_nothing(
        broker: Broker, tmp_path: Path) -> None:
    topic = f"disk-{uuid.uuid4().hex[:6]}"
    broker.create_topic(topic, 1)
    repo = make_repo(tmp_path / "r", broker.bootstrap, topic)
    log_dir, away = repo / "data" / "tx", repo / "data" / "tx.away"
    ing = Ingester(repo)
    try:
        evs = events(60, 4)
        broker.produce(topic, evs[:20])
        wait_for(lambda: caught_up(repo, 20, ing.proc.pid) and len(log_rows(repo)) == 20, 120,
                 "first batch")
        log_dir.rename(away)
        log_dir.write_bytes(b"")  # a file where the log folder was: no part can be written
        broker.produce(topic, evs[20:30])
        wait_for(lambda: statuses(repo)["last_tx"].state == "backpressure", 60, "backpressure")
        st = statuses(repo)["last_tx"]
        assert st.error and "stream log" in st.error, st.error
        broker.produce(topic, evs[30:])  # arrives while consumption is paused
        time.sleep(0.5)
        log_dir.unlink()
        away.rename(log_dir)
        wait_for(lambda: caught_up(repo, 60, ing.proc.pid), 120, "catching up")
        assert statuses(repo)["last_tx"].state == "running"
    finally:
        ing.stop()
    rows = log_rows(repo)
    assert sorted(r["amount"] for r in rows) == sorted(e["amount"] for e in evs)


def test_broker_restart(broker: Broker, tmp_path: Path) -> None:
    topic = f"restart-{uuid.uuid4().hex[:6]}"
    broker.create_topic(topic, 1)
    repo = make_repo(tmp_path / "r", broker.bootstrap, topic)
    ing = Ingester(repo)
    try:
        broker.produce(topic, events(30, 5))
        wait_for(lambda: caught_up(repo, 30, ing.proc.pid), 60, "before the restart")
        broker.stop()
        wait_for(lambda: statuses(repo)["last_tx"].state == "broker_unavailable", 30,
                 "the ingester to notice")
        broker.start()
        broker.create_topic(topic, 1)
        later = [event(100 + i, 1, 10_000 + i, 1000.0 + i, "z") for i in range(10)]
        broker.produce(topic, later)
        wait_for(lambda: online_values(repo, [1])["last_tx"]["amount"] == [1009.0], 90,
                 "events produced after the restart")
        wait_for(lambda: statuses(repo)["last_tx"].state == "running", 30, "running again")
    finally:
        ing.stop()
    assert len(log_rows(repo)) == 40


def committed(bootstrap: str, group: str, topic: str) -> int:
    """The group's committed offset of partition 0. (Not compared with the end offset:
    Tansu 0.6 on S3 answers ListOffsets with the last record batch's base offset + 1.)"""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0})
    try:
        return int(c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset)
    finally:
        c.close()


def log_offsets(repo: Path) -> list[int]:
    """Kafka offsets of every event-log row as written (no deduplication)."""
    table = pads.dataset(str(repo / "data" / "tx"), format="parquet",
                         exclude_invalid_files=True).to_table(columns=[EVENT_ID])
    return sorted(int(e.split(":")[1]) for e in table.column(EVENT_ID).to_pylist())


def test_durable_broker_restart_resumes_from_committed_offsets(tmp_path: Path) -> None:
    """Tansu on durable storage killed (-9) and started again on it, once with the ingester
    stopped and once while it runs: the topic keeps its records, the group its committed
    offsets, and every event lands in the log exactly once."""
    broker = DurableBroker()
    broker.start()
    try:
        topic = f"durable-{uuid.uuid4().hex[:6]}"
        broker.create_topic(topic, 1)
        repo = make_repo(tmp_path / "r", broker.bootstrap, topic)
        with FeatureStore(repo) as store:
            group = f"tureen.{store.project}.tx"
        evs = events(60, 11)
        broker.produce(topic, evs[:30])
        ing = Ingester(repo)
        try:
            wait_for(lambda: caught_up(repo, 30, ing.proc.pid), 60, "the first 30 events")
        finally:
            ing.stop()  # a final checkpoint commits offset 30
        broker.stop()
        broker.start()  # same storage
        assert committed(broker.bootstrap, group, topic) == 30
        broker.produce(topic, evs[30:45])
        ing = Ingester(repo)
        try:
            wait_for(lambda: caught_up(repo, 15, ing.proc.pid), 60, "events 30-44")
            broker.stop()  # while the ingester runs
            wait_for(lambda: statuses(repo)["last_tx"].state == "broker_unavailable", 30,
                     "the ingester to notice")
            broker.start()
            broker.produce(topic, evs[45:])
            wait_for(lambda: caught_up(repo, 30, ing.proc.pid), 90, "events 45-59")
        finally:
            ing.stop()
        assert committed(broker.bootstrap, group, topic) == 60
    finally:
        broker.close()
    assert log_offsets(repo) == list(range(60))  # nothing lost, nothing written twice
    assert sorted(r["amount"] for r in log_rows(repo)) == sorted(e["amount"] for e in evs)
