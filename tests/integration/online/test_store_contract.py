"""The OnlineStore contract: every backend (see conftest.STORE_FACTORIES) must pass all of it."""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.integration.online.conftest import StoreFactory

from tureen.definitions import Entity, FeatureView, Field, FileSource
from tureen.online.encoding import DecodedRow, decode_row
from tureen.online.keys import encoder_for
from tureen.online.protocol import CountsStored, KeepsMarkers, OnlineStore
from tureen.types import (
    Array,
    Bool,
    Bytes,
    DType,
    Float32,
    Float64,
    Int32,
    Int64,
    String,
    UnixTimestamp,
)

ACCOUNT = Entity("account", join_keys=["account_id"])
USER = Entity("user", join_keys=["user_id"], dtype=String)
T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")


def make_view(name: str = "stats", schema: Sequence[Field] | None = None,
              entities: Sequence[Entity] = (ACCOUNT,)) -> FeatureView:
    return FeatureView(
        name=name,
        entities=list(entities),
        schema=list(schema or [Field("x", Float64), Field("n", Int64)]),
        source=FileSource(f"{name}.parquet"),
    )


def put(store: OnlineStore, view: FeatureView, rows: Sequence[dict[str, Any]]) -> int:
    fields = [*view.key_fields, *view.features]
    schema = pa.schema(
        [pa.field(f.name, f.dtype.arrow) for f in fields]
        + [pa.field("event_timestamp", TS), pa.field("created_timestamp", TS)]
    )
    full = [{"created_timestamp": None, **r} for r in rows]
    table = pa.Table.from_pylist(full, schema=schema)
    keys = encoder_for(view.key_fields).encode_arrow(table)
    return store.write(view, keys, table)


def key(view: FeatureView, **values: Any) -> bytes:
    return encoder_for(view.key_fields).encode_mapping(values)


def get(store: OnlineStore, view: FeatureView, ids: Sequence[int]) -> list[DecodedRow | None]:
    [rows] = store.read([(view, [key(view, account_id=i) for i in ids])])
    return [None if r is None else decode_row(r) for r in rows]


def one(store: OnlineStore, view: FeatureView, i: int) -> DecodedRow:
    [row] = get(store, view, [i])
    assert row is not None
    return row


def row(i: int, x: float, event: datetime, created: datetime | None = None) -> dict[str, Any]:
    return {"account_id": i, "x": x, "n": i, "event_timestamp": event,
            "created_timestamp": created}


# ---- newer wins ------------------------------------------------------------------------------
@pytest.mark.parametrize("order", ["old_then_new", "new_then_old"])
def test_newer_event_wins_in_either_write_order(store: OnlineStore, order: str) -> None:
    view = make_view()
    old, new = row(1, 1.0, T0), row(1, 2.0, T0 + timedelta(microseconds=1))
    for r in ([old, new] if order == "old_then_new" else [new, old]):
        put(store, view, [r])
    got = one(store, view, 1)
    assert got.values["x"] == 2.0
    assert got.event_timestamp == T0 + timedelta(microseconds=1)


@pytest.mark.parametrize("order", ["low_then_high", "high_then_low"])
def test_equal_event_time_breaks_tie_on_created_time(store: OnlineStore, order: str) -> None:
    view = make_view()
    low = row(1, 1.0, T0, created=T0)
    high = row(1, 2.0, T0, created=T0 + timedelta(seconds=1))
    for r in ([low, high] if order == "low_then_high" else [high, low]):
        put(store, view, [r])
    got = one(store, view, 1)
    assert got.values["x"] == 2.0
    assert got.created_timestamp == T0 + timedelta(seconds=1)


def test_unknown_created_time_loses_to_a_known_one(store: OnlineStore) -> None:
    view = make_view()
    put(store, view, [row(1, 2.0, T0, created=T0)])
    put(store, view, [row(1, 1.0, T0, created=None)])
    assert one(store, view, 1).values["x"] == 2.0


def test_exact_tie_takes_the_later_write(store: OnlineStore) -> None:
    view = make_view()
    put(store, view, [row(1, 1.0, T0, created=T0)])
    put(store, view, [row(1, 2.0, T0, created=T0)])
    assert one(store, view, 1).values["x"] == 2.0


