"""Golden skew test: the training set built from the offline window log and the value the
online store serves agree exactly for the same entity and time; a backfill from the event
log rebuilds the very same window rows."""

from __future__ import annotations

import random
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.dataset as pads

from tureen import FeatureStore
from tureen.definitions import StreamFeatureView
from tureen.streaming.maintenance import backfill
from tureen.streaming.processor import Event, StreamProcessor

T0 = datetime(2026, 3, 1, tzinfo=UTC)
FEATURES = """
from datetime import timedelta
from tureen import (Aggregation, Entity, Field, FileSource, Float64, Int64, PushSource,
                    StreamFeatureView, String)

account = Entity(name="account", join_keys=["account_id"], dtype=Int64)
clicks = PushSource(name="clicks", batch_source=FileSource(path="data/clicks/"))
click_stats = StreamFeatureView(
    name="click_stats", entities=[account], source=clicks,
    schema=[Field("amount", Float64), Field("page", String)],
    aggregations=[
        Aggregation("amount", "sum", timedelta(minutes=5), timedelta(minutes=1)),
        Aggregation("amount", "mean", timedelta(minutes=15), timedelta(minutes=1)),
        Aggregation("page", "count_distinct_approx", timedelta(minutes=5), timedelta(minutes=1)),
        Aggregation("amount", "max", timedelta(minutes=3), timedelta(minutes=1)),
    ])
"""


def windows(repo: Path) -> list[dict[str, object]]:
    t = pads.dataset(str(repo / "data" / "clicks" / "_windows" / "click_stats")).to_table()
    return sorted(t.to_pylist(), key=lambda r: (r["account_id"], r["event_timestamp"]))


def stream_clicks(tmp_path: Path, features: str, seed: int, late: bool
                  ) -> tuple[FeatureStore, StreamFeatureView, StreamProcessor]:
    """A repo with ``features`` and 40 batches of random clicks streamed into it (``late``:
    a quarter arrive up to 100 s late and a quarter 100-400 s late)."""
    (tmp_path / "tureen.yaml").write_text(f"project: skew{seed}\n")
    (tmp_path / "features.py").write_text(textwrap.dedent(features))
    store = FeatureStore(tmp_path)
    store.apply()
    view = store.get_feature_view("click_stats")
    assert isinstance(view, StreamFeatureView)
    proc = StreamProcessor(view.event_source, [view], store.online, tmp_path)
    rng = random.Random(seed)
    t = 0.0
    for batch in range(40):
        evs = []
        for i in range(rng.randint(1, 30)):
            t += rng.uniform(0, 4)
            back = rng.choice([0.0, 0.0, rng.uniform(0, 100), rng.uniform(100, 400)]
                              ) if late else 0.0
            evs.append(Event({"account_id": rng.randint(1, 6), "amount": rng.uniform(0, 100),
                              "page": rng.choice("abcdefgh"),
                              "event_timestamp": (T0 + timedelta(seconds=t - back)).isoformat()},
                             f"b{batch}:{i}", "http"))
        proc.process(evs)
    proc.flush()
    return store, view, proc


def test_training_set_equals_online_and_backfill_equals_stream(tmp_path: Path) -> None:
    store, view, proc = stream_clicks(tmp_path, FEATURES, 11, late=False)
    assert proc.watermark is not None
    now = datetime.fromtimestamp(proc.watermark / 1e6, UTC)

    names = [f"click_stats:{f}" for f in view.feature_names]
    accounts = list(range(1, 7))
    online = store.get_online_features(names, [{"account_id": a} for a in accounts]).to_dict()
    training = store.get_historical_features(
        pd.DataFrame({"account_id": accounts, "event_timestamp": [now] * len(accounts)}),
        names).to_df()
    for f in view.feature_names:
        got = [None if pd.isna(x) else x for x in training[f]]
        assert got == online[f], f

    streamed = windows(tmp_path)
    result = backfill(view, store.online, tmp_path)
    assert result.windows == len(streamed) > 0
    assert windows(tmp_path) == streamed
    store.close()


def newest_rows(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """One row per (account, window end): the greatest created time (rewrites by late events)."""
    out: dict[tuple[object, object], dict[str, object]] = {}
    for r in sorted(rows, key=lambda r: str(r["created_timestamp"])):
        out[(r["account_id"], r["event_timestamp"])] = r
    return sorted(out.values(), key=lambda r: (str(r["account_id"]), str(r["event_timestamp"])))


def test_late_updates_keep_training_set_online_and_backfill_equal(tmp_path: Path) -> None:
    """late_events="update": late events rewrite closed windows; the training set still
    equals the online value, and a backfill gives the stream's newest rows exactly."""
    features = FEATURES.replace("    ])\n", "    ], late_events=\"update\", "
                                "allowed_lateness=timedelta(minutes=2))\n")
    store, view, proc = stream_clicks(tmp_path, features, 5, late=True)
    assert view.late_events == "update"
    c = proc.counters["click_stats"]
    assert 0 < c.late_updated < c.late  # some updated their windows, some were too late
    streamed = windows(tmp_path)
    assert any(r["created_timestamp"] > r["event_timestamp"] for r in streamed)
    assert proc.watermark is not None
    now = datetime.fromtimestamp(proc.watermark / 1e6, UTC)

    names = [f"click_stats:{f}" for f in view.feature_names]
    accounts = list(range(1, 7))
    online = store.get_online_features(names, [{"account_id": a} for a in accounts]).to_dict()
    for at in (now, now - timedelta(minutes=1)):
        training = store.get_historical_features(
            pd.DataFrame({"account_id": accounts, "event_timestamp": [at] * len(accounts)}),
            names).to_df()
        newest = newest_rows(streamed)
        for a_i, account in enumerate(accounts):  # each entity: the newest window row <= at
            rows = [r for r in newest if r["account_id"] == account
                    and r["event_timestamp"] <= at]  # type: ignore[operator]
            for f in view.feature_names:
                got = training[f][a_i]
                want = rows[-1][f] if rows else None
                assert (None if pd.isna(got) else got) == want, (at, account, f)
        if at == now:
            for f in view.feature_names:
                got_list = [None if pd.isna(x) else x for x in training[f]]
                assert got_list == online[f], f

    result = backfill(view, store.online, tmp_path)
    assert result.windows == len(newest_rows(streamed))
    assert windows(tmp_path) == newest_rows(streamed)
    store.close()
