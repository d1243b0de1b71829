"""On-demand views give the same values offline (training) and online (serving)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tureen.definitions import (
    Entity,
    FeatureView,
    Field,
    FileSource,
    RequestSource,
    on_demand_feature_view,
)
from tureen.materialize import materialize
from tureen.online.retrieval import OnlineRetrieval
from tureen.online.sqlite_store import SqliteOnlineStore
from tureen.registry.snapshot import RegistrySnapshot
from tureen.types import Float32, Float64, Int64

duckdb_engine = pytest.importorskip("tureen.offline.duckdb_engine")
offline = pytest.importorskip("tureen.offline.retrieval")

T0 = datetime(2026, 4, 1, tzinfo=UTC)
ACCOUNT = Entity("account", join_keys=["account_id"])
# Two views share the feature name "spend": each UDF must see its own source's column.
CARD = FeatureView("card", [ACCOUNT], [Field("spend", Float32), Field("limit", Int64)],
                   FileSource("data/card.parquet"))
WIRE = FeatureView("wire", [ACCOUNT], [Field("spend", Float64)], FileSource("data/wire.parquet"))
TXN = RequestSource("txn", [Field("amount", Float64)])


@on_demand_feature_view(sources=[CARD, TXN], schema=[Field("utilization", Float64)],
                        mode="python")
def utilization(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    return {"utilization": [
        None if s is None or lim is None else (s + a) / lim
        for s, lim, a in zip(inputs["spend"], inputs["limit"], inputs["amount"], strict=True)
    ]}


@on_demand_feature_view(sources=[WIRE[["spend"]], TXN], schema=[Field("wire_share", Float64)],
                        mode="pandas")
def wire_share(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"wire_share": df["amount"] / (df["spend"] + df["amount"])})


SNAP = RegistrySnapshot(
    project="parity", entities={"account": ACCOUNT},
    feature_views={"card": CARD, "wire": WIRE},
    on_demand_views={"utilization": utilization, "wire_share": wire_share},
)


def test_offline_and_online_on_demand_values_agree(tmp_path: Path,
                                                    store: SqliteOnlineStore) -> None:
    (tmp_path / "data").mkdir()
    ts = pa.array([T0] * 3, pa.timestamp("us", tz="UTC"))
    pq.write_table(pa.table({"account_id": [1, 2, 3],
                             "spend": pa.array([10.5, 0.25, None], pa.float32()),
                             "limit": [100, 50, 10], "event_timestamp": ts}),
                   tmp_path / "data" / "card.parquet")
    pq.write_table(pa.table({"account_id": [1, 2, 3], "spend": [1000.0, 3.0, 7.0],
                             "event_timestamp": ts}), tmp_path / "data" / "wire.parquet")
    engine = duckdb_engine.DuckDBEngine(tmp_path)
    try:
        materialize(SNAP, engine, store, T0, T0 + timedelta(seconds=1))
        features = ["utilization:utilization", "wire_share:wire_share", "card:spend"]
        amounts = [5.0, 1.0, 2.0]
        entity_df = pd.DataFrame({"account_id": [1, 2, 3], "amount": amounts,
                                  "event_timestamp": [T0 + timedelta(hours=1)] * 3})
        train = offline.get_historical_features(engine, SNAP, entity_df, features).to_df()
    finally:
        engine.close()
    online = OnlineRetrieval(store, lambda: SNAP).get_online_features(
        features, {"account_id": [1, 2, 3], "amount": amounts}).to_dict()
    for name in ("utilization", "wire_share", "spend"):
        got, want = online[name], train[name].tolist()
        for g, w in zip(got, want, strict=True):
            if w is None or (isinstance(w, float) and math.isnan(w)):
                assert g is None or (isinstance(g, float) and math.isnan(g)), (name, got, want)
            else:
                assert g == pytest.approx(w, rel=1e-6), (name, got, want)