def test_newest_wins_inside_one_batch(store: OnlineStore) -> None:
    view = make_view()
    put(store, view, [
        row(1, 3.0, T0 + timedelta(hours=2)),
        row(1, 1.0, T0),
        row(2, 5.0, T0),
        row(1, 2.0, T0 + timedelta(hours=1)),
    ])
    assert one(store, view, 1).values["x"] == 3.0
    assert one(store, view, 2).values["x"] == 5.0


# (entity, event second, created second or None) in write order; few entities and few
# distinct times, so one batch holds many versions of an entity and many exact ties
versions_st = st.lists(
    st.tuples(st.integers(0, 6), st.integers(0, 5), st.one_of(st.none(), st.integers(0, 3))),
    min_size=1, max_size=40)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(versions=versions_st, repeat=st.sampled_from([1, 13, 60]), chunks=st.integers(1, 3))
def test_newest_wins_in_large_batches_with_many_versions_of_an_entity(
        store: OnlineStore, versions: list[tuple[int, int, int | None]], repeat: int,
        chunks: int) -> None:
    """Batched writes (Redis: several script calls of 500 rows in one round trip) keep the
    exact rule row by row: greatest (event, created), a missing created time lowest, the
    later write on an exact tie. ``repeat`` stretches a batch past 500 rows."""
    view = make_view(f"v{uuid.uuid4().hex[:8]}")
    rows = [row(i, float(n), T0 + timedelta(seconds=e),
                None if c is None else T0 + timedelta(seconds=c))
            for n, (i, e, c) in enumerate(versions * repeat)]
    expected: dict[int, tuple[tuple[int, int], float]] = {}
    for r in rows:  # the oracle: write order, newer-or-equal replaces
        rank = (int((r["event_timestamp"] - T0).total_seconds()),
                -1 if r["created_timestamp"] is None
                else int((r["created_timestamp"] - T0).total_seconds()))
        held = expected.get(r["account_id"])
        if held is None or rank >= held[0]:
            expected[r["account_id"]] = (rank, r["x"])
    size = -(-len(rows) // chunks)
    try:
        for start in range(0, len(rows), size):
            put(store, view, rows[start:start + size])
        ids = sorted(expected)
        assert [g.values["x"] if g else None for g in get(store, view, ids)] == [
            expected[i][1] for i in ids]
    finally:
        store.delete_views([view])


def test_write_returns_rows_offered_and_accepts_empty(store: OnlineStore) -> None:
    view = make_view()
    assert put(store, view, [row(i, float(i), T0) for i in range(7)]) == 7
    assert put(store, view, []) == 0


# ---- timestamps ------------------------------------------------------------------------------
@pytest.fixture
def non_utc_tz(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "America/St_Johns")  # UTC-03:30 / -02:30: catches hour shifts
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("non_utc_tz")
def test_microsecond_utc_round_trip_under_non_utc_tz(store: OnlineStore) -> None:
    view = make_view(schema=[Field("seen", UnixTimestamp)])
    kolkata = timezone(timedelta(hours=5, minutes=30))
    event = datetime(2026, 7, 4, 23, 59, 59, 999_999, tzinfo=kolkata)
    seen = datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=UTC)  # before the epoch
    put(store, view, [{"account_id": 1, "seen": seen, "event_timestamp": event,
                       "created_timestamp": event + timedelta(microseconds=1)}])
    got = one(store, view, 1)
    assert got.event_timestamp == event
    assert got.event_timestamp.tzinfo == UTC
    assert got.event_timestamp.microsecond == 999_999
    assert got.created_timestamp == event + timedelta(microseconds=1)
    assert got.values["seen"] == seen
    assert got.values["seen"].utcoffset() == timedelta(0)


