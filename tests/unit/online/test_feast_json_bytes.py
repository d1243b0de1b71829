"""``OnlineResponse.feast_json_bytes`` puts the body together from parts; it must be byte for
byte what one ``orjson.dumps`` of the whole response object gives (the reference below), for
every kind of column: numeric, string, bytes, arrays, timestamps, on-demand, join keys of
both key types, nulls, keys not found, values past their TTL, batch columns (numpy arrays),
Feast's statuses, and empty requests."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import orjson
import pytest
from tests.unit.online.conftest import NOW, snapshot

from tureen.definitions import Field
from tureen.online import response as r
from tureen.online.response import PRESENT, OnlineColumn, OnlineResponse
from tureen.online.retrieval import OnlineRetrieval
from tureen.online.sqlite_store import SqliteOnlineStore
from tureen.types import Bool, Float32, Float64, Int32, Int64, String


def reference(resp: OnlineResponse, feast_statuses: bool = False) -> bytes:
    """The response as one object, serialized by one ``orjson.dumps``."""
    n = len(resp)
    epoch = [r._EPOCH_JSON] * n
    results: list[dict[str, Any]] = [
        {
            "values": r._json_values(vals, f, native=False),
            "statuses": ["PRESENT"] * n,
            "event_timestamps": epoch,
        }
        for f, vals in resp._keys
    ]
    for c in resp._columns:
        vals = c.values
        if isinstance(vals, np.ndarray):
            values: Any = vals.astype(np.float64) if vals.dtype == np.float32 else vals
        elif c.field.dtype.name in r._JSON_READY:
            values = vals
        else:
            values = r._json_values(vals, c.field)
        if c.row_status is not None and (
            feast_statuses or isinstance(vals, np.ndarray) or None not in vals
        ):
            statuses = [s.value for s in c.row_status]
        else:
            statuses = [s.value for s in c.statuses()]
        stamps = epoch if c.event_us is None else r._rfc3339_many(c.event_us)
        results.append({"values": values, "statuses": statuses, "event_timestamps": stamps})
    names = [f.name for f, _ in resp._keys] + [c.field.name for c in resp._columns]
    return orjson.dumps(
        {"metadata": {"feature_names": names}, "results": results},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


NUMERIC = ["account_stats:txn_count", "account_stats:spend"]
EVERY_KIND = [
    "account_stats:txn_count",
    "account_stats:spend",
    "account_stats:tier",
    "account_stats:blob",
    "account_stats:recent",
    "account_stats:last_login",
]


@pytest.mark.parametrize(
    ("features", "entities"),
    [
        (NUMERIC, {"account_id": [1]}),
        (NUMERIC, {"account_id": [1, 2, 9]}),  # a null, a key not found
        (NUMERIC, {"account_id": [3]}),  # past the view's TTL
        (NUMERIC, {"account_id": [9, 9]}),
        (EVERY_KIND, {"account_id": [1]}),
        (EVERY_KIND, {"account_id": [1, 2, 3, 9]}),
        (["merchant_risk:risk", "merchant_risk:spend"], {"merchant_id": ["m1", "m2"]}),
        (
            ["account_stats:spend", "amount_ratio:amount_ratio"],
            {"account_id": [1, 2, 9], "amount": [1.0, 2.0, 3.0]},
        ),
        (
            ["account_stats:txn_count", "merchant_risk:risk"],
            {"account_id": [1, 2], "merchant_id": ["m1", "m1"]},
        ),
        (NUMERIC, {"account_id": []}),
        (NUMERIC, {"account_id": [1, 3] * 40}),  # a batch: decoded as arrays
        (["account_stats:spend", "account_stats:txn_count"], {"account_id": [1, 1] * 40}),
    ],
)
@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("feast_statuses", [False, True])
def test_same_bytes_as_one_dumps(
    filled: SqliteOnlineStore,
    features: list[str],
    entities: dict[str, list[Any]],
    full: bool,
    feast_statuses: bool,
) -> None:
    snap = snapshot()
    resp = OnlineRetrieval(filled, lambda: snap).get_online_features(features, entities, full)
    body = resp.feast_json_bytes(feast_statuses)
    assert body == reference(resp, feast_statuses)  # reference() makes the columns
    assert resp.feast_json_bytes(feast_statuses) == body  # now from the columns made
    assert orjson.loads(body)["metadata"]["feature_names"][-1].endswith(features[-1].split(":")[1])


@pytest.mark.parametrize("n", [0, 1, 5])
def test_batch_columns_and_awkward_numbers(n: int) -> None:
    """numpy columns (a batch read), float32 widened as before; NaN and infinities are
    null; a Python column of a numeric dtype holding numpy scalars; bools."""
    us = [int(NOW.timestamp() * 1_000_000) + i for i in range(n)]
    status = [PRESENT] * n
    awkward = [float("nan"), float("inf"), -0.0, 1e300, np.float32(0.1)][:n]
    columns = [
        OnlineColumn(Field("a", Float32), np.arange(n, dtype=np.float32) / 3, status, us),
        OnlineColumn(Field("b", Int64), np.arange(n, dtype=np.int64) * 10**15, status, us),
        OnlineColumn(Field("c", Float64), awkward, status, us),
        OnlineColumn(Field("d", Bool), [True, False, None, True, False][:n], None, None),
        OnlineColumn(Field("e", Int32), [np.int32(7)] * n, status, list(reversed(us))),
        OnlineColumn(Field("f", String), ["x,y", "],[", '"', "", None][:n], status, us),
    ]
    resp = OnlineResponse([(Field("id", String), [f"k{i}],[" for i in range(n)])], columns)
    for feast_statuses in (False, True):
        assert resp.feast_json_bytes(feast_statuses) == reference(resp, feast_statuses)
    numeric_only = OnlineResponse([(Field("id", Int64), list(range(n)))], columns[:5])
    assert numeric_only.feast_json_bytes() == reference(numeric_only)


def test_views_sharing_nothing_get_their_own_statuses() -> None:
    """Two views whose rows differ: each keeps its own statuses and times."""
    earlier = int((NOW - timedelta(hours=1)).timestamp() * 1_000_000)
    now = int(NOW.timestamp() * 1_000_000)
    a_status, b_status = [PRESENT, r.NOT_FOUND], [r.OUTSIDE_MAX_AGE, PRESENT]
    a_us, b_us = [now, None], [earlier, now]
    columns = [
        OnlineColumn(Field("a1", Float64), [1.5, None], a_status, a_us),
        OnlineColumn(Field("b1", Float64), [None, 2.5], b_status, b_us),
        OnlineColumn(Field("a2", Int64), [3, None], a_status, a_us),
    ]
    resp = OnlineResponse([(Field("id", Int64), [1, 2])], columns)
    assert resp.feast_json_bytes() == reference(resp)
    results = orjson.loads(resp.feast_json_bytes())["results"]
    assert results[2]["statuses"] == ["OUTSIDE_MAX_AGE", "PRESENT"]
    assert results[3]["statuses"] == ["PRESENT", "NOT_FOUND"]


def test_numeric_reads_without_nulls_are_laid_out(filled: SqliteOnlineStore) -> None:
    """Put together from the read's layout, without making the columns."""
    snap = snapshot()
    retrieval = OnlineRetrieval(filled, lambda: snap)
    in_order = ["account_stats:spend", "account_stats:txn_count"]  # the view's own order
    reads: list[tuple[list[str], dict[str, list[Any]]]] = [
        (NUMERIC, {"account_id": [1]}),
        (in_order, {"account_id": [1]}),
        (in_order, {"account_id": [1, 1, 3]}),
        (
            ["account_stats:txn_count", "merchant_risk:risk", "account_stats:spend"],
            {"account_id": [1, 1], "merchant_id": ["m1", "m1"]},
        ),
    ]
    for features, entities in reads:
        resp = retrieval.get_online_features(features, entities, enforce_ttl=False)
        assert resp._feast is not None and resp._made is None
        laid_out = r._laid_out_feast_json(*resp._feast, resp._keys, len(resp))
        assert resp._made is None  # no columns were made
        assert laid_out is not None
        assert laid_out == reference(resp) == reference(resp, feast_statuses=True)
    assert resp._feast is not None and resp._feast[0].where is not None
    one = retrieval.get_online_features(in_order, {"account_id": [1]})
    assert one._feast is not None and one._feast[0].where is None  # values as read
    # a null: the general path; a string or an on-demand feature: no layout
    others: list[tuple[list[str], dict[str, list[Any]]]] = [
        (NUMERIC, {"account_id": [2]}),
        (["account_stats:tier"], {"account_id": [1]}),
        (["amount_ratio:amount_ratio"], {"account_id": [1], "amount": [2.0]}),
    ]
    for k, (features, entities) in enumerate(others):
        resp = retrieval.get_online_features(features, entities)
        if k == 0:
            assert resp._feast is not None
            assert r._laid_out_feast_json(*resp._feast, resp._keys, len(resp)) is None
        else:
            assert resp._feast is None


@pytest.mark.parametrize(
    "values",
    [[0.5, 1e300, -0.0, 7, True], [float("nan"), 1.0], [float("inf"), 1.0], [np.float32(0.1), 2]],
)
def test_a_layout_gives_the_bytes_of_its_columns(values: list[Any]) -> None:
    """Awkward numbers through a layout: the same bytes as the columns, or the general path
    (NaN and infinities are null)."""
    fields = [Field(f"f{k}", Float64) for k in range(len(values))]
    layout = r.feast_layout(["id"], [(0, k, f) for k, f in enumerate(fields)], [len(fields)])
    assert layout is not None
    now = [int(NOW.timestamp() * 1_000_000)]
    views = [([(v,) for v in values], [PRESENT], now)]
    columns = [OnlineColumn(f, (v,), [PRESENT], now) for f, v in zip(fields, values, strict=True)]
    resp = r.OnlineResponse([(Field("id", Int64), [7])], columns, (layout, views))
    laid_out = r._laid_out_feast_json(layout, views, resp._keys, 1)
    if any(isinstance(v, float) and not np.isfinite(v) for v in values):
        assert laid_out is None
    else:
        assert laid_out == reference(resp)
    assert resp.feast_json_bytes() == reference(resp)
