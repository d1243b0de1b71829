"""The stream processor against a real SQLite online store and Parquet logs on disk:
routing, dead letters, lateness, and the same result after a crash at any point."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.dataset as pads
import pytest

from tureen import (
    Aggregation,
    Entity,
    Field,
    FileSource,
    Float64,
    Int64,
    KafkaSource,
    StreamFeatureView,
    String,
)
from tureen.online.encoding import RowReader
from tureen.online.keys import encoder_for
from tureen.online.sqlite_store import SqliteOnlineStore
from tureen.streaming.event_log import EVENT_ID, LATE
from tureen.streaming.processor import Event, StreamProcessor

T0 = datetime(2026, 3, 1, tzinfo=UTC)
account = Entity("account", join_keys=["account_id"], dtype=Int64)


def source(delay: int = 0) -> KafkaSource:
    return KafkaSource(name="tx", topic="tx", batch_source=FileSource("data/tx/"),
                       timestamp_field="ts", field_mapping={"amt": "amount"},
                       watermark_delay=timedelta(seconds=delay))


def views(src: KafkaSource, late: str = "drop") -> list[StreamFeatureView]:
    latest = StreamFeatureView(name="last_tx", entities=[account], source=src,
                               schema=[Field("amount", Float64), Field("merchant", String)])
    lateness = {"late_events": "update", "allowed_lateness": timedelta(minutes=5)} if (
        late == "update") else {}
    stats = StreamFeatureView(  # type: ignore[misc]
        name="tx_stats", entities=[account], source=src,
        schema=[Field("amount", Float64), Field("merchant", String)],
        aggregations=[
            Aggregation("amount", "sum", timedelta(minutes=10), timedelta(minutes=1)),
            Aggregation("amount", "count", timedelta(minutes=30), timedelta(minutes=1)),
            Aggregation("merchant", "count_distinct_approx", timedelta(minutes=10),
                        timedelta(minutes=1)),
        ], **lateness)
    return [latest, stats]


def event(i: int, account_id: Any, seconds: float, amount: Any = 1.5,
          merchant: str = "m", partition: str = "p0") -> Event:
    row = {"account_id": account_id, "amt": amount, "merchant": merchant,
           "ts": (T0 + timedelta(seconds=seconds)).isoformat()}
    return Event(row, f"{partition}:{i}", partition, seq=i)


def online(store: SqliteOnlineStore, view: StreamFeatureView, ids: list[int]
           ) -> list[tuple[int, Any] | None]:
    keys = [encoder_for(view.key_fields).encode([i]) for i in ids]
    rows = store.read([(view, keys)])[0]
    reader = RowReader(view.feature_names)
    return [None if r is None else (reader.read(r)[0], list(reader.read(r)[1])) for r in rows]


def make(tmp_path: Path, delay: int = 0, late: str = "drop"
         ) -> tuple[StreamProcessor, SqliteOnlineStore]:
    src = source(delay)
    store = SqliteOnlineStore(tmp_path / "online.db", "p")
    return StreamProcessor(src, views(src, late), store, tmp_path), store


def test_latest_values_dead_letters_and_offline_log(tmp_path: Path) -> None:
    proc, store = make(tmp_path)
    batch = [event(0, 1, 0, 2.0), event(1, 2, 1, 3.0),
             Event(None, "p0:2", "p0", seq=2, payload=b"{", error="not JSON"),
             event(3, 1, 2, "lots"),                       # wrong type
             event(4, None, 3),                            # no entity key
             event(5, 1, 5, 7.0)]
    res = proc.process(batch)
    assert res.accepted == 3
    assert sorted(d.event.event_id for d in res.dead) == ["p0:2", "p0:3", "p0:4"]
    assert "Float64" in next(d.reason for d in res.dead if d.event.event_id == "p0:3")
    last = views(source())[0]
    assert [v and v[1] for v in online(store, last, [1, 2, 3])] == [[7.0, "m"], [3.0, "m"], None]
    assert proc.flush() == 3
    rows = pads.dataset(str(tmp_path / "data" / "tx")).to_table()
    assert rows.column(EVENT_ID).to_pylist() == ["p0:0", "p0:1", "p0:5"]
    # the log has its own column names (batch_source: no mapping, event_timestamp)
    assert {"amount", "event_timestamp"} <= set(rows.column_names)
    assert rows.column(LATE).to_pylist() == [False, False, False]


def test_late_events_are_counted_kept_offline_and_left_out_of_windows(tmp_path: Path) -> None:
    proc, store = make(tmp_path, delay=30)
    proc.process([event(0, 1, 100), event(1, 1, 75), event(2, 1, 60)])  # watermark 70
    assert proc.counters["tx_stats"].late == 1
    res = proc.process([event(3, 1, 200, 9.0)])
    assert res.late == 0
    proc.process([event(4, 1, 10_000)])
    proc.flush()
    stats = views(source())[1]
    log = pads.dataset(str(tmp_path / "data" / "tx"), exclude_invalid_files=True).to_table()
    assert log.column(LATE).to_pylist() == [False, False, True, False, False]
    windows = pads.dataset(str(tmp_path / "data" / "tx" / "_windows" / "tx_stats")).to_table()
    first = windows.filter(pads.field("event_timestamp") == T0 + timedelta(minutes=2)
                           ).to_pylist()
    assert first[0]["sum_amount_10m"] == 3.0  # 100 s and 75 s, not the late 60 s
    assert first[0]["count_amount_30m"] == 2
    assert online(store, stats, [1])[0] is not None


def run(tmp_path: Path, events: list[Event], crash_at: list[int], flush_every: int,
        late: str = "drop") -> tuple[list[Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """Feed events like the Kafka loop does (commit = flush); at each crash point drop the
    processor without flushing and restart from the last committed event."""
    committed = 0
    pos = 0
    proc, store = make(tmp_path, delay=20, late=late)
    proc.restore()
    crashes = sorted(crash_at)
    while pos < len(events):
        end = min(pos + random.Random(pos).randint(1, 9), len(events))
        if crashes and pos <= crashes[0] < end:
            crashes.pop(0)
            proc.process(events[pos:end])
            if random.Random(pos).random() < 0.5:  # sometimes the log was written, not committed
                proc.flush()
            store.close()
            proc, store = make(tmp_path, delay=20, late=late)
            proc.restore()
            pos = committed
            continue
        proc.process(events[pos:end])
        pos = end
        if pos % flush_every < 9:
            proc.flush()
            committed = pos
    proc.flush()
    latest, stats = views(source(), late)
    ids = sorted({e.row["account_id"] for e in events if e.row})
    state = online(store, latest, ids) + online(store, stats, ids)
    store.close()
    event_log = pads.dataset(str(tmp_path / "data" / "tx")).to_table()
    by_id = sorted({r[EVENT_ID]: r for r in event_log.to_pylist()}.values(),
                   key=lambda r: r[EVENT_ID])
    wpath = tmp_path / "data" / "tx" / "_windows" / "tx_stats"
    windows = pads.dataset(str(wpath)).to_table().to_pylist() if wpath.exists() else []
    newest = {(r["account_id"], r["event_timestamp"]): r  # rewrites: the newest is current
              for r in sorted(windows, key=lambda r: r["created_timestamp"])}
    unique = sorted(newest.values(), key=lambda r: (r["account_id"], r["event_timestamp"]))
    return state, by_id, unique


@pytest.mark.parametrize("late", ["drop", "update"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_crash_anywhere_gives_the_clean_run_result(tmp_path: Path, seed: int,
                                                     late: str) -> None:
    rng = random.Random(seed)
    events = []
    t = 0.0
    for i in range(300):
        t += rng.uniform(0, 20)
        jitter = rng.uniform(-40, 0)  # some arrive out of order, some late
        events.append(event(i, rng.randint(1, 5), t + jitter, round(rng.uniform(1, 50), 2),
                            rng.choice("abcde")))
    clean = run(tmp_path / "clean", events, [], 40, late)
    crashed = run(tmp_path / "crashed", events, [rng.randrange(300) for _ in range(4)], 40,
                  late)
    assert crashed == clean
    assert clean[2], "windows were emitted"
    if late == "update":  # late events were counted: some window was rewritten
        assert any(r["created_timestamp"] > r["event_timestamp"] for r in clean[2])



def test_future_dated_events_are_dead_letters(tmp_path: Path) -> None:
    proc, _ = make(tmp_path)
    future = datetime.now(UTC) + timedelta(hours=2)
    res = proc.process([event(0, 1, 0), Event({"account_id": 2, "amt": 1.0, "merchant": "m",
                                               "ts": future.isoformat()}, "p0:1", "p0", seq=1)])
    assert res.accepted == 1
    assert [d.event.event_id for d in res.dead] == ["p0:1"]
    assert "clock" in res.dead[0].reason or "future" in res.dead[0].reason
