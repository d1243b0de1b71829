"""A small feature repo (in memory) over a real SQLite online store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from tureen.definitions import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    PushSource,
    RequestSource,
    on_demand_feature_view,
)
from tureen.online.keys import encoder_for
from tureen.online.sqlite_store import SqliteOnlineStore
from tureen.registry.snapshot import RegistrySnapshot
from tureen.types import Array, Bytes, Float32, Float64, Int64, String, UnixTimestamp

NOW = datetime.now(UTC).replace(microsecond=0)
TS = pa.timestamp("us", tz="UTC")

ACCOUNT = Entity("account", join_keys=["account_id"])
MERCHANT = Entity("merchant", join_keys=["merchant_id"], dtype=String)

ACCOUNT_STATS = FeatureView(
    name="account_stats",
    entities=[ACCOUNT],
    schema=[Field("spend", Float32), Field("txn_count", Int64), Field("tier", String),
            Field("blob", Bytes), Field("recent", Array(Float64)),
            Field("last_login", UnixTimestamp)],
    source=PushSource("account_push", FileSource("data/account_stats",
                                                 created_timestamp_column="created")),
    ttl=timedelta(days=1),
)
MERCHANT_RISK = FeatureView(
    name="merchant_risk",
    entities=[MERCHANT],
    schema=[Field("risk", Float64), Field("spend", Float32)],
    source=FileSource("data/merchant_risk.parquet"),
)
TXN = RequestSource("txn", [Field("amount", Float64)])


@on_demand_feature_view(sources=[ACCOUNT_STATS[["spend"]], TXN],
                        schema=[Field("amount_ratio", Float64)], mode="python")
def amount_ratio(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    return {"amount_ratio": [
        None if s is None else a / s for s, a in zip(inputs["spend"], inputs["amount"],
                                                     strict=True)
    ]}


@on_demand_feature_view(sources=[MERCHANT_RISK, TXN],
                        schema=[Field("risky_amount", Float64)], mode="pandas")
def risky_amount(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"risky_amount": df["risk"] * df["amount"]})


SERVICE = FeatureService("fraud", [ACCOUNT_STATS[["txn_count", "spend"]], amount_ratio])


def snapshot() -> RegistrySnapshot:
    return RegistrySnapshot(
        project="unit",
        entities={e.name: e for e in (ACCOUNT, MERCHANT)},
        feature_views={v.name: v for v in (ACCOUNT_STATS, MERCHANT_RISK)},
        on_demand_views={o.name: o for o in (amount_ratio, risky_amount)},
        feature_services={SERVICE.name: SERVICE},
    )


def write(store: SqliteOnlineStore, view: FeatureView, rows: list[dict[str, Any]]) -> None:
    schema = pa.schema([pa.field(f.name, f.dtype.arrow)
                        for f in (*view.key_fields, *view.features)]
                       + [pa.field("event_timestamp", TS)])
    table = pa.Table.from_pylist(rows, schema=schema)
    store.write(view, encoder_for(view.key_fields).encode_arrow(table), table)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteOnlineStore]:
    s = SqliteOnlineStore(tmp_path / "online.db", "unit")
    yield s
    s.close()


@pytest.fixture
def filled(store: SqliteOnlineStore) -> SqliteOnlineStore:
    write(store, ACCOUNT_STATS, [
        {"account_id": 1, "spend": 10.0, "txn_count": 3, "tier": "gold", "blob": b"\x00",
         "recent": [1.0, 2.0], "last_login": NOW, "event_timestamp": NOW},
        {"account_id": 2, "spend": None, "txn_count": 7, "tier": None, "blob": None,
         "recent": None, "last_login": None, "event_timestamp": NOW - timedelta(hours=1)},
        {"account_id": 3, "spend": 5.0, "txn_count": 1, "tier": "old", "blob": b"",
         "recent": [], "last_login": NOW, "event_timestamp": NOW - timedelta(days=2)},
    ])
    write(store, MERCHANT_RISK, [
        {"merchant_id": "m1", "risk": 0.5, "spend": 1.0,
         "event_timestamp": NOW - timedelta(days=400)},
    ])
    return store