# ---- every dtype -----------------------------------------------------------------------------
ALL_TYPES: list[tuple[str, DType, list[Any]]] = [
    ("i32", Int32, [-(2**31), 2**31 - 1, None]),
    ("i64", Int64, [-(2**63), 2**63 - 1, None]),
    ("f32", Float32, [1.5, math.nan, None]),
    ("f64", Float64, [-0.0, math.inf, None]),
    ("s", String, ["", "ünï\x00cødé ✓", None]),
    ("b", Bytes, [b"", b"\x00\xff\x00", None]),
    ("flag", Bool, [True, False, None]),
    ("ts", UnixTimestamp, [T0, datetime(1900, 1, 1, tzinfo=UTC), None]),
    ("af32", Array(Float32), [[1.0, math.nan, None], [], None]),
    ("af64", Array(Float64), [[0.1, -2.5e300], [None], None]),
    ("ai64", Array(Int64), [[2**63 - 1, None, -1], [], None]),
    ("ai32", Array(Int32), [[1, 2], [None, None], None]),
    ("as", Array(String), [["a", None, ""], [], None]),
    ("ab", Array(Bytes), [[b"\x00", None], [b""], None]),
    ("abool", Array(Bool), [[True, None, False], [], None]),
    ("ats", Array(UnixTimestamp), [[T0, None], [], None]),
]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, float) and a == 0.0 and isinstance(b, float):
        return b == 0.0 and math.copysign(1, a) == math.copysign(1, b)
    return type(a) is type(b) and a == b


def test_every_dtype_round_trips_with_nulls_nan_bytes_and_arrays(store: OnlineStore) -> None:
    view = make_view("typed", [Field(n, t) for n, t, _ in ALL_TYPES])
    rows = [
        {"account_id": i, "event_timestamp": T0, **{n: vals[i] for n, _, vals in ALL_TYPES}}
        for i in range(3)
    ]
    put(store, view, rows)
    for i, got in enumerate(get(store, view, [0, 1, 2])):
        assert got is not None
        for name, _, values in ALL_TYPES:
            assert _same(values[i], got.values[name]), (name, values[i], got.values[name])


# ---- reads ------------------------------------------------------------------------------------
def test_missing_keys_and_unwritten_views_read_as_none(store: OnlineStore) -> None:
    view, never = make_view("written"), make_view("never_written")
    put(store, view, [row(1, 1.0, T0)])
    got = store.read([(view, [key(view, account_id=2), key(view, account_id=1)]),
                      (never, [key(never, account_id=1)])])
    assert got[0][0] is None
    assert got[0][1] is not None
    assert got[1] == [None]


def test_repeated_keys_are_answered_in_place(store: OnlineStore) -> None:
    view = make_view()
    put(store, view, [row(1, 1.0, T0), row(2, 2.0, T0)])
    got = get(store, view, [2, 1, 2, 3, 2])
    assert [None if g is None else g.values["x"] for g in got] == [2.0, 1.0, 2.0, None, 2.0]


def test_many_views_and_key_types_in_one_read(store: OnlineStore) -> None:
    by_account = make_view("by_account")
    by_user = make_view("by_user", [Field("name", String)], entities=[USER])
    by_pair = make_view("by_pair", [Field("score", Float32)], entities=[ACCOUNT, USER])
    put(store, by_account, [row(i, float(i), T0) for i in range(3)])
    put(store, by_user, [{"user_id": u, "name": u.upper(), "event_timestamp": T0}
                         for u in ("ann", "bob")])
    put(store, by_pair, [{"account_id": 1, "user_id": "bob", "score": 0.5,
                          "event_timestamp": T0}])
    got = store.read([
        (by_user, [key(by_user, user_id="bob"), key(by_user, user_id="zed")]),
        (by_account, [key(by_account, account_id=i) for i in (2, 0)]),
        (by_pair, [key(by_pair, account_id=1, user_id="bob"),
                   key(by_pair, account_id=1, user_id="ann")]),
    ])
    decoded = [[None if r is None else decode_row(r).values for r in rs] for rs in got]
    assert decoded == [
        [{"name": "BOB"}, None],
        [{"x": 2.0, "n": 2}, {"x": 0.0, "n": 0}],
        [{"score": 0.5}, None],
    ]


def test_large_reads_cover_every_key(store: OnlineStore) -> None:
    view = make_view()
    put(store, view, [row(i, float(i), T0) for i in range(0, 3000, 2)])
    got = get(store, view, list(range(3000)))
    assert [g is not None for g in got] == [i % 2 == 0 for i in range(3000)]
    assert all(g.values["n"] == i for i, g in enumerate(got) if g is not None)


