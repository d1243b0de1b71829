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


def test_training_set_equals_online_and_backfill_equals_stream(tmp_path: Path) -> None:
    (tmp_path / "tureen.yaml").write_text("project: skew\n")
    (tmp_path / "features.py").write_text(textwrap.dedent(FEATURES))
    store = FeatureStore(tmp_path)
    store.apply()
    view = store.get_feature_view("click_stats")
    assert isinstance(view, StreamFeatureView)
    proc = StreamProcessor(view.event_source, [view], store.online, tmp_path)
    rng = random.Random(11)
    t = 0.0
    for batch in range(40):
        evs = []
        for i in range(rng.randint(1, 30)):
            t += rng.uniform(0, 4)
            evs.append(Event({"account_id": rng.randint(1, 6), "amount": rng.uniform(0, 100),
                              "page": rng.choice("abcdefgh"),
                              "event_timestamp": (T0 + timedelta(seconds=t)).isoformat()},
                             f"b{batch}:{i}", "http"))
        proc.process(evs)
    proc.flush()
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
