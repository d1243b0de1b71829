"""Property: after any sequence of writes, reads equal a brute-force oracle (newest wins,
TTL bound inclusive, statuses exact), for a composite (Int64, String) entity key."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tureen.definitions import Entity, FeatureView, Field, FileSource
from tureen.ingest import write_to_online_store
from tureen.online.response import FieldStatus
from tureen.online.retrieval import OnlineRetrieval
from tureen.online.sqlite_store import MIN_PACKED, SqliteOnlineStore
from tureen.registry.snapshot import RegistrySnapshot
from tureen.types import Float64, String

NOW = datetime(2026, 6, 1, tzinfo=UTC)
TTL = timedelta(hours=10)
ACCOUNT = Entity("account", join_keys=["account_id"])
REGION = Entity("region", join_keys=["region"], dtype=String)
VIEW = FeatureView("v", [ACCOUNT, REGION], [Field("x", Float64)],
                   FileSource("v.parquet", created_timestamp_column="created"), ttl=TTL)
SNAP = RegistrySnapshot(project="oracle", entities={"account": ACCOUNT, "region": REGION},
                        feature_views={"v": VIEW})
# The same view keyed by the integer alone (SQLite stores it in an integer-keyed table).
VIEW_INT = FeatureView("v", [ACCOUNT], [Field("x", Float64)],
                       FileSource("v.parquet", created_timestamp_column="created"), ttl=TTL)
SNAP_INT = RegistrySnapshot(project="oracle", entities={"account": ACCOUNT},
                            feature_views={"v": VIEW_INT})

KEYS = st.tuples(st.integers(0, 3), st.sampled_from(["eu", "us"]))
WRITE = st.tuples(KEYS, st.integers(0, 20), st.integers(0, 2),
                  st.none() | st.floats(allow_nan=False))


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(WRITE, min_size=1, max_size=6), min_size=1, max_size=4),
       st.lists(KEYS, min_size=1, max_size=20), st.booleans())
def test_reads_match_oracle(batches: list[list[tuple[Any, ...]]],
                            probes: list[tuple[int, str]], int_key: bool) -> None:
    """Up to 20 probes: batches of 8 or more are decoded as one array (batch_decode)."""
    snap = SNAP_INT if int_key else SNAP
    if int_key:  # one region: the key is the account alone
        batches = [[((k[0], "eu"), *rest) for k, *rest in b] for b in batches]
        probes = [(a, "eu") for a, _ in probes]
    oracle: dict[tuple[int, str], tuple[int, int, float | None]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteOnlineStore(Path(tmp) / "o.db", "oracle")
        try:
            for batch in batches:
                write_to_online_store(snap, store, "v", [
                    {"account_id": k[0], "region": k[1], "x": x,
                     "event_timestamp": NOW - timedelta(hours=h),
                     "created": NOW + timedelta(seconds=c)}
                    for k, h, c, x in batch
                ])
                for k, h, c, x in batch:  # later writes win exact ties
                    if k not in oracle or (-h, c) >= oracle[k][:2]:
                        oracle[k] = (-h, c, x)
            resp = OnlineRetrieval(store, lambda: snap, clock=NOW.timestamp).get_online_features(
                ["v:x"], [{"account_id": a, "region": r} for a, r in probes])
        finally:
            store.close()
    want_values: list[float | None] = []
    want_status: list[FieldStatus] = []
    for k in probes:
        if k not in oracle:
            want_values.append(None)
            want_status.append(FieldStatus.NOT_FOUND)
        elif -oracle[k][0] > 10:
            want_values.append(None)
            want_status.append(FieldStatus.OUTSIDE_MAX_AGE)
        else:
            x = oracle[k][2]
            want_values.append(x)
            want_status.append(FieldStatus.NULL_VALUE if x is None else FieldStatus.PRESENT)
    assert resp.to_dict()["x"] == want_values
    assert resp.statuses["x"] == want_status


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 20), st.integers(0, 2),
                          st.none() | st.floats(allow_nan=False)), min_size=1, max_size=80),
       st.lists(st.integers(0, 70), min_size=MIN_PACKED, max_size=150))
def test_large_integer_keyed_batches_match_oracle(writes: list[tuple[int, int, int, Any]],
                                                  probes: list[int]) -> None:
    """Large batches of an integer-keyed view are read from SQLite in one buffer
    (``PackedRows``): repeated, missing and expired keys still answer exactly."""
    oracle: dict[int, tuple[int, int, float | None]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteOnlineStore(Path(tmp) / "o.db", "oracle")
        try:
            write_to_online_store(SNAP_INT, store, "v", [
                {"account_id": a, "x": x, "event_timestamp": NOW - timedelta(hours=h),
                 "created": NOW + timedelta(seconds=c)} for a, h, c, x in writes])
            for a, h, c, x in writes:
                if a not in oracle or (-h, c) >= oracle[a][:2]:
                    oracle[a] = (-h, c, x)
            resp = OnlineRetrieval(store, lambda: SNAP_INT, clock=NOW.timestamp
                                   ).get_online_features(["v:x"], {"account_id": probes})
        finally:
            store.close()
    want = [(None, FieldStatus.NOT_FOUND) if a not in oracle
            else (None, FieldStatus.OUTSIDE_MAX_AGE) if -oracle[a][0] > 10
            else (oracle[a][2], FieldStatus.NULL_VALUE if oracle[a][2] is None
                  else FieldStatus.PRESENT) for a in probes]
    assert resp.to_dict()["x"] == [v for v, _ in want]
    assert resp.statuses["x"] == [s for _, s in want]
    assert resp.to_dict()["account_id"] == probes