def test_large_reads_in_any_order_with_repeats_and_rows_of_two_layouts(
        store: OnlineStore) -> None:
    """A large read answers each key in place whatever the order and repeats, also when a
    view's rows differ in length (written before and after it gained a feature)."""
    view = make_view()
    wider = make_view(schema=[Field("x", Float64), Field("n", Int64), Field("s", String)])
    put(store, view, [row(i, float(i), T0) for i in range(0, 120, 3)])
    ids = [(i * 37) % 130 for i in range(200)]  # out of order, repeated, some missing
    want = [i if i % 3 == 0 and i < 120 else None for i in ids]
    assert [None if g is None else g.values["n"] for g in get(store, view, ids)] == want
    put(store, wider, [{**row(i, float(i), T0), "s": "z" * i} for i in range(0, 120, 6)])
    assert [None if g is None else g.values["n"] for g in get(store, view, ids)] == want
    assert [None if g is None else g.values.get("s") for g in get(store, view, ids)] == [
        None if i is None else "z" * i if i % 6 == 0 else None for i in want]


def test_write_counted_says_how_many_rows_were_stored(store: OnlineStore) -> None:
    assert isinstance(store, CountsStored)
    view = make_view()

    def counted(rows: Sequence[dict[str, Any]]) -> int:
        fields = [*view.key_fields, *view.features]
        schema = pa.schema([pa.field(f.name, f.dtype.arrow) for f in fields]
                           + [pa.field("event_timestamp", TS), pa.field("created_timestamp", TS)])
        table = pa.Table.from_pylist([{"created_timestamp": None, **r} for r in rows],
                                     schema=schema)
        return store.write_counted(view, encoder_for(view.key_fields).encode_arrow(table), table)

    assert counted([row(1, 1.0, T0), row(2, 2.0, T0)]) == 2
    # row 1 is older than what is stored: ignored; row 2 is newer: stored
    assert counted([row(1, 9.0, T0 - timedelta(days=1)),
                    row(2, 8.0, T0 + timedelta(seconds=1))]) == 1
    assert [r.values["x"] if r else None for r in get(store, view, [1, 2])] == [1.0, 8.0]


# ---- maintenance -----------------------------------------------------------------------------
def test_delete_views_drops_only_those_views(store: OnlineStore) -> None:
    keep, drop = make_view("keep"), make_view("drop")
    put(store, keep, [row(1, 1.0, T0)])
    put(store, drop, [row(1, 1.0, T0)])
    store.delete_views([drop])
    assert get(store, drop, [1]) == [None]
    assert one(store, keep, 1).values["x"] == 1.0
    store.delete_views([drop])  # idempotent
    put(store, drop, [row(1, 3.0, T0 - timedelta(days=1))])  # an older row is accepted again
    assert one(store, drop, 1).values["x"] == 3.0


def test_materialization_markers_per_view_dropped_with_the_view(store: OnlineStore) -> None:
    assert isinstance(store, KeepsMarkers)
    assert store.markers() == {}
    keep, drop = make_view("keep"), make_view("drop")
    put(store, keep, [row(1, 1.0, T0)])
    store.set_marker("keep", "t1")
    store.set_marker("drop", "t2")
    store.set_marker("keep", "t3")  # the latest token wins
    assert store.markers() == {"keep": "t3", "drop": "t2"}
    store.delete_views([drop])
    assert store.markers() == {"keep": "t3"}
    assert one(store, keep, 1).values["x"] == 1.0  # the marker is no entity row


def test_projects_are_isolated(store_factory: StoreFactory, tmp_path: Path) -> None:
    a, b = store_factory(tmp_path, "iso_a"), store_factory(tmp_path, "iso_b")
    try:
        view = make_view()
        put(a, view, [row(1, 1.0, T0)])
        assert get(b, view, [1]) == [None]
        b.delete_views([view])
        assert one(a, view, 1).values["x"] == 1.0
    finally:
        a.delete_views([make_view()])
        a.close()
        b.close()


def test_concurrent_writers_and_readers_keep_the_newest(store: OnlineStore) -> None:
    view = make_view()
    errors: list[BaseException] = []

    def writer(offset: int) -> None:
        try:
            for step in range(20):
                t = T0 + timedelta(seconds=step * 4 + offset)
                put(store, view, [row(i, float(step * 4 + offset), t) for i in range(50)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(100):
                get(store, view, list(range(50)))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(o,)) for o in range(4)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert {g.values["x"] for g in get(store, view, list(range(50))) if g} == {79.0}
